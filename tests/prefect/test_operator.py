"""What an operator sees and can act on, against the session's Prefect server: charts inline in the round card
and the evolution history (rendered in headless Chromium), the evolution history artifact, the events a
continuous evolution sends when it promotes an adapter or refuses to, the automation example of deployments/
that POSTs them to a webhook, and phase results shared by two workers that have nothing else in common.

Cost: two continuous rounds (the first on the shared small data, a cache hit after test_evolve_and_cli's rounds;
the second on 3 new rows), an iterative round that is a cache hit of the first, and two phase runs per worker."""
import asyncio
import csv
import json
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import browser
import pandas as pd
import pytest
from browser import screenshot
from conftest import ARTIFACTS, PREFECT
from helpers import small_config, stop_worker, task_states
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from flows.artifacts import CARD_KEY, HISTOGRAM_KEY, history_key, inline_images
from flows.evolve import EVENT_PROMOTED, EVENT_REFUSED, EvolveParams, evolve_continuous, evolve_iterative
from semievol_core import parse_config
from semievol_core.store import digest

pytestmark = pytest.mark.prefect
REPO = Path(__file__).resolve().parents[2]
EVOLUTION = "operator"
PNG = "data:image/png;base64,iVBORw0KGgo"  # a PNG's signature, base64


# ---------------------------------------------------------------- no model, no server

def test_history_keys_are_valid_artifact_keys_and_stable_per_name():
    assert history_key("nightly") == "semievol-history-nightly"
    assert history_key("nightly") == history_key("nightly")
    keys = {history_key(n) for n in ("Nightly", "nightly", "night_ly", "night.ly", "night-ly")}
    assert len(keys) == 5  # names that differ keep histories of their own
    for key in keys:
        assert key.replace("-", "").isalnum() and key == key.lower(), key


def test_inline_images_embeds_only_pngs_of_the_round_directory(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    md = "![a](a.png) ![gone](missing.png) ![web](https://example.org/x.png) [link](a.png)"
    out = inline_images(md, tmp_path)
    assert out.startswith("![a](data:image/png;base64,iVBORw0KGgpmYWtl)")
    assert "![gone](missing.png)" in out and "(https://example.org/x.png)" in out and "[link](a.png)" in out


def test_result_storage_settings(monkeypatch, tmp_path):
    from prefect.settings import PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK, temporary_settings

    from tasks.phases import result_storage
    monkeypatch.setenv("SEMIEVOL_RESULTS", str(tmp_path / "plain"))
    assert result_storage() == tmp_path / "plain" and (tmp_path / "plain").is_dir()
    monkeypatch.setenv("SEMIEVOL_RESULTS", (tmp_path / "a mount").as_uri())  # file:// URLs are local directories
    assert result_storage() == tmp_path / "a mount"
    monkeypatch.setenv("SEMIEVOL_RESULTS", "block:local-file-system/shared-results")
    assert result_storage() == "local-file-system/shared-results"
    for bad in ("block:shared-results", "nosuchfs://bucket/x"):
        monkeypatch.setenv("SEMIEVOL_RESULTS", bad)
        with pytest.raises(ValueError, match="SEMIEVOL_RESULTS"):
            result_storage()
    monkeypatch.delenv("SEMIEVOL_RESULTS")
    monkeypatch.setenv("SEMIEVOL_CACHE", str(tmp_path / "cache"))
    assert result_storage() == tmp_path / "cache" / "prefect-results"  # the default stays local
    with temporary_settings({PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK: "s3-bucket/results"}):
        assert result_storage() == "s3-bucket/results"  # Prefect's own default block, when set


def test_a_fsspec_url_becomes_a_saved_block_that_prefect_caches_in(prefect_server, monkeypatch):
    """Any fsspec URL other than file:// goes through a RemoteFileSystem block; memory:// stands in for s3://
    here (one process, so one memory)."""
    from prefect import flow, task
    from prefect.filesystems import RemoteFileSystem

    from tasks.phases import result_storage
    monkeypatch.setenv("SEMIEVOL_RESULTS", "memory://semievol-test/results")
    slug = result_storage()
    assert slug.startswith("remote-file-system/semievol-results-")
    assert RemoteFileSystem.load(slug.split("/", 1)[1]).basepath == "memory://semievol-test/results"
    calls = []

    @task(persist_result=True, result_storage=slug, cache_key_fn=lambda *_: f"semievol-test-{os.getpid()}")
    def double(x):
        calls.append(x)
        return 2 * x

    @flow
    def twice():
        return [double(3, return_state=True) for _ in range(2)]

    first, second = twice()
    assert (first.name, second.name, second.result(), calls) == ("Completed", "Cached", 6, [3])


# ---------------------------------------------------------------- a continuous evolution, two runs

class _Hook(BaseHTTPRequestHandler):
    received: list

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received.append({"content_type": self.headers.get("Content-Type"), "body": body})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def webhook():
    """A serving system's refresh endpoint, as far as the automation can tell: records what is POSTed."""
    handler = type("Hook", (_Hook,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/refresh", handler.received
    server.shutdown()


@pytest.fixture(scope="module")
def automations(prefect_server, webhook):
    """deployments/on-promotion.sh, as the README tells an operator to run it."""
    env = {**os.environ, "PROMOTION_WEBHOOK_URL": webhook[0], "EVOLUTION": EVOLUTION,
           "PATH": f"{Path(PREFECT).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = subprocess.run(["bash", "deployments/on-promotion.sh"], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    names = ("semievol-on-promotion", "semievol-on-refused-promotion")
    with get_client(sync_client=True) as client:
        found = {a.name: a for a in client.read_automations() if a.name in names}
    assert set(found) == set(names)
    yield found
    with get_client(sync_client=True) as client:  # other modules' evolutions are none of its business
        for a in found.values():
            client.delete_automation(a.id)


def _append_rows(src: Path, dst: Path, start: int, stop: int) -> None:
    with open(src, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[start:stop]
    with open(dst, "a", newline="", encoding="utf-8") as f:
        csv.DictWriter(f, fieldnames=list(rows[0])).writerows(rows)


@pytest.fixture(scope="module")
def evolution(prefect_server, automations, small_data, samples, tiny_model, tmp_path_factory):
    """Run 1 takes the 12 unlabeled rows of the shared small data and is promoted (there is no incumbent);
    3 rows arrive; run 2 takes them and is refused (min_gain 1: nothing beats an incumbent by 100 points)."""
    d = tmp_path_factory.mktemp("operator")
    unlabeled = d / "unlabeled.csv"
    shutil.copy(small_data / "unlabeled.csv", unlabeled)
    raw = small_config(small_data, d / "runs", None, tiny_model)
    raw["data"]["unlabeled"] = str(unlabeled)
    params = EvolveParams(round=parse_config(raw), mode="continuous", name=EVOLUTION, min_gain=1.0)
    runs = []
    for i in range(2):
        t0 = time.monotonic()
        state = evolve_continuous(params, return_state=True)
        assert state.is_completed(), state.message
        runs.append({"flow_run_id": state.state_details.flow_run_id, "state": state.result(),
                     "seconds": round(time.monotonic() - t0)})
        if i == 0:
            _append_rows(samples / "fpb" / "unlabeled.csv", unlabeled, 12, 15)
    print("operator evolution runs took", [r["seconds"] for r in runs], "s")
    return {"params": params, "home": d / "runs" / EVOLUTION, "runs": runs, "runs_dir": d / "runs"}


def _events(name: str, timeout: float = 60) -> list:
    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            page = client.read_events(EventFilter(event=EventNameFilter(name=[name]), resource=EventResourceFilter(
                id=[f"semievol.evolution.{EVOLUTION}"])), limit=50)
        if page.events or time.monotonic() > deadline:
            return page.events
        time.sleep(1)


def test_promotion_and_refusal_are_events_on_the_server(evolution):
    first, second = (r["state"]["rounds"][i] for i, r in enumerate(evolution["runs"]))
    assert first["promoted"] is True and second["promoted"] is False
    (promoted,) = _events(EVENT_PROMOTED)
    (refused,) = _events(EVENT_REFUSED)
    p, r = promoted.payload, refused.payload
    assert p["evolution"] == r["evolution"] == EVOLUTION
    assert p["adapter"] == first["adapter"] == evolution["runs"][1]["state"]["incumbent"]["adapter"]
    assert Path(p["adapter"], "adapter_config.json").is_file()
    assert promoted.resource["semievol.adapter"] == p["adapter"]
    assert p["evolved_accuracy"] == first["evolved_accuracy"] and p["incumbent_accuracy"] is None
    assert json.loads(Path(p["promoted_file"]).read_text())["adapter"] == p["adapter"]
    assert r["adapter"] == second["adapter"] != p["adapter"] and Path(r["adapter"]).is_dir()
    assert r["evolved_accuracy"] == second["evolved_accuracy"]
    assert r["incumbent_accuracy"] == first["evolved_accuracy"] and r["incumbent_adapter"] == p["adapter"]
    assert "min_gain" in r["reason"] and r["new_rows"] == 3 and p["new_rows"] == 12
    for event, run in ((promoted, evolution["runs"][0]), (refused, evolution["runs"][1])):
        related = {x.id for x in event.related}
        assert f"prefect.flow-run.{run['flow_run_id']}" in related  # the evolve run that decided
        assert f"semievol.round.{event.payload['round']}" in related


def test_the_automation_example_posts_each_decision_to_the_webhook(evolution, webhook):
    _, received = webhook
    deadline = time.monotonic() + 90
    while len(received) < 2 and time.monotonic() < deadline:
        time.sleep(1)
    bodies = {b["event"]: b for b in (json.loads(x["body"]) for x in received)}
    assert set(bodies) == {EVENT_PROMOTED, EVENT_REFUSED}, received
    assert all(x["content_type"] == "application/json" for x in received)
    promoted = _events(EVENT_PROMOTED)[0]
    assert bodies[EVENT_PROMOTED]["payload"] == promoted.payload
    assert bodies[EVENT_PROMOTED]["id"] == str(promoted.id)


def _latest(key: str):
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return sorted(found, key=lambda a: a.created)


def test_history_artifact_has_one_row_per_run_under_one_key(evolution):
    key = history_key(EVOLUTION)
    versions = _latest(key)
    assert len(versions) == 2  # one version per run, same key
    rows = json.loads((evolution["home"] / "history.json").read_text())
    assert [r["round"] for r in rows] == [r["round"] for r in evolution["runs"][1]["state"]["rounds"]]
    assert [r["promoted"] for r in rows] == [True, False] and [r["new_rows"] for r in rows] == [12, 3]
    for r in rows:
        assert r["date"] and r["mode"] == "continuous" and r["pool"] is not None and r["selected"] is not None
    assert rows[1]["incumbent_accuracy"] == rows[0]["evolved_accuracy"]
    latest = versions[-1].data
    assert latest.count(PNG) == 1 and "file://" not in latest
    for r in rows:
        assert f"`{r['round']}`" in latest
    assert "| yes |" in latest and "| no |" in latest
    assert (evolution["home"] / "history.png").read_bytes()[:4] == b"\x89PNG"


def test_iterative_rounds_grow_the_labeled_set_and_keep_a_history(evolution, small_data, tiny_model):
    """Two iterative rounds; the first has the inputs of the continuous run's first round: a cache hit."""
    raw = small_config(small_data, evolution["runs_dir"], None, tiny_model)
    name = f"{EVOLUTION}-it"
    metrics = evolve_iterative(EvolveParams(round=parse_config(raw), max_rounds=2, name=name))
    assert len(metrics) == 2
    first, second = metrics
    chosen = first["selection"]["selected"]
    assert first["counts"] == {"labeled": 8, "unlabeled": 12, "test": 8} and chosen > 0
    # round 2: labeled + selected as labeled, what was left as unlabeled
    assert second["counts"] == {"labeled": 8 + chosen, "unlabeled": 12 - chosen, "test": 8}
    nxt = pd.read_parquet(evolution["runs_dir"] / f"{name}-r1" / "next_labeled.parquet")
    assert nxt["id"].is_unique and len(nxt) == 8 + chosen
    # round 2's warm-up trains what round 1's evolve trained (a fresh LoRA on labeled + selected): copied, from
    # whichever round trained it first (here the continuous run's second round, whose labeled set is the same)
    r1, r2 = (evolution["runs_dir"] / f"{name}-r{i}" for i in (1, 2))
    warm = json.loads((r2 / "manifest.json").read_text())["phases"]["warm_up"]
    assert (evolution["runs_dir"] / warm["trained_as"]).is_dir(), warm
    # the same weights (peft writes target_modules, a set, in each process's own order: the configs may differ)
    files = ["adapter_model.safetensors"]
    assert digest(r1 / "evolved_adapter", files) == digest(r2 / "warm_adapter", files)
    rows = json.loads((evolution["runs_dir"] / name / "history.json").read_text())
    assert [r["round"] for r in rows] == [f"{name}-r1", f"{name}-r2"]
    accs = [m["evaluation"]["evolved"]["accuracy"] for m in metrics]
    assert [r["evolved_accuracy"] for r in rows] == accs and all(r["mode"] == "iterative" for r in rows)
    # "promoted" in iterative mode: the round beat the best one before it (the first has none)
    assert rows[0]["promoted"] is True and rows[1]["incumbent_accuracy"] == accs[0]
    assert rows[1]["promoted"] == (accs[1] > accs[0])
    latest = _latest(history_key(name))[-1]
    assert PNG in latest.data and f"`{name}-r1`" in latest.data and f"`{name}-r2`" in latest.data


def _card(round_name: str):
    found = [a for a in _latest(CARD_KEY) if a.description == f"SemiEvol round {round_name}"]
    assert found, f"no round card for {round_name}"
    return found[-1]


def test_round_card_and_histogram_carry_their_charts_inline(evolution):
    name = evolution["runs"][1]["state"]["rounds"][1]["round"]
    card = _card(name)
    assert card.data.count(PNG) == 2 and "file://" not in card.data  # NLL histogram and accuracy
    hist = [a for a in _latest(HISTOGRAM_KEY) if a.flow_run_id == card.flow_run_id]
    assert hist and hist[-1].type == "markdown" and PNG in hist[-1].data
    on_disk = (evolution["runs_dir"] / name / "card.md").read_text()
    assert "](nll_histogram.png)" in on_disk and "](accuracy.png)" in on_disk  # relative links beside the files


def test_ui_renders_the_charts_as_images(evolution, prefect_server):
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium package is needed (the test command installs it)"
    ARTIFACTS.mkdir(exist_ok=True)
    name = evolution["runs"][1]["state"]["rounds"][1]["round"]
    card = _card(name)
    newest = _latest(history_key(EVOLUTION))[-1]
    images_js = """JSON.stringify([...document.querySelectorAll('img')].map(i => ({
        src: i.src.slice(0, 40), alt: i.alt, width: i.naturalWidth, complete: i.complete})))"""
    first = """document.querySelector('a[href*="/artifacts/artifact/"]')"""
    links_js = "[...document.querySelectorAll('a')].map(a => a.href).filter(h => h.startsWith('file:')).length"

    def looker(needle, shot, open_newest=False):
        async def steps(page):
            if open_newest:  # the key's page lists its versions, newest first: open the newest, as an operator would
                await page.wait_text(history_key(EVOLUTION))
                deadline = time.monotonic() + 30
                while not (href := await page.js(f"({first} || {{}}).href")) and time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                assert href and href.endswith(str(newest.id)), (href, newest.id)
                await page.js(f"{first}.click()")
            await page.wait_text(needle)
            deadline = time.monotonic() + 30
            while True:  # images decode after the text renders
                images = [i for i in json.loads(await page.js(images_js)) if i["src"].startswith("data:image/png")]
                if images and all(i["complete"] and i["width"] > 0 for i in images) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            await screenshot(page, ARTIFACTS / shot)
            return images, await page.js(links_js)
        return steps

    ui = prefect_server["ui"]
    card_images, card_links = browser.run(chromium, f"{ui}/artifacts/artifact/{card.id}",
                                          looker("Pseudo-label accuracy", "operator-round-card.png"))
    hist_images, hist_links = browser.run(chromium, f"{ui}/artifacts/key/{history_key(EVOLUTION)}",
                                          looker("the chart shows every one", "operator-history.png", True))
    (ARTIFACTS / "operator-ui.json").write_text(json.dumps({"card": card_images, "history": hist_images}, indent=1))
    assert sorted(i["alt"] for i in card_images) == ["NLL histogram of the pseudo-labels",
                                                    "test accuracy of base, warm and evolved"]
    assert [i["alt"] for i in hist_images] == [f"history of evolution {EVOLUTION}"]
    for i in card_images + hist_images:
        assert i["complete"] and i["width"] >= 300, i  # decoded: a chart, not a broken-image icon
    assert card_links == hist_links == 0
    assert (ARTIFACTS / "operator-history.png").stat().st_size > 10_000


# ---------------------------------------------------------------- shared result storage, two workers

@pytest.fixture(scope="module")
def two_workers(prefect_server, tmp_path_factory):
    """Two process workers, each on a pool of its own, with separate HOME and PREFECT_HOME and no SEMIEVOL_RESULTS
    or SEMIEVOL_CACHE: left alone, each would keep results under its own home. A deployment of the phase flow
    per pool."""
    from prefect.client.schemas.actions import WorkPoolCreate

    from flows.phase import semievol_phase
    base = tmp_path_factory.mktemp("two-workers")
    pools = {"a": "semievol-share-a", "b": "semievol-share-b"}
    with get_client(sync_client=True) as client:
        existing = {p.name for p in client.read_work_pools()}
        for pool in pools.values():
            if pool not in existing:
                client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    for pool in pools.values():
        semievol_phase.from_source(str(REPO), "flows/phase.py:semievol_phase").deploy(
            name=pool, work_pool_name=pool, print_next_steps=False, ignore_warnings=True)
    workers, homes = [], {}
    for side, pool in pools.items():
        home = homes[side] = base / f"home-{side}"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("SEMIEVOL_RESULTS", "SEMIEVOL_CACHE")}
        env.update(HOME=str(home), PREFECT_HOME=str(home / ".prefect"), PREFECT_WORKER_QUERY_SECONDS="2",
                   MPLCONFIGDIR=str(home / ".mpl"))
        log = open(prefect_server["home"] / f"worker-{pool}.log", "wb")
        workers.append(subprocess.Popen([PREFECT, "worker", "start", "--pool", pool, "--type", "process"], env=env,
                                        cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
    try:
        yield pools, homes, base
    finally:
        for w in workers:
            stop_worker(w)


def test_two_workers_share_phase_results_through_configured_storage(two_workers, small_data):
    """Worker a records the retrieve phase, worker b gets a cache hit for the same inputs in another round
    directory: once with a file:// URL in SEMIEVOL_RESULTS, once with a LocalFileSystem block named by
    Prefect's PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK."""
    from prefect.deployments import run_deployment
    from prefect.filesystems import LocalFileSystem

    from semievol_core.models import cache_dir
    from semievol_core.round import manifest, prepare
    from tasks.phases import phase_key
    pools, homes, base = two_workers
    url_dir, block_dir = base / "url-results", base / "block-results"
    LocalFileSystem(basepath=str(block_dir)).save("semievol-test-shared-results", overwrite=True)
    storages = {"url": {"SEMIEVOL_RESULTS": url_dir.as_uri()},
                "block": {"PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": "local-file-system/semievol-test-shared-results"}}

    def prepared(variant: str, side: str):
        raw = small_config(small_data, base / "runs", f"share-{variant}-{side}")
        raw["model"] = {"cache_dir": str(cache_dir())}  # the converted model, not the results
        raw["method"]["seed"] = 7  # inputs no other test records
        ctx = prepare(parse_config(raw))
        ctx.rd.create(manifest(ctx))
        cfg = ctx.cfg.model_dump(mode="json")
        key = phase_key("retrieve", cfg, {k: v.fingerprint for k, v in ctx.splits.items()}, {})
        return {"phase": "retrieve", "config": cfg, "round_dir": str(ctx.rd.root), "key": key}

    def run_on(side: str) -> dict:
        runs = {v: run_deployment(f"semievol-phase/{pools[side]}", parameters=prepared(v, side), timeout=0,
                                  job_variables={"env": env}) for v, env in storages.items()}
        out = {}
        with get_client(sync_client=True) as client:
            for variant, run in runs.items():
                deadline = time.monotonic() + 600
                while not (r := client.read_flow_run(run.id)).state.is_final():
                    assert time.monotonic() < deadline, f"{variant} on {side}: still {r.state.name}"
                    time.sleep(2)
                assert r.state.is_completed(), (variant, side, r.state.name, r.state.message)
                out[variant] = task_states(run.id)
        return out

    t0 = time.monotonic()
    assert run_on("a") == {"url": {"retrieve": "Completed"}, "block": {"retrieve": "Completed"}}
    t1 = time.monotonic()
    assert run_on("b") == {"url": {"retrieve": "Cached"}, "block": {"retrieve": "Cached"}}
    print(f"shared results: worker a {t1 - t0:.0f} s, worker b {time.monotonic() - t1:.0f} s")
    for d in (url_dir, block_dir):
        assert [p for p in d.rglob("*") if p.is_file()], f"nothing recorded in {d}"
    for home in homes.values():  # neither worker kept results under its own home
        assert not list(home.rglob("prefect-results"))
    b_round = base / "runs" / "share-url-b"
    assert (b_round / "retrieval" / "neighbors.parquet").is_file()  # the hit's files, brought into b's round
    assert json.loads((b_round / "manifest.json").read_text())["phases"]["retrieve"]["cached"] is True

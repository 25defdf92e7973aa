"""The round flow against a real Prefect server: end to end, fully cached, partly re-run, self-healing,
concurrent, and with a secret that must not leak."""
import json
import os
import shutil
import subprocess
import sys
import uuid

import yaml

import pandas as pd
import pytest
from helpers import artifacts, small_config, task_states
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

from flows.round import semievol_round
from semievol_core import parse_config

pytestmark = pytest.mark.prefect
PHASES = ["warm-up", "retrieve", "collaborate", "justify", "select", "evolve", "evaluate"]
SECRET = f"hf_semievolTest{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def first_run(prefect_server, small_data, tiny_model, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    raw = small_config(small_data, runs, "pf", tiny_model)
    # Inputs of its own, so that rounds of other test modules cannot pre-fill this cache: the warm-up's key has
    # the LoRA seed, the later phases' the method seed, and retrieval (whose result depends on neither) its
    # embedding batch size.
    raw["method"]["seed"] = raw["lora"]["seed"] = 1
    raw["backend"] = {"embed_batch_size": 128}
    cfg = parse_config(raw)
    Secret(value=SECRET).save("semievol-test-hub-token", overwrite=True)
    state = semievol_round(cfg, secret_env={"HF_TOKEN": "semievol-test-hub-token"}, return_state=True)
    assert state.is_completed(), state.message
    yield cfg, runs, state.state_details.flow_run_id, state.result()
    os.environ.pop("HF_TOKEN", None)


def test_round_completes_with_artifacts(first_run):
    cfg, runs, run_id, metrics = first_run
    assert set(task_states(run_id)) == set(PHASES)
    assert all(s == "Completed" for s in task_states(run_id).values())
    assert {"base", "warm", "evolved"} == set(metrics["evaluation"])
    # eval.json's figures are those of the predictions beside it: 8 test rows per model
    preds = pd.read_parquet(runs / "pf" / "eval_predictions.parquet")
    ev = json.loads((runs / "pf" / "eval.json").read_text())
    assert ev == metrics["evaluation"] and set(preds["model"]) == set(ev)
    for model, g in preds.groupby("model"):
        assert ev[model]["n"] == len(g) == 8
        assert ev[model]["accuracy"] == pytest.approx((g["answer"] == g["gold"]).mean())
        assert ev[model]["extraction_failure_rate"] == pytest.approx(g["answer"].isna().mean())
    keys = {a.key for a in artifacts(run_id)}
    assert {"semievol-round-card", "semievol-metrics", "semievol-nll-histogram"} <= keys
    kinds = {a.type for a in artifacts(run_id)}
    assert "progress" in kinds  # generation and training report progress while they run
    card = next(a for a in artifacts(run_id) if a.key == "semievol-round-card")
    assert "SemiEvol round `pf`" in card.data and "| evolved |" in card.data
    assert (runs / "pf" / "nll_histogram.png").read_bytes()[:4] == b"\x89PNG"


def test_same_inputs_are_all_cached(first_run):
    cfg, runs, _, metrics = first_run
    state = semievol_round(cfg, return_state=True)
    assert state.is_completed()
    assert task_states(state.state_details.flow_run_id) == {p: "Cached" for p in PHASES}
    assert state.result()["evaluation"] == metrics["evaluation"]


def test_cache_hit_with_missing_files_is_recomputed(first_run):
    cfg, runs, _, _ = first_run
    index = runs / "pf" / "retrieval" / "labeled.faiss"
    index.unlink()
    state = semievol_round(cfg, return_state=True)
    assert state.is_completed() and index.is_file()
    # the rebuilt index has the same content, so everything downstream stays cached
    states = task_states(state.state_details.flow_run_id)
    assert states["collaborate"] == "Cached" and states["evolve"] == "Cached"


def test_a_new_round_name_reuses_the_cache(first_run):
    cfg, runs, _, _ = first_run
    other = cfg.model_copy(update={"name": "pf-copy"})
    state = semievol_round(other, return_state=True)
    assert set(task_states(state.state_details.flow_run_id).values()) == {"Cached"}
    assert (runs / "pf-copy" / "evolved_adapter" / "adapter_model.safetensors").is_file()
    assert (runs / "pf-copy" / "card.md").read_text().count("cached (round pf)") == len(PHASES)


def test_secret_reaches_the_environment_but_no_log_artifact_or_file(first_run, prefect_server):
    cfg, runs, run_id, _ = first_run
    assert os.environ.get("HF_TOKEN") == SECRET  # the run did get its token
    from prefect.logging.handlers import APILogHandler
    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        params = client.read_flow_run(run_id).parameters
    assert logs and any("HF_TOKEN" in log.message for log in logs)  # the variable is named, never its value
    assert not [log.message for log in logs if SECRET in log.message]
    assert SECRET not in json.dumps(params, default=str)
    for a in artifacts(run_id):
        assert SECRET not in f"{a.data} {a.description}"
    files = [p for p in (runs / "pf").rglob("*") if p.is_file()]
    assert len(files) > 10 and not [p for p in files if SECRET.encode() in p.read_bytes()]
    assert SECRET.encode() not in (prefect_server["home"] / "server.log").read_bytes()


def test_a_round_name_in_use_is_refused_and_left_alone(first_run, tmp_path):
    """A second run of a round name that a live process holds fails at once with BusyError."""
    cfg, runs, _, _ = first_run
    before = (runs / "pf" / "manifest.json").read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from semievol_core.store import exclusive\n"
        f"with exclusive({str(runs / 'pf')!r}):\n    print('held', flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        state = semievol_round(cfg, return_state=True)
        assert state.is_failed() and "BusyError" in state.message and f"pid {holder.pid}" in state.message
        assert (runs / "pf" / "manifest.json").read_bytes() == before
    finally:
        holder.kill()
        holder.wait()
    assert semievol_round(cfg, return_state=True).is_completed()  # the kernel dropped the dead holder's lock


def test_two_rounds_started_together_get_their_own_directories(first_run, tmp_path):
    cfg, runs, _, metrics = first_run
    path = tmp_path / "round.yaml"
    path.write_text(yaml.safe_dump({**cfg.model_dump(mode="json"), "name": None}))
    before = {p.name for p in runs.iterdir()}
    procs = [subprocess.Popen([sys.executable, "-m", "flows.cli", "round", "--config", str(path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    new = sorted({p.name for p in runs.iterdir()} - before)
    assert len(new) == 2
    for name in new:
        got = json.loads((runs / name / "eval.json").read_text())
        assert got == json.loads((runs / "pf" / "eval.json").read_text())
        manifest = json.loads((runs / name / "manifest.json").read_text())
        assert len(manifest["phases"]) == len(PHASES)


# Last: it reuses the round name with other data, so the cache entries above no longer match its files.
def test_changing_one_unlabeled_row_reruns_only_what_depends_on_it(first_run, small_data, tmp_path):
    cfg, runs, _, _ = first_run
    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    df = pd.read_csv(data / "unlabeled.csv")
    df.loc[3, "question"] = df.loc[3, "question"] + " Shares fell sharply afterwards."
    df.to_csv(data / "unlabeled.csv", index=False)
    changed = cfg.model_copy(update={"data": cfg.data.model_copy(update={"unlabeled": str(data / "unlabeled.csv")})})
    state = semievol_round(changed, return_state=True)
    assert state.is_completed()
    states = task_states(state.state_details.flow_run_id)
    assert states["warm-up"] == "Cached"
    for phase in ("retrieve", "collaborate", "justify", "select", "evolve"):
        assert states[phase] == "Completed", (phase, states)

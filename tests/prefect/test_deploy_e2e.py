"""End to end as a platform team runs it: `prefect deploy --all` from deployments/prefect.yaml, workers on the
CPU and the GPU pool (process pools; no Docker engine in CI), `prefect deployment run`, artifacts through the API,
the flow run page in headless Chromium, and the nightly cron deployment triggered through the API."""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import browser
import pytest
import yaml
from browser import screenshot
from conftest import ARTIFACTS, PREFECT
from helpers import artifacts, small_config, stop_worker
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

pytestmark = pytest.mark.prefect
REPO = Path(__file__).resolve().parents[2]


def _run(args, env, timeout=180):
    out = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(args)}\n{out.stdout}\n{out.stderr}"
    return out.stdout


def _wait_final(client, run_id, timeout_s: float, log: Path):
    deadline = time.monotonic() + timeout_s
    while True:
        run = client.read_flow_run(run_id)
        if run.state and run.state.is_final():
            return run
        assert time.monotonic() < deadline, f"run {run.name} still {run.state.name}\n{log.read_text()[-3000:]}"
        time.sleep(5)


@pytest.fixture(scope="module")
def deployed(prefect_server, small_data, tmp_path_factory):
    """All three deployments of prefect.yaml, a worker on the CPU pool and one on the GPU pool (a process pool
    standing in for docker). Task results in one place, as on a shared volume, so runs on either pool share
    cache hits."""
    runs = tmp_path_factory.mktemp("deploy-runs")
    env = {**os.environ, "SEMIEVOL_REPO": str(REPO), "SEMIEVOL_DATA": str(small_data), "SEMIEVOL_RUNS": str(runs),
           "SEMIEVOL_GPU_IMAGE": "semievol-gpu:latest", "GPU_POOL_TYPE": "process",
           "SEMIEVOL_RESULTS": str(runs / ".prefect-results"),
           "PATH": f"{Path(PREFECT).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    _run(["bash", "deployments/setup.sh"], env)
    _run([PREFECT, "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"], env)
    workers = []
    for pool in ("semievol-cpu", "semievol-gpu"):
        log = open(prefect_server["home"] / f"worker-{pool}.log", "wb")
        workers.append(subprocess.Popen([PREFECT, "worker", "start", "--pool", pool, "--type", "process"],
                                        env={**env, "PREFECT_WORKER_QUERY_SECONDS": "3"}, cwd=REPO, stdout=log,
                                        stderr=subprocess.STDOUT))
    try:
        yield runs, env
    finally:
        for w in workers:
            stop_worker(w)


@pytest.fixture(scope="module")
def deployed_run(deployed, prefect_server, small_data):
    runs, env = deployed
    params = {"config": small_config(small_data, runs, "deployed")}
    out = _run([PREFECT, "deployment", "run", "semievol-round/round-cpu", "--params", json.dumps(params)], env)
    run_id = uuid.UUID(re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1))
    log = prefect_server["home"] / "worker-semievol-cpu.log"
    with get_client(sync_client=True) as client:
        run = _wait_final(client, run_id, 1200, log)
    assert run.state.is_completed(), (run.state.name, run.state.message, log.read_text()[-3000:])
    return run, runs


def test_deployment_run_completes_with_artifacts(deployed_run):
    run, runs = deployed_run
    keys = {a.key for a in artifacts(run.id)}
    assert {"semievol-round-card", "semievol-metrics"} <= keys
    assert (runs / "deployed" / "card.md").is_file()
    assert run.work_pool_name == "semievol-cpu"


def test_ui_shows_the_flow_run_with_the_round_card(deployed_run, prefect_server):
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium package is needed (the test command installs it)"
    run, _ = deployed_run
    ARTIFACTS.mkdir(exist_ok=True)

    async def steps(page):
        await page.wait_text(run.name)
        await page.wait_text("Completed")
        # The breadcrumb with the flow and deployment names renders after the run's state (Prefect 3.7 UI).
        await page.wait_text("semievol-round")
        await page.wait_text("round-cpu")
        await page.js("""[...document.querySelectorAll('button, a, [role=tab], li, span')]
                          .find(e => e.textContent.trim() === 'Artifacts').click()""")
        await page.wait_text("semievol-round-card")
        await screenshot(page, ARTIFACTS / "flow-run-page.png")
        listing = await page.js("document.body.innerText")
        # open the card: its markdown body, rendered by the UI
        await page.js("""[...document.querySelectorAll('*')].filter(e => e.children.length === 0 &&
                          e.textContent.trim() === 'semievol-round-card')[0].click()""")
        card = await page.wait_text("Pseudo-label accuracy")
        await screenshot(page, ARTIFACTS / "round-card.png")
        return listing, card

    listing, card = browser.run(chromium, f"{prefect_server['ui']}/runs/flow-run/{run.id}", steps)
    (ARTIFACTS / "flow-run-page.txt").write_text(listing + "\n----\n" + card)
    assert "semievol-metrics" in listing and "PROGRESS" in listing
    for needle in ("SemiEvol round", "deployed", "test accuracy", "evolved", "selected (NLL <= tau)",
                   "Pseudo-label accuracy"):
        assert needle in card, needle
    assert (ARTIFACTS / "flow-run-page.png").stat().st_size > 10_000


def test_nightly_sends_gpu_phases_to_the_gpu_pool_and_cancels_an_overlapping_run(deployed, deployed_run,
                                                                               prefect_server, small_data):
    """The cron deployment, triggered through the API: its round's GPU phases run on the GPU pool, and a second
    trigger while it runs is cancelled by Prefect's deployment concurrency limit, with the reason."""
    runs, _ = deployed
    log = prefect_server["home"] / "worker-semievol-cpu.log"
    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("semievol-evolve-continuous/nightly")
        assert nightly.global_concurrency_limit.limit == 1
        assert nightly.concurrency_options.collision_strategy == "CANCEL_NEW"
        assert nightly.schedules and nightly.schedules[0].schedule.cron == "0 2 * * *"
        assert not nightly.schedules[0].active  # deployed paused: no run waits on a GPU pool nobody polls
        params = nightly.parameters["params"]
        assert params["gpu_deployment"] == "semievol-phase/gpu" and params["mode"] == "continuous"
        # the deployment's own parameters, with the test's small round (the same as the round-cpu run's, so
        # its phases are cache hits on the GPU pool)
        params = {**params, "round": small_config(small_data, runs, "ignored")}
        del params["round"]["name"]
        first = client.create_flow_run_from_deployment(nightly.id, parameters={"params": params})
        deadline = time.monotonic() + 600
        while not (state := client.read_flow_run(first.id).state).is_running():
            assert not state.is_final() and time.monotonic() < deadline, (state.name, state.message)
            time.sleep(2)
        second = client.create_flow_run_from_deployment(nightly.id, parameters={"params": params})
        second = _wait_final(client, second.id, 300, log)
        assert second.state.name == "Cancelled", (second.state.name, second.state.message)
        assert "concurrency limit" in second.state.message.lower()
        first = _wait_final(client, first.id, 1500, log)
        assert first.state.is_completed(), (first.state.name, first.state.message, log.read_text()[-3000:])
        gpu = client.read_deployment_by_name("semievol-phase/gpu")
        on_gpu = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[gpu.id])))
    state = json.loads((runs / "nightly" / "state.json").read_text())
    (entry,) = state["rounds"]
    mine = [r for r in on_gpu if r.name.startswith(entry["round"])]
    assert {r.parameters["phase"] for r in mine} == {"warm_up", "retrieve", "collaborate", "justify", "select",
                                                     "evolve", "evaluate"}
    assert {r.work_pool_name for r in mine} == {"semievol-gpu"} and all(r.state.is_completed() for r in mine)
    assert entry["new_rows"] == 12 and entry["promoted"] is True


def test_each_pool_runs_in_its_own_copy_of_the_project(deployed, tmp_path):
    """The pull step reaches the server as written and finds the project where the flow run starts: a process
    worker's checkout, a GPU container's image copy (its SEMIEVOL_REPO is where the image put the project). A
    path of the machine that ran `prefect deploy` would not exist inside a container. The round-cpu and GPU
    runs of this module show the process-pool side; here the steps run as a container would run them."""
    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    with get_client(sync_client=True) as client:
        for name in ("semievol-phase/gpu", "semievol-round/round-cpu", "semievol-evolve-continuous/nightly"):
            assert client.read_deployment_by_name(name).pull_steps == spec["pull"], name
    assert str(REPO) not in json.dumps(spec["pull"])
    image_copy = tmp_path / "opt" / "semievol"
    image_copy.mkdir(parents=True)
    run = [sys.executable, "-c", "import asyncio, json, os, sys; from prefect.deployments.steps.core import "
           "run_steps; asyncio.run(run_steps(json.loads(sys.argv[1]))); print(os.getcwd())", json.dumps(spec["pull"])]
    env = {k: v for k, v in os.environ.items() if k != "SEMIEVOL_REPO"}
    out = subprocess.run(run, env={**env, "SEMIEVOL_REPO": str(image_copy)}, cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == str(image_copy), out.stderr[-2000:]
    out = subprocess.run(run, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "SEMIEVOL_REPO: is not set where this flow run starts" in out.stderr
    for image in ("gpu", "cpu"):
        text = re.sub(r"\\\n\s*", " ", (REPO / "docker" / f"{image}.Dockerfile").read_text())  # continued lines
        workdir = re.search(r"^WORKDIR (\S+)", text, re.M).group(1)
        assert re.search(rf"^ENV .*\bSEMIEVOL_REPO={re.escape(workdir)}(\s|$)", text, re.M), image
        assert re.search(r"^COPY flows flows$", text, re.M), image  # the entrypoints, relative to WORKDIR


def test_a_round_name_from_the_ui_is_held_to_the_same_rules(deployed, prefect_server, small_data):
    """A run started with custom parameters (what the UI's Custom run form sends) and a round name that would
    escape runs_dir: refused by the server's parameter schema or failed by the flow's validation, naming the
    field, and nothing is written."""
    runs, _ = deployed
    config = small_config(small_data, runs, "../escaped")
    log = prefect_server["home"] / "worker-semievol-cpu.log"
    before = sorted(p.name for p in runs.parent.iterdir())
    with get_client(sync_client=True) as client:
        round_cpu = client.read_deployment_by_name("semievol-round/round-cpu")
        try:
            run = client.create_flow_run_from_deployment(round_cpu.id, parameters={"config": config})
        except Exception as err:  # refused at the door by the deployment's parameter schema
            assert "name" in str(err), err
        else:
            run = _wait_final(client, run.id, 600, log)
            assert run.state.is_failed() and "name" in (run.state.message or ""), (run.state.name,
                                                                                  run.state.message)
    assert sorted(p.name for p in runs.parent.iterdir()) == before and not (runs.parent / "escaped").exists()

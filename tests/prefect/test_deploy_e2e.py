"""End to end as a platform team runs it: a process work pool, `prefect deploy` from deployments/prefect.yaml,
a worker, `prefect deployment run`, artifacts through the API, and the flow run page in headless Chromium."""
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import browser
import pytest
from browser import screenshot
from conftest import ARTIFACTS, PREFECT
from helpers import artifacts, small_config, stop_worker
from prefect.client.orchestration import get_client

pytestmark = pytest.mark.prefect
REPO = Path(__file__).resolve().parents[2]


def _run(args, env, timeout=180):
    out = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(args)}\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def deployed_run(prefect_server, small_data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("deploy-runs")
    env = {**os.environ, "SEMIEVOL_REPO": str(REPO), "SEMIEVOL_DATA": str(small_data), "SEMIEVOL_RUNS": str(runs),
           "SEMIEVOL_GPU_IMAGE": "semievol-gpu:latest", "SKIP_GPU_POOL": "1",
           "PATH": f"{Path(PREFECT).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    _run(["bash", "deployments/setup.sh"], env)
    _run([PREFECT, "--no-prompt", "deploy", "--name", "round-cpu", "--prefect-file", "deployments/prefect.yaml"], env)
    log = open(prefect_server["home"] / "worker.log", "wb")
    worker = subprocess.Popen([PREFECT, "worker", "start", "--pool", "semievol-cpu", "--type", "process"],
                              env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        params = {"config": small_config(small_data, runs, "deployed")}
        out = _run([PREFECT, "deployment", "run", "semievol-round/round-cpu", "--params", json.dumps(params)], env)
        run_id = uuid.UUID(re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1))
        deadline = time.monotonic() + 1200
        with get_client(sync_client=True) as client:
            while True:
                run = client.read_flow_run(run_id)
                if run.state and run.state.is_final():
                    break
                assert time.monotonic() < deadline, f"deployment run still {run.state.name}"
                time.sleep(5)
        assert run.state.is_completed(), (run.state.name, run.state.message,
                                          (prefect_server["home"] / "worker.log").read_text()[-3000:])
        yield run, runs
    finally:
        stop_worker(worker)


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

"""GPU phases on another work pool, sharded over two of its workers: a round sent with --gpu-deployment runs
warm-up, justify, evolve and evaluate as runs on the GPU pool and collaborative inference and scoring as 4 shard
runs; both workers take shards; the round equals an unsharded round run here (candidates, pseudo-labels, NLL,
tau, selection, test accuracy); a worker killed in the middle of a shard does not stop it (the server's
crash-detection automation marks that run Crashed and the round dispatches the shard again). A process pool
stands in for the docker pool: no Docker engine here."""
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import PREFECT
from helpers import small_config, stop_worker
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterId, FlowRunFilter,
                                            FlowRunFilterName, FlowRunFilterStartTime)

from flows.round import semievol_round
from semievol_core import parse_config
from semievol_core.errors import InputError

pytestmark = pytest.mark.prefect
REPO = Path(__file__).resolve().parents[2]
CRASH_AFTER_S = 75  # the automation's silence window; workers beat every 30 s (Prefect's minimum)


def _run(args, env):
    out = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{' '.join(args)}\n{out.stdout}\n{out.stderr}"
    return out.stdout


def _config(small_data, runs, name, **backend):
    raw = small_config(small_data, runs, name)
    raw["method"].update(seed=3, max_new_tokens=16)  # seeds of its own: no other module's cache stands in
    raw["backend"] = {"checkpoint_records": 3, **backend}  # 12 unlabeled records: 4 chunks
    return raw


def _flow_run_of(pid: int) -> str | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"PREFECT__FLOW_RUN_ID="):
            return item.split(b"=", 1)[1].decode()
    return None


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    kids = [int(p) for p in out]
    return kids + [d for k in kids for d in _descendants(k)]


def _running_shard(worker: subprocess.Popen, client, done: set[str]) -> str | None:
    """The name of a shard run this worker is executing right now (Running, so it has sent a heartbeat), other
    than those in `done`: a shard writes its record while its run is still Running, and killing that one would
    leave the worker no finished shard."""
    for pid in _descendants(worker.pid):
        run_id = _flow_run_of(pid)
        if run_id:
            run = client.read_flow_run(run_id)
            if "-shard-" in run.name and run.name not in done and run.state and run.state.is_running():
                return run.name
    return None


def _shard_records(round_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in round_dir.glob("shards/*/shard-*.json")]


def test_shards_need_a_pool(small_data, tmp_path):
    cfg = parse_config(_config(small_data, tmp_path, "nopool", shards=4))
    with pytest.raises(InputError, match="backend.shards.*gpu_deployment"):
        semievol_round.fn(cfg)
    assert not (tmp_path / "nopool").exists()


def test_sharded_round_over_two_workers_equals_the_unsharded_round(prefect_server, small_data, tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, "SEMIEVOL_REPO": str(REPO), "SEMIEVOL_RUNS": str(runs), "SEMIEVOL_DATA": str(small_data),
           "SEMIEVOL_GPU_IMAGE": "semievol-gpu:latest", "SKIP_GPU_POOL": "1", "GPUS": "2",
           "CRASH_AFTER_S": str(CRASH_AFTER_S), "PATH": f"{Path(PREFECT).parent}{os.pathsep}{os.environ['PATH']}"}
    _run(["bash", "deployments/setup.sh"], env)
    _run([PREFECT, "concurrency-limit", "create", "gpu", "2"], env)  # one GPU per worker, two workers
    if subprocess.run([PREFECT, "work-pool", "inspect", "semievol-gpu"], env=env, capture_output=True).returncode:
        _run([PREFECT, "work-pool", "create", "semievol-gpu", "--type", "process"], env)  # stands in for docker
    _run([PREFECT, "--no-prompt", "deploy", "--name", "gpu", "--prefect-file", "deployments/prefect.yaml"], env)

    # The reference: the same round unsharded. Its task results go where the GPU pool's runs keep theirs
    # (prefect.yaml), so the sharded round's warm-up and evolve are cache hits there.
    env["SEMIEVOL_RESULTS"] = str(runs / ".prefect-results")
    for name, backend in (("unsharded", {}), ("sharded", {"shards": 4})):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(_config(small_data, runs, name, **backend)))
    _run([sys.executable, "-m", "flows.cli", "round", "--config", str(tmp_path / "unsharded.yaml")], env)
    cfg_path = tmp_path / "sharded.yaml"
    worker_env = {**env, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30", "PREFECT_WORKER_QUERY_SECONDS": "2"}
    workers, logs = [], []
    for i in (1, 2):
        logs.append(open(prefect_server["home"] / f"shard-worker-{i}.log", "wb"))
        workers.append(subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", "semievol-gpu", "--type", "process", "--limit", "1",
             "--name", f"shard-worker-{i}"], env=worker_env, cwd=REPO, stdout=logs[-1], stderr=subprocess.STDOUT,
            start_new_session=True))  # its own process group: killing it takes its flow-run processes too
    victim, survivor = workers
    round_dir = runs / "sharded"
    killed = None
    try:
        started = datetime.now(timezone.utc)
        parent_log = tmp_path / "round.log"
        parent = subprocess.Popen([sys.executable, "-m", "flows.cli", "round", "--config", str(cfg_path),
                                   "--gpu-deployment", "semievol-phase/gpu"], env=env, cwd=REPO,
                                  stdout=parent_log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 1500
        with get_client(sync_client=True) as client:
            while parent.poll() is None:
                assert time.monotonic() < deadline, "sharded round did not finish"
                # Kill the first worker mid-shard, once it has finished a shard of its own.
                if killed is None:
                    done = {r["flow_run_name"] for r in _shard_records(round_dir) if r["worker_pid"] == victim.pid}
                    killed = _running_shard(victim, client, done) if done else None
                    if killed:
                        os.killpg(victim.pid, signal.SIGKILL)
                time.sleep(0.5)
        assert parent.returncode == 0, parent_log.read_text()[-4000:]
    finally:
        for w in workers:
            stop_worker(w, group=True)
    assert killed, "the first worker never ran a second shard; nothing was killed"

    manifest = json.loads((round_dir / "manifest.json").read_text())
    records = [r for phase in ("collaborate", "select") for r in manifest["phases"][phase]["shard_runs"]]
    assert all(len(manifest["phases"][p]["shard_runs"]) == 4 for p in ("collaborate", "select"))
    # Both workers took shards: the victim finished one before it was killed.
    assert {r["worker_pid"] for r in records} == {victim.pid, survivor.pid}
    retried = [r for r in records if r["tries"] > 1]
    assert retried and all(r["worker_pid"] == survivor.pid for r in retried)
    with get_client(sync_client=True) as client:
        crashed = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[killed])))
        gpu = client.read_deployment_by_name("semievol-phase/gpu")
        on_gpu = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[gpu.id])),
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=started)))
    assert [r.state.name for r in crashed] == ["Crashed"], [(r.state.name, r.state.message) for r in crashed]
    # 4 whole phases + 2 x 4 shards + the retried one, all on the GPU pool, all completed but the killed one
    assert len(on_gpu) == 13 and {r.work_pool_name for r in on_gpu} == {"semievol-gpu"}
    assert sorted(r.state.name for r in on_gpu) == ["Completed"] * 12 + ["Crashed"]
    whole = {r.parameters["phase"] for r in on_gpu if r.parameters.get("shard") is None}
    assert whole == {"warm_up", "justify", "evolve", "evaluate"}

    # Identical to the unsharded round: candidates, pseudo-labels with their NLL, tau and the selection.
    ref_dir = runs / "unsharded"
    key = ["id", "config"]
    a = pd.read_parquet(ref_dir / "candidates.parquet").sort_values(key, ignore_index=True)
    b = pd.read_parquet(round_dir / "candidates.parquet").sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(a, b)
    a = pd.read_parquet(ref_dir / "pseudo_labels.parquet").sort_values("id", ignore_index=True)
    b = pd.read_parquet(round_dir / "pseudo_labels.parquet").sort_values("id", ignore_index=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    sel = [json.loads((d / "selection.json").read_text()) for d in (ref_dir, round_dir)]
    assert sel[0] == sel[1] and sel[0]["pool"] >= 8
    evals = [json.loads((d / "eval.json").read_text()) for d in (ref_dir, round_dir)]
    assert evals[0] == evals[1]
    assert not (round_dir / "shards").exists()

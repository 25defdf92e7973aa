"""GPU phases on a GPU work pool with ONE GPU slot: two rounds started together, one sharded (collaborative
inference and scoring as 2 shard runs each) and one not, send every GPU phase to the pool; both complete, no two
GPU phases overlap in time, and the sharded round equals the unsharded one (candidates, pseudo-labels, NLL, tau,
selection, test accuracy). The first worker is killed in the middle of a whole phase: the server's crash-detection
automation marks that run Crashed, the round dispatches the phase again and the second worker runs it. The
sharded phase's parent task loses the API once after dispatching its shards and is retried: it finds the runs it
started (idempotency keys) instead of starting more. A process pool stands in for the docker pool."""
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
                                            FlowRunFilterId, FlowRunFilterStartTime)

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


def _config(data, runs, name, model=None, **backend):
    raw = small_config(data, runs, name, model)
    raw["method"].update(seed=3, max_new_tokens=16)  # seeds of its own: no other module's cache stands in
    raw["backend"] = {"checkpoint_records": 3, **backend}  # 6 unlabeled records: 2 chunks
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


def _running_phase(worker: subprocess.Popen, client) -> str | None:
    """The name of a whole-phase run this worker is computing right now: Running, with its phase task
    started."""
    for pid in _descendants(worker.pid):
        run_id = _flow_run_of(pid)
        if run_id:
            run = client.read_flow_run(run_id)
            if "-shard-" not in run.name and run.state and run.state.is_running() and any(
                    tr.state and tr.state.is_running() for tr in client.read_task_runs(
                        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))):
                return run.name
    return None


def test_shards_need_a_pool(small_data, tmp_path):
    cfg = parse_config(_config(small_data, tmp_path, "nopool", shards=4))
    with pytest.raises(InputError, match="backend.shards.*gpu_deployment"):
        semievol_round.fn(cfg)
    assert not (tmp_path / "nopool").exists()


def _gpu_task_runs(client, flow_runs) -> list:
    """The task runs inside the GPU pool's flow runs, each with its flow run."""
    by_id = {r.id: r for r in flow_runs}
    out = []
    for tr in client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(by_id)))):
        out.append((tr, by_id[tr.flow_run_id]))
    return out


def test_two_rounds_on_one_gpu_slot_with_a_killed_worker(prefect_server, tiny_data, tiny_model, tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, "SEMIEVOL_REPO": str(REPO), "SEMIEVOL_RUNS": str(runs), "SEMIEVOL_DATA": str(tiny_data),
           "SEMIEVOL_GPU_IMAGE": "semievol-gpu:latest", "GPU_POOL_TYPE": "process", "GPUS": "1",
           "CRASH_AFTER_S": str(CRASH_AFTER_S), "PATH": f"{Path(PREFECT).parent}{os.pathsep}{os.environ['PATH']}"}
    _run(["bash", "deployments/setup.sh"], env)
    _run([PREFECT, "--no-prompt", "deploy", "--name", "gpu", "--prefect-file", "deployments/prefect.yaml"], env)
    with get_client(sync_client=True) as client:
        assert client.read_work_pool("semievol-gpu").concurrency_limit == 1

    # Task results where the GPU pool's runs keep theirs (prefect.yaml), so the rounds share cache hits.
    env["SEMIEVOL_RESULTS"] = str(runs / ".prefect-results")
    for name, backend in (("unsharded", {}), ("sharded", {"shards": 2})):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(_config(tiny_data, runs, name, tiny_model, **backend)))
    worker_env = {**env, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30", "PREFECT_WORKER_QUERY_SECONDS": "2"}
    workers, rounds = [], {}

    def start_worker(i: int) -> subprocess.Popen:
        log = open(prefect_server["home"] / f"gpu-worker-{i}.log", "wb")
        workers.append(subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", "semievol-gpu", "--type", "process", "--limit", "1",
             "--name", f"gpu-worker-{i}"], env=worker_env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True))  # its own process group: killing it takes its flow-run processes too
        return workers[-1]

    victim = start_worker(1)  # alone at first, so it takes the first GPU run: a whole warm-up phase
    killed = None
    try:
        started = datetime.now(timezone.utc)
        # backend.shards is not in the cache key (the result does not depend on it), so the sharded round keeps
        # the results of the phases it computes itself (the sharded parents) apart: otherwise whichever round
        # got there first would hand the other its candidates and NLLs, and the comparison below would be void.
        own = {"unsharded": env, "sharded": {**env, "SEMIEVOL_RESULTS": str(runs / ".sharded-results")}}
        for name, cli in (("unsharded", ["-m", "flows.cli"]), ("sharded", ["tests/prefect/faulty_round.py"])):
            log = tmp_path / f"{name}.log"
            rounds[name] = (subprocess.Popen(
                [sys.executable, *cli, "round", "--config", str(tmp_path / f"{name}.yaml"), "--gpu-deployment",
                 "semievol-phase/gpu"], env=own[name], cwd=REPO, stdout=log.open("wb"),
                stderr=subprocess.STDOUT), log)
        deadline = time.monotonic() + 2400
        with get_client(sync_client=True) as client:
            while any(p.poll() is None for p, _ in rounds.values()):
                assert time.monotonic() < deadline, "the rounds did not finish"
                if killed is None:
                    killed = _running_phase(victim, client)
                    if killed:
                        os.killpg(victim.pid, signal.SIGKILL)
                        start_worker(2)
                time.sleep(0.5)
        for name, (proc, log) in rounds.items():
            assert proc.returncode == 0, f"{name}:\n{log.read_text()[-4000:]}"
    finally:
        for w in workers:
            stop_worker(w, group=True)
    assert killed, "the first worker never ran a whole phase; nothing was killed"

    with get_client(sync_client=True) as client:
        gpu = client.read_deployment_by_name("semievol-phase/gpu")
        on_gpu = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[gpu.id])),
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=started)))
        task_runs = _gpu_task_runs(client, on_gpu)
    names = sorted(r.name for r in on_gpu)
    first_tries = [n for n in names if "-try-" not in n]
    # The killed run is Crashed and was dispatched again; the retry ran on the second worker.
    crashed = [r for r in on_gpu if r.name == killed]
    assert [r.state.name for r in crashed] == ["Crashed"], [(r.state.name, r.state.message) for r in crashed]
    assert {r.name: r.state.name for r in on_gpu}.get(f"{killed}-try-2") == "Completed"
    # Every run that did not complete was sent again (a healthy run that a loaded machine kept from beating in
    # time would be too), and the last try of each completed.
    last = {}
    for r in sorted(on_gpu, key=lambda r: r.name):
        last[r.name.split("-try-")[0]] = r
    assert all(r.state.is_completed() for r in last.values()), {k: r.state.name for k, r in last.items()}
    assert {r.work_pool_name for r in on_gpu} == {"semievol-gpu"}
    # 7 whole phases for the unsharded round, 5 whole phases + 2 x 2 shards for the sharded one: the sharded
    # parent's retry (after the injected API loss) started no second set of shard runs.
    assert len([n for n in first_tries if "-shard-" in n]) == 4 and len(first_tries) == 7 + 5 + 4, names
    sharded_log = rounds["sharded"][1].read_text()
    assert "injected by the test: lost the API" in sharded_log
    # One GPU slot: no two GPU phases computed at the same time (the killed run's task never ended).
    spans = sorted((tr.start_time, tr.end_time, tr.name) for tr, fr in task_runs
                   if tr.start_time and fr.state.name != "Crashed")
    assert len(spans) >= 16  # every run but the crashed one, each with its phase task
    for (s0, e0, n0), (s1, e1, n1) in zip(spans, spans[1:]):
        assert e0 is not None and e0 <= s1, f"{n0} ({s0}..{e0}) overlaps {n1} ({s1}..{e1})"

    manifest = json.loads((runs / "sharded" / "manifest.json").read_text())
    assert all(len(manifest["phases"][p]["shard_runs"]) == 2 for p in ("collaborate", "select"))
    unsharded = json.loads((runs / "unsharded" / "manifest.json").read_text())["phases"]
    assert not any(unsharded[p].get("cached") for p in ("collaborate", "select"))  # computed by each round
    # Identical to the unsharded round: candidates, pseudo-labels with their NLL, tau and the selection.
    ref_dir, round_dir = runs / "unsharded", runs / "sharded"
    key = ["id", "config"]
    a = pd.read_parquet(ref_dir / "candidates.parquet").sort_values(key, ignore_index=True)
    b = pd.read_parquet(round_dir / "candidates.parquet").sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(a, b)
    a = pd.read_parquet(ref_dir / "pseudo_labels.parquet").sort_values("id", ignore_index=True)
    b = pd.read_parquet(round_dir / "pseudo_labels.parquet").sort_values("id", ignore_index=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    sel = [json.loads((d / "selection.json").read_text()) for d in (ref_dir, round_dir)]
    assert sel[0] == sel[1] and sel[0]["pool"] >= 3
    evals = [json.loads((d / "eval.json").read_text()) for d in (ref_dir, round_dir)]
    assert evals[0] == evals[1]
    assert not (round_dir / "shards").exists()

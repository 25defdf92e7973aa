import os
import signal
import subprocess
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter,
                                            FlowRunFilterId)


def task_states(flow_run_id) -> dict[str, str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {r.name: r.state.name for r in runs}


def task_runs(flow_run_id) -> dict:
    with get_client(sync_client=True) as client:
        return {r.name: r for r in client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))}


def artifacts(flow_run_id) -> list:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))


def small_config(data: Path, runs: Path, name: str | None, model: Path | None = None) -> dict:
    """model: None for the embedded SmolLM2, else a model directory (the tests' tiny model)."""
    return {"name": name, "runs_dir": str(runs), "progress": False,
            "model": {} if model is None else {"base": str(model)},
            "data": {"labeled": str(data / "labeled.csv"), "unlabeled": str(data / "unlabeled.csv"),
                     "test": str(data / "test.csv")},
            "lora": {"lr": 1e-3, "batch_size": 4}, "method": {"max_new_tokens": 24}}


def stop_worker(proc: subprocess.Popen, group: bool = False) -> None:
    """SIGTERM, then SIGKILL after 5 s: a `prefect worker start` process sometimes never finishes its own
    graceful shutdown (seen with prefect 3.7.7: "Sending SIGINT to the process worker", then no exit; CI spent a
    minute per module waiting for it), and a test is about the runs the worker took, not how quickly Prefect's
    worker exits."""
    if proc.poll() is not None:
        return
    send = (lambda sig: os.killpg(proc.pid, sig)) if group else proc.send_signal
    send(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait(30)

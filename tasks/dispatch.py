"""Runs on the GPU work pool, watched: what a whole-phase dispatch and a sharded phase's fan-out share.

Each run is a flow run of the `semievol-phase` deployment, created with an idempotency key made of the
orchestrating flow run, the job and the try: a parent task that is retried after it dispatched gets the runs
it already started back from the server instead of starting a second set. Every run carries the tag that the
crash-detection automation (deployments/setup.sh) watches, so a run whose worker died is marked Crashed; a
run that fails, crashes or runs longer than its timeout (counted from its start, not from its wait for a GPU
slot) is cancelled if need be and dispatched again, up to `attempts` tries."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.states import Cancelling

WATCHED = "semievol-gpu-run"  # the tag the crash-detection automation watches
# A run still waiting for a worker after this long is logged, and again each period after: waiting for a busy
# GPU is normal and not timed out, but a pool no worker polls waits forever, and the log should say so.
WAIT_WARN_S = 600.0


@dataclass
class Job:
    """One unit of GPU work: `label` names it in run names and idempotency keys."""
    label: str
    parameters: dict
    tags: list[str] = field(default_factory=list)
    tries: int = 0
    run_id: object = None
    started: float | None = None  # monotonic time at which its current run was first seen Running
    sent: float = 0.0  # monotonic time at which its current run was created
    waits_reported: int = 0  # how many WAIT_WARN_S periods of waiting for a worker have been logged


def _origin() -> str:
    from prefect.runtime import flow_run
    return str(flow_run.id) if flow_run.id else "no-flow-run"


def overdue(job: Job, now: float) -> float | None:
    """The seconds a job's run has waited for a worker, once per WAIT_WARN_S of waiting; else None."""
    waited = now - job.sent
    if job.started is not None or waited < WAIT_WARN_S * (job.waits_reported + 1):
        return None
    job.waits_reported = int(waited // WAIT_WARN_S)
    return waited


def run_watched(jobs: list[Job], deployment: str, attempts: int, timeout_s: float, poll_s: float = 2.0) -> None:
    """Runs every job as a run of `deployment` and waits until each has completed; raises RuntimeError when a
    job has failed, crashed or timed out on each of `attempts` tries."""
    logger = get_run_logger()
    origin = _origin()

    def start(job: Job) -> None:
        job.tries += 1
        name = job.label + (f"-try-{job.tries}" if job.tries > 1 else "")
        run = run_deployment(deployment, parameters=job.parameters, timeout=0, as_subflow=True,
                             tags=[WATCHED, *job.tags], flow_run_name=name,
                             idempotency_key=f"semievol:{origin}:{job.label}:try-{job.tries}")
        job.run_id, job.started, job.sent, job.waits_reported = run.id, None, time.monotonic(), 0
        logger.info("%s: sent to %s (flow run %s)", name, deployment, run.id)

    for job in jobs:
        start(job)
    running = list(jobs)
    with get_client(sync_client=True) as client:
        while running:
            time.sleep(poll_s)
            for job in list(running):
                state = client.read_flow_run(job.run_id).state
                if state is None:
                    continue
                if state.is_running() and job.started is None:
                    job.started = time.monotonic()
                waited = None if state.is_final() else overdue(job, time.monotonic())
                if waited is not None:
                    logger.warning("%s: not started after %.0f min (%s): is a worker polling the work pool of %s?",
                                   job.label, waited / 60, state.name, deployment)
                if not state.is_final():
                    if job.started is not None and time.monotonic() - job.started > timeout_s \
                            and not state.is_cancelling():
                        client.set_flow_run_state(job.run_id, Cancelling(
                            message=f"ran longer than backend.gpu_timeout_s = {timeout_s:g} s"), force=True)
                        logger.warning("%s: timed out after %g s; cancelling it", job.label, timeout_s)
                        state = None
                    else:
                        continue
                if state is not None and state.is_completed():
                    running.remove(job)
                    continue
                why = f"ended {state.name} ({state.message})" if state is not None else \
                    f"timed out after {timeout_s:g} s"
                if job.tries >= attempts:
                    raise RuntimeError(f"{job.label} {why} on each of {attempts} tries")
                logger.warning("%s %s; sending it again", job.label, why)
                start(job)


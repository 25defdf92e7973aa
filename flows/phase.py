"""One phase as its own flow run: what the GPU work pool runs when a CPU orchestrator dispatches to it."""
from __future__ import annotations

from prefect import flow

from tasks.phases import TASKS, result_storage


# The result (paths + digest) is persisted so the dispatching flow can read it back.
@flow(name="semievol-phase", persist_result=True, result_storage=result_storage())
def semievol_phase(phase: str, config: dict, round_dir: str, key: str) -> dict:
    if phase not in TASKS:
        raise ValueError(f"unknown phase {phase!r}; one of {list(TASKS)}")
    return TASKS[phase](config, round_dir, key)

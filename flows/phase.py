"""One phase as its own flow run: what the GPU work pool runs when a CPU orchestrator dispatches to it."""
from __future__ import annotations

from prefect import flow

from tasks.phases import TASKS


@flow(name="semievol-phase")
def semievol_phase(phase: str, config: dict, round_dir: str, key: str) -> dict:
    if phase not in TASKS:
        raise ValueError(f"unknown phase {phase!r}; one of {list(TASKS)}")
    return TASKS[phase](config, round_dir, key)

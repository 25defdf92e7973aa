"""One phase as its own flow run: what the GPU work pool runs when a CPU orchestrator dispatches to it.

It runs the phase's cached task exactly as the orchestrator would locally and leaves the outputs and the
manifest entry in the shared round directory, where the orchestrator reads them."""
from __future__ import annotations

from pathlib import Path

from prefect import flow

from semievol_core.store import RoundDir
from tasks.phases import TASKS

from flows.round import run_task
from flows.secrets import apply_secret_env


@flow(name="semievol-phase")
def semievol_phase(phase: str, config: dict, round_dir: str, key: str,
                   secret_env: dict[str, str] | None = None) -> str:
    if phase not in TASKS:
        raise ValueError(f"unknown phase {phase!r}; one of {list(TASKS)}")
    apply_secret_env(secret_env)
    return run_task(phase, config, RoundDir(Path(round_dir)), key)

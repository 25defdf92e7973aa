"""One phase as its own flow run: what the GPU work pool runs when a CPU orchestrator dispatches to it.

It runs the phase's cached task exactly as the orchestrator would locally and leaves the outputs and the
manifest entry in the shared round directory, where the orchestrator reads them. A shard run of a sharded
phase leaves its chunk files and a shard record there instead."""
from __future__ import annotations

import json
from pathlib import Path

from prefect import flow

from semievol_core.store import RoundDir
from tasks.phases import SHARDED, TASKS
from tasks.phases import shard as run_shard_task

from flows.round import run_task
from flows.secrets import apply_secret_env


@flow(name="semievol-phase")
def semievol_phase(phase: str, config: dict, round_dir: str, key: str,
                   secret_env: dict[str, str] | None = None, shard: int | None = None, shards: int = 1) -> str:
    """A whole phase, or with `shard` one shard of a sharded phase (its chunks only; the parent merges)."""
    if phase not in TASKS:
        raise ValueError(f"unknown phase {phase!r}; one of {list(TASKS)}")
    apply_secret_env(secret_env)
    if shard is not None:
        if phase not in SHARDED:
            raise ValueError(f"phase {phase!r} is not sharded; sharded: {list(SHARDED)}")
        return json.dumps(run_shard_task(phase, config, round_dir, shard, shards))
    return run_task(phase, config, RoundDir(Path(round_dir)), key, on_gpu_pool=True)

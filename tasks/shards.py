"""Fan-out of a sharded phase: one flow run per shard on the GPU work pool, retried alone when it fails.

The shard runs exchange nothing through Prefect results: they read the round directory (warm adapter,
neighbours, justified pseudo-labels) and leave their chunk files and a small record there, where the parent's
phase merges them. A shard run whose worker dies stays Running until the server's crash-detection automation
(deployments/setup.sh) marks it Crashed from its missing heartbeats; the parent then dispatches it again."""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Callable

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment

from semievol_core.store import read_json, write_json

TAG = "semievol-shard"  # what the crash-detection automation watches


def record_path(chunk_dir: Path, shard: int) -> Path:
    return Path(chunk_dir) / f"shard-{shard}.json"


def write_record(chunk_dir: Path, shard: int, shards: int, files: list[Path], computed: int,
                 seconds: float) -> Path:
    from prefect.runtime import flow_run
    return write_json(record_path(chunk_dir, shard), {
        "shard": shard, "shards": shards, "chunks": len(files), "computed": computed,
        "seconds": round(seconds, 2), "flow_run": str(flow_run.id) if flow_run.id else None,
        "flow_run_name": flow_run.name if flow_run.id else None,
        # a process worker starts each flow run as its child: the parent pid names the worker
        "host": socket.gethostname(), "worker_pid": os.getppid()})


def fan_out(phase: str, parameters: dict, todo: list[int], shards: int, deployment: str, chunk_dir: Path,
            attempts: int, poll_s: float = 2.0, pull: Callable[[], object] | None = None) -> list[dict]:
    """Runs shards `todo` of `phase` as runs of `deployment` and waits for all of them; a shard that fails or
    crashes is dispatched again, up to `attempts` tries in all. `pull` brings the shards' chunk files and
    records into chunk_dir when they go through remote storage. Returns the shard records in shard order."""
    logger = get_run_logger()
    tries = {j: 0 for j in todo}
    running: dict[int, object] = {}

    def start(j: int) -> None:
        tries[j] += 1
        name = f"{phase}-shard-{j + 1}-of-{shards}" + (f"-try-{tries[j]}" if tries[j] > 1 else "")
        run = run_deployment(deployment, parameters={**parameters, "phase": phase, "shard": j, "shards": shards},
                             timeout=0, as_subflow=True, tags=[TAG], flow_run_name=name)
        running[j] = run.id
        logger.info("%s: dispatched to %s (flow run %s)", name, deployment, run.id)

    for j in todo:
        start(j)
    with get_client(sync_client=True) as client:
        while running:
            time.sleep(poll_s)
            for j, run_id in list(running.items()):
                state = client.read_flow_run(run_id).state
                if state is None or not state.is_final():
                    continue
                del running[j]
                if state.is_completed():
                    continue
                if tries[j] >= attempts:
                    raise RuntimeError(f"{phase} shard {j + 1}/{shards} ended {state.name} on each of "
                                       f"{attempts} tries; last: {state.message}")
                logger.warning("%s shard %d/%d ended %s (%s); dispatching it again", phase, j + 1, shards,
                               state.name, state.message)
                start(j)
    if pull:
        pull()
    records = []
    for j in range(shards):
        path = record_path(chunk_dir, j)
        if path.exists():
            records.append({**read_json(path), "tries": tries.get(j, 0)})
    logger.info("%s: %d shards done: %s", phase, shards, json.dumps(
        [{k: r[k] for k in ("shard", "host", "worker_pid", "computed", "tries")} for r in records]))
    return records

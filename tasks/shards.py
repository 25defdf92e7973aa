"""Fan-out of a sharded phase: one flow run per shard on the GPU work pool, retried alone when it fails.

The shard runs exchange nothing through Prefect results: they read the round directory (warm adapter,
neighbours, justified pseudo-labels) and leave their chunk files and a small record there, where the parent's
phase merges them. Dispatch, idempotency, timeouts and re-dispatch of crashed runs: tasks/dispatch.py."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Callable

from prefect import get_run_logger

from semievol_core.store import read_json, write_json

from tasks.dispatch import Job, run_watched

TAG = "semievol-shard"  # names shard runs in the UI; every dispatched run also carries dispatch.WATCHED


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
            attempts: int, timeout_s: float, poll_s: float = 2.0, pull: Callable[[], object] | None = None
            ) -> list[dict]:
    """Runs shards `todo` of `phase` as watched runs of `deployment` and waits for all of them. `pull` brings
    the shards' chunk files and records into chunk_dir when they go through remote storage. Returns the shard
    records in shard order."""
    logger = get_run_logger()
    jobs = {j: Job(f"{phase}-shard-{j + 1}-of-{shards}", {**parameters, "phase": phase, "shard": j, "shards": shards},
                   tags=[TAG]) for j in todo}
    run_watched(list(jobs.values()), deployment, attempts, timeout_s, poll_s)
    if pull:
        pull()
    records = []
    for j in range(shards):
        path = record_path(chunk_dir, j)
        if path.exists():
            records.append({**read_json(path), "tries": jobs[j].tries if j in jobs else 0})
    logger.info("%s: %d shards done: %s", phase, shards, json.dumps(
        [{k: r[k] for k in ("shard", "host", "worker_pid", "computed", "tries")} for r in records]))
    return records

"""How the unlabeled pool is cut into checkpoint chunks and the chunks dealt to shards.

Records are ordered by a hash of their id and cut into chunks of backend.checkpoint_records; chunk c belongs
to shard c mod shards. The chunks, their seeds and their batches do not depend on the number of shards, so a
round split over any number of workers computes exactly what one process computes."""
from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from .store import write_parquet


def _rank(record_id: str) -> str:
    return hashlib.sha256(str(record_id).encode()).hexdigest()


def chunks(ids: list[str], size: int) -> list[list[int]]:
    """Positions in `ids`, grouped into chunks of `size` in hash-of-id order."""
    order = sorted(range(len(ids)), key=lambda i: (_rank(ids[i]), i))
    return [order[s:s + size] for s in range(0, len(order), size)]


def of_shard(n_chunks: int, shard: int, shards: int) -> list[int]:
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} outside 0..{shards - 1}")
    return list(range(shard, n_chunks, shards))


@dataclass
class Chunk:
    """One checkpoint unit: its requests (payload), what each request is (meta) and the file it ends in,
    named by a hash of everything that decides its contents."""
    index: int
    path: Path
    payload: list
    meta: list


def plan(ids: list[str], size: int, per_record: int, payload: list, meta: list, directory: Path,
         identity: str) -> list[Chunk]:
    """Chunks over records whose requests sit record-major in payload (per_record of them each)."""
    out = []
    for c, positions in enumerate(chunks(ids, size)):
        idx = [p * per_record + j for p in positions for j in range(per_record)]
        reqs = [payload[i] for i in idx]
        key = hashlib.sha256((identity + repr(reqs)).encode()).hexdigest()[:16]
        out.append(Chunk(c, Path(directory) / f"{c:05d}-{key}.parquet", reqs, [meta[i] for i in idx]))
    return out


def run_missing(todo: list[Chunk], compute: Callable[[Chunk], pd.DataFrame]) -> int:
    """Computes and writes (atomically) each chunk whose file is not there yet; returns how many it computed."""
    done = 0
    for ch in todo:
        if not ch.path.exists():
            write_parquet(ch.path, compute(ch))
            done += 1
    return done


def pending(all_chunks: list[Chunk], shards: int) -> list[int]:
    """Shards with at least one chunk file missing."""
    return sorted({ch.index % shards for ch in all_chunks if not ch.path.exists()})


def merge(all_chunks: list[Chunk], columns: list[str]) -> pd.DataFrame:
    parts = [pd.read_parquet(ch.path) for ch in all_chunks]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def clean(directory: Path) -> None:
    """Removes a phase's chunk files once its merged table is written (and shards/ when it is empty)."""
    shutil.rmtree(directory, ignore_errors=True)
    if directory.parent.is_dir() and not any(directory.parent.iterdir()):
        directory.parent.rmdir()

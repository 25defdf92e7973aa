"""The round directory: every file written to a temporary name and renamed, and the manifest."""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from pathlib import Path

import pandas as pd

from .errors import BusyError


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yields a temporary sibling to write to; renamed over path only if the block finishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        if tmp.is_dir() and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_json(path: Path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_parquet(path: Path, df: pd.DataFrame) -> Path:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return path


def digest(root: Path, rels: list[str]) -> str:
    """Content hash of files and directories under root (a phase's outputs, an adapter), by name relative to
    root."""
    h = hashlib.sha256()
    for rel in sorted(rels):
        path = root / rel
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            h.update(str(f.relative_to(root)).encode())
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


@functools.cache
def code_version() -> str:
    """A hash of the library's source: results kept by content are keyed on it, so a change to any code that
    could have produced them starts afresh."""
    h = hashlib.sha256()
    for p in sorted(Path(__file__).parent.rglob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def exclusive(directory: Path):
    """Holds directory/.lock for the block, so one live run writes a directory at a time. An OS lock, not a
    marker file: the kernel drops it when its process dies, so a killed run's directory can be resumed at
    once, and two runs can never both believe they took over a stale lock."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise BusyError(f"{directory}: in use by a running run ({holder}); wait for it or pick another name")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield directory
    finally:
        os.close(fd)  # releases the lock


class RoundDir:
    """runs/<round>/ and the names of what each phase writes into it."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.manifest = self.root / "manifest.json"
        self.warm_adapter = self.root / "warm_adapter"
        self.index = self.root / "retrieval" / "labeled.faiss"
        self.neighbors = self.root / "retrieval" / "neighbors.parquet"
        self.candidates = self.root / "candidates.parquet"
        self.justified = self.root / "justified.parquet"  # pseudo-responses before scoring
        self.justify_summary = self.root / "justify.json"
        self.pseudo_labels = self.root / "pseudo_labels.parquet"  # with nll and selected
        self.selection = self.root / "selection.json"
        self.evolved_adapter = self.root / "evolved_adapter"
        self.predictions = self.root / "eval_predictions.parquet"
        self.evaluation = self.root / "eval.json"
        self.metrics = self.root / "metrics.json"
        self.card = self.root / "card.md"

    def lock(self):
        return exclusive(self.root)

    def create(self, manifest: dict) -> "RoundDir":
        """A fresh manifest for this run: a reused round name never keeps another run's config or timings."""
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(self.manifest, {**manifest, "phases": {}})
        return self

    def read_manifest(self) -> dict:
        return read_json(self.manifest)

    def record_phase(self, name: str, seconds: float, outputs: list[Path], **extra) -> None:
        m = self.read_manifest()
        m["phases"][name] = {"seconds": round(seconds, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                             "outputs": [str(Path(o).relative_to(self.root)) for o in outputs], **extra}
        write_json(self.manifest, m)

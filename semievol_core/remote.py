"""A sharded round's exchange through an fsspec URL (s3://, gs://, file://, ...), for GPU workers that do not
mount the round directory: the parent pushes what the shard runs read, each shard run pulls it into a scratch
directory and pushes back its chunk files, the parent pulls those before it merges. A file lands under its
final remote name only once it is whole (written under a temporary name, then moved)."""
from __future__ import annotations

import uuid
from pathlib import Path

import fsspec

from .store import atomic_path


def _fs(url: str, round_name: str):
    fs, root = fsspec.core.url_to_fs(url)
    return fs, f"{root.rstrip('/')}/{round_name}"


def _files(root: Path, rels: list[str]) -> list[Path]:
    out = []
    for rel in rels:
        path = root / rel
        out += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] * path.is_file()
    return out


def push(root: Path, rels: list[str], url: str) -> int:
    """Copies files and directories under root (relative names) to <url>/<round name>/; returns the file count."""
    fs, base = _fs(url, Path(root).name)
    files = _files(Path(root), rels)
    for f in files:
        dst = f"{base}/{f.relative_to(root).as_posix()}"
        tmp = f"{dst}.tmp-{uuid.uuid4().hex[:8]}"
        fs.makedirs(dst.rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(str(f), tmp)
        fs.mv(tmp, dst)
    return len(files)


def pull(url: str, round_name: str, rels: list[str], root: Path) -> int:
    """Copies <url>/<round name>/<rel> (files or directories, those that exist) under root; returns the count."""
    fs, base = _fs(url, round_name)
    n = 0
    for rel in rels:
        src = f"{base}/{rel}"
        if not fs.exists(src):
            continue
        names = [p for p in fs.find(src) if ".tmp-" not in p.rsplit("/", 1)[-1]] if fs.isdir(src) else [src]
        for name in names:
            dst = Path(root) / name[len(base) + 1:]
            with atomic_path(dst) as tmp:
                fs.get_file(name, str(tmp))
            n += 1
    return n

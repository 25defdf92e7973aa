"""LoRA trainings kept by what they were trained on. Step 7 makes the evolve phase of one round and the warm-up
of the next train the same adapter (labeled + selected becomes the next labeled set, and both train a fresh LoRA
on the base model with the same recipe), and rounds that differ only after the warm-up train the same warm
adapter: each is trained once per runs_dir and copied after that.

runs_dir/.trainings/<key>.json names the adapter a training wrote (relative to runs_dir) and its digest; the key
hashes the examples, the base model's files, the model, LoRA and trainer settings and the library's code, so a
copy is what training again would give on this kind of machine."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from . import backends
from .context import RoundContext
from .store import atomic_path, code_version, digest, read_json, write_json


def _adapter_digest(path: Path) -> str:
    return digest(path, [p.name for p in path.iterdir()])


def _model_files(model_path: str) -> list:
    """Names, sizes and modification times: a model replaced at the same path is another model."""
    root = Path(model_path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root] if root.exists() else []
    return [[str(p.relative_to(root) if root.is_dir() else p.name), p.stat().st_size, p.stat().st_mtime_ns]
            for p in files]


def training_key(ctx: RoundContext, examples: list) -> str:
    cfg = ctx.cfg
    trainer = backends.trainer_name(cfg)
    parts = {"examples": examples, "model_path": ctx.model_path, "model_files": _model_files(ctx.model_path),
             "model": cfg.model.model_dump(mode="json"), "device": backends.resolve_device(cfg.model),
             "dtype": backends.resolve_dtype(cfg.model), "lora": cfg.lora.model_dump(mode="json"),
             "trainer": trainer, "code": code_version(),
             "llamafactory": cfg.backend.llamafactory.model_dump(mode="json") if trainer == "llamafactory" else None}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def train(ctx: RoundContext, examples: list, out_dir: Path) -> Path:
    """The adapter trained on `examples` at out_dir: copied from an earlier identical training when its files
    are still there unchanged (the manifest entry of the phase says from where), else trained here."""
    runs = Path(ctx.cfg.runs_dir)
    record = runs / ".trainings" / f"{training_key(ctx, examples)}.json"
    earlier = _earlier(runs, record)
    if earlier is not None:
        if earlier.resolve() != Path(out_dir).resolve():
            with atomic_path(out_dir) as tmp:
                shutil.copytree(earlier, tmp)
        ctx.notes["trained_as"] = str(earlier.relative_to(runs))
        return Path(out_dir)
    backends.trainer(ctx.cfg, ctx.model_path).train(examples, out_dir)
    out = Path(out_dir).resolve()
    if runs.resolve() in out.parents:  # an adapter outside runs_dir is not kept track of
        write_json(record, {"adapter": str(out.relative_to(runs.resolve())), "digest": _adapter_digest(out)})
    return Path(out_dir)


def _earlier(runs: Path, record: Path) -> Path | None:
    try:
        entry = read_json(record)
        adapter = runs / entry["adapter"]
        if adapter.is_dir() and _adapter_digest(adapter) == entry["digest"]:
            return adapter
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None

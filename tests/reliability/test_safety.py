"""Untrusted models and adapters: code in a model directory runs only when the config trusts it, pickle
files are never unpickled unless allowed. Each test plants a payload that leaves a marker file if it runs."""
import json
import os
import pickle
import shutil

import pytest

from semievol_core.backends.hf import load_model
from semievol_core.config import ModelConfig
from semievol_core.errors import InputError
from semievol_core.models import resolve_model

pytestmark = pytest.mark.model


class _Payload:
    """Unpickling this writes the marker: what a hostile pytorch_model.bin does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def smol():
    return resolve_model(ModelConfig())


def _model_dir(smol, dst, config_update=None):
    dst.mkdir()
    for f in os.listdir(smol):
        if f != "config.json":
            os.symlink(os.path.join(smol, f), dst / f)
    cfg = json.loads(open(os.path.join(smol, "config.json")).read())
    cfg.update(config_update or {})
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_model_code_runs_only_when_trusted(smol, tmp_path, monkeypatch):
    marker = tmp_path / "code-ran"
    monkeypatch.setenv("SEMIEVOL_TEST_MARKER", str(marker))
    d = _model_dir(smol, tmp_path / "m", {"auto_map": {"AutoModelForCausalLM": "evil.EvilModel"}})
    (d / "evil.py").write_text(
        "import os, pathlib\n"
        "pathlib.Path(os.environ['SEMIEVOL_TEST_MARKER']).write_text('ran')\n"
        "from transformers import LlamaForCausalLM\n"
        "class EvilModel(LlamaForCausalLM):\n    pass\n")
    with pytest.raises(InputError) as err:
        resolve_model(ModelConfig(base=str(d)))
    assert "model.trust_remote_code" in str(err.value)
    load_model(str(d), ModelConfig(base=str(d)))  # even past the check, the loader does not run the code
    assert not marker.exists()
    trusted = ModelConfig(base=str(d), trust_remote_code=True)
    assert resolve_model(trusted) == str(d)
    load_model(str(d), trusted)
    assert marker.read_text() == "ran"  # the switch is what gates it


def test_pickle_weights_are_never_unpickled(smol, tmp_path):
    marker = tmp_path / "unpickled"
    d = _model_dir(smol, tmp_path / "m")
    with open(d / "pytorch_model.bin", "wb") as f:
        pickle.dump(_Payload(marker), f)
    model = load_model(str(resolve_model(ModelConfig(base=str(d)))), ModelConfig(base=str(d)))
    assert model is not None and not marker.exists()

    only_pickle = tmp_path / "p"
    shutil.copytree(d, only_pickle, symlinks=True)
    (only_pickle / "model.safetensors").unlink()
    with pytest.raises(InputError) as err:
        resolve_model(ModelConfig(base=str(only_pickle)))
    assert "model.allow_pickle" in str(err.value) and "model.base" in str(err.value)
    with pytest.raises(OSError):  # the loader on its own refuses too
        load_model(str(only_pickle), ModelConfig(base=str(only_pickle)))
    assert not marker.exists()


def test_adapter_given_as_pickle_is_refused(tmp_path, samples, capsys):
    from flows.cli import main
    marker = tmp_path / "unpickled"
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    with open(adapter / "adapter_model.bin", "wb") as f:
        pickle.dump(_Payload(marker), f)
    cfg = tmp_path / "round.yaml"
    cfg.write_text(json.dumps({"runs_dir": str(tmp_path / "runs"), "data": {
        "labeled": str(samples / "fpb" / "labeled.csv"), "unlabeled": str(samples / "fpb" / "unlabeled.csv"),
        "test": str(samples / "fpb" / "test.csv")}}))
    assert main(["evaluate", "--config", str(cfg), "--adapter", f"x={adapter}"]) == 2
    err = capsys.readouterr().err
    assert "adapters.x" in err and "allow_pickle" in err
    assert not marker.exists() and not (tmp_path / "runs").exists()

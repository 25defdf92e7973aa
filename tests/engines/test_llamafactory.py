"""The LLaMA-Factory trainer: its real CLI in its own virtual environment."""
import json
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from semievol_core import TrainingError
from semievol_core.backends.base import GenRequest
from semievol_core.backends.hf import HFEngine, encode_pair, load_tokenizer
from semievol_core.backends.llamafactory import LlamaFactoryTrainer, find_cli
from semievol_core.config import LlamaFactoryParams, ModelConfig

from .conftest import LORA

pytestmark = [pytest.mark.model, pytest.mark.llamafactory]
HERE = Path(__file__).parent


def test_template_tokenizes_like_the_generators(model_path, train_examples):
    """LLaMA-Factory parses the model's own chat template: the prompt it trains on is the prompt we generate
    from, and the target is ours plus the template's newline after the end-of-turn token."""
    python = Path(find_cli(LlamaFactoryParams())).parent / "python"
    tok = load_tokenizer(model_path, ModelConfig())
    for messages, response in train_examples[:3]:
        chat = json.dumps(messages + [{"role": "assistant", "content": response}])
        out = subprocess.run([str(python), str(HERE / "lf_encode.py"), model_path, "", chat],
                             capture_output=True, text=True, check=True)
        lf_prompt, lf_response = json.loads(out.stdout.strip().splitlines()[-1])
        prompt, resp = encode_pair(tok, messages, response)
        assert lf_prompt == prompt
        assert lf_response[:len(resp)] == resp and tok.decode(lf_response[len(resp):]).strip() == ""


def test_adapter_loads_in_hf_and_changes_outputs(model_path, lf_adapter, test_records):
    from semievol_core import prompts
    assert sorted(os.listdir(lf_adapter))[:2] == ["adapter_config.json", "adapter_model.safetensors"]
    assert not list(Path(lf_adapter).glob("*.bin"))  # LLaMA-Factory's pickled training_args are not kept
    engine = HFEngine(model_path, ModelConfig(), {"lf": lf_adapter}, progress=False)
    msgs = [prompts.inference_messages(r, "choice") for r in test_records[:8]]
    base = engine.generate([GenRequest(m, None, 0.0, 12) for m in msgs], 0)
    tuned = engine.generate([GenRequest(m, "lf", 0.0, 12) for m in msgs], 0)
    assert base != tuned and sum(t.startswith("Answer:") for t in tuned) >= 6


def _no_adapter_left(out: Path):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def test_bad_yaml_key_fails_with_the_trainers_error(model_path, train_examples, tmp_path):
    params = LlamaFactoryParams(extra={"no_such_option": 1})
    out = tmp_path / "adapter"
    with pytest.raises(TrainingError) as err:
        LlamaFactoryTrainer(model_path, ModelConfig(), LORA, params, progress=False).train(train_examples, out)
    assert "exit code" in str(err.value) and "no_such_option" in str(err.value)
    _no_adapter_left(out)


def test_diverged_training_is_refused_as_a_corrupt_adapter(model_path, train_examples, tmp_path):
    """LLaMA-Factory exits 0 after a diverged run; the adapter it saved holds NaN and must not be used."""
    out = tmp_path / "adapter"
    lora = LORA.model_copy(update={"lr": 1e30, "epochs": 2})  # step 1 is warm-up at lr 0
    with pytest.raises(TrainingError) as err:
        LlamaFactoryTrainer(model_path, ModelConfig(), lora, LlamaFactoryParams(), progress=False).train(
            train_examples[:8], out)
    assert "non-finite" in str(err.value)
    _no_adapter_left(out)


def test_killed_training_leaves_no_adapter(model_path, train_examples, tmp_path):
    """SIGKILL to llamafactory-cli once its first optimizer step is logged (training visibly under way)."""
    from semievol_core import progress

    out = tmp_path / "adapter"
    trainer = LlamaFactoryTrainer(model_path, ModelConfig(), LORA, LlamaFactoryParams(), progress=False)
    killed = []

    def kill_at_first_step(desc, done, total, stats):
        if done < 1 or killed:
            return
        for child in psutil.Process().children(recursive=True):
            try:
                if any("llamafactory-cli" in part for part in child.cmdline()):
                    child.send_signal(signal.SIGKILL)
                    killed.append(child.pid)
            except psutil.NoSuchProcess:
                pass

    progress.add_listener(kill_at_first_step)
    try:
        with pytest.raises(TrainingError, match="killed by signal 9"):
            trainer.train(train_examples, out)
    finally:
        progress.remove_listener(kill_at_first_step)
    assert killed
    _no_adapter_left(out)

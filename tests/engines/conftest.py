import pytest

from semievol_core import load_dataset, prompts
from semievol_core.backends.llamafactory import LlamaFactoryTrainer
from semievol_core.backends.peft import PeftTrainer
from semievol_core.config import LlamaFactoryParams, LoraParams, ModelConfig
from semievol_core.models import resolve_model

# Rank 8 on 16 examples at lr 1e-3: enough to change greedy outputs, a minute to train on CPU.
LORA = LoraParams(rank=8, alpha=16, lr=1e-3, batch_size=4, epochs=2, seed=3)


@pytest.fixture(scope="session")
def model_path() -> str:
    return resolve_model(ModelConfig())


@pytest.fixture(scope="session")
def train_examples(samples):
    recs = load_dataset(samples / "fpb" / "labeled.csv").records[:16]
    return [prompts.training_example(r, "choice", r.answer) for r in recs]


@pytest.fixture(scope="session")
def peft_adapter(model_path, train_examples, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("peft") / "adapter"
    return str(PeftTrainer(model_path, ModelConfig(), LORA, progress=False).train(train_examples, out))


@pytest.fixture(scope="session")
def lf_adapter(model_path, train_examples, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("lf") / "adapter"
    trainer = LlamaFactoryTrainer(model_path, ModelConfig(), LORA, LlamaFactoryParams(), progress=False)
    return str(trainer.train(train_examples, out))


@pytest.fixture(scope="session")
def test_records(samples):
    return load_dataset(samples / "fpb" / "test.csv").records[:20]

"""Which trainings count as the same (semievol_core/trainings.py), with a stand-in trainer that writes an
adapter-shaped directory: the real trainer's reuse is tested in tests/model/test_round.py."""
import shutil
from pathlib import Path

import pytest

from semievol_core import backends, parse_config, trainings
from semievol_core.context import RoundContext
from semievol_core.store import RoundDir

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
EXAMPLES = [([{"role": "user", "content": "Is it up?\n\nA. yes\nB. no"}], "Answer: A")]


class CountingTrainer:
    calls = 0

    def train(self, examples, out_dir):
        CountingTrainer.calls += 1
        out_dir.mkdir(parents=True)
        (out_dir / "adapter_model.safetensors").write_text(f"{examples} #{CountingTrainer.calls}")
        return out_dir


@pytest.fixture
def ctx_for(tmp_path, monkeypatch):
    monkeypatch.setattr(backends, "trainer", lambda cfg, model_path: CountingTrainer())
    CountingTrainer.calls = 0
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")

    def make(name: str, **lora) -> RoundContext:
        fpb = SAMPLES / "fpb"
        cfg = parse_config({"name": name, "runs_dir": str(tmp_path / "runs"), "progress": False,
                            "data": {"labeled": str(fpb / "labeled.csv"), "unlabeled": str(fpb / "unlabeled.csv")},
                            "backend": {"trainer": "peft"}, "lora": lora})
        return RoundContext(cfg, {}, RoundDir(tmp_path / "runs" / name), str(model))
    return make


def test_the_same_training_is_copied_and_says_from_where(ctx_for):
    a, b = ctx_for("r1"), ctx_for("r2")
    trainings.train(a, EXAMPLES, a.rd.evolved_adapter)
    out = trainings.train(b, EXAMPLES, b.rd.warm_adapter)
    assert CountingTrainer.calls == 1 and b.notes["trained_as"] == "r1/evolved_adapter"
    assert (out / "adapter_model.safetensors").read_text() == f"{EXAMPLES} #1"


@pytest.mark.parametrize("change", ["examples", "recipe", "model files"])
def test_another_training_is_trained(ctx_for, change):
    a = ctx_for("r1")
    trainings.train(a, EXAMPLES, a.rd.warm_adapter)
    b = ctx_for("r2", lr=5e-4) if change == "recipe" else ctx_for("r2")
    examples = [(EXAMPLES[0][0], "Answer: B")] if change == "examples" else EXAMPLES
    if change == "model files":
        (Path(b.model_path) / "model.safetensors").write_text("new weights")
    trainings.train(b, examples, b.rd.warm_adapter)
    assert CountingTrainer.calls == 2 and "trained_as" not in b.notes


def test_a_changed_or_missing_adapter_is_trained_again(ctx_for):
    a = ctx_for("r1")
    trainings.train(a, EXAMPLES, a.rd.warm_adapter)
    (a.rd.warm_adapter / "adapter_model.safetensors").write_text("edited by hand")
    b = ctx_for("r2")
    trainings.train(b, EXAMPLES, b.rd.warm_adapter)
    assert CountingTrainer.calls == 2 and "trained_as" not in b.notes
    shutil.rmtree(b.rd.warm_adapter)
    c = ctx_for("r3")
    trainings.train(c, EXAMPLES, c.rd.warm_adapter)
    assert CountingTrainer.calls == 3 and "trained_as" not in c.notes

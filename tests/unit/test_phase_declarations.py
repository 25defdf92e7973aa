"""Each phase declares what it reads (semievol_core.context.Phase) and the Prefect cache key is built from that
declaration. Here every phase runs, in order, on a config that records each field read; a read the phase did
not declare fails the test, since it would let a changed config reuse a stale cached result.

The backends are fakes with the real constructors' signatures (seconds instead of a real model), and each of them
reads the whole of every config section it is handed, since a real backend may read any field of it. The real
factories in semievol_core.backends still run, so the choice of backend is recorded as read."""
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel

from semievol_core import PHASES, parse_config
from semievol_core.answers import format_answer
from semievol_core.backends import hf, peft, sbert
from semievol_core.context import RoundContext
from semievol_core.data import load_splits
from semievol_core.store import RoundDir
from tasks.phases import NOT_IN_KEY, SPECS, phase_key

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"


class Recorder:
    """A config read through attribute access, with every leaf field read (and every section handed to a
    method such as model_dump) written down by its dotted path."""

    def __init__(self, obj, path: str, log: set):
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_log", log)

    def __getattr__(self, name):
        value = getattr(self._obj, name)
        path = f"{self._path}.{name}" if self._path else name
        if isinstance(value, BaseModel):
            return Recorder(value, path, self._log)
        if callable(value):  # model_dump, model_copy, ...: the whole section
            self._log.add(self._path or "*")
            return value
        self._log.add(path)
        return value

    def __setattr__(self, name, value):
        raise AttributeError(f"a phase set config field {self._path}.{name}")


def _read_all(section) -> None:
    if isinstance(section, Recorder):
        section.model_dump()


def _h(*parts) -> int:
    return int(hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:8], 16)


class FakeEngine:
    def __init__(self, model_path, cfg, adapters=None, gen_batch_size=32, score_batch_size=16, progress=True,
                 **kw):
        _read_all(cfg)

    def start(self, seed):
        pass

    def generate(self, requests, seed, desc="generate"):
        out = []
        for r in requests:
            text = r.messages[-1]["content"]
            letters = [x for x in "ABC" if f"{x}." in text or f"{x})" in text] or ["A", "B", "C"]
            out.append(format_answer(letters[_h(r.messages, r.adapter, seed) % len(letters)], "choice"))
        return out

    def score(self, requests, desc="score"):
        return [(_h(r.messages, r.response, r.adapter) % 1000) / 100 for r in requests]


class FakeTrainer:
    def __init__(self, model_path, model_cfg, lora, *rest, progress=True):
        for section in (model_cfg, lora, *rest):
            _read_all(section)

    def train(self, examples, out_dir):
        out_dir.mkdir(parents=True)
        (out_dir / "adapter_config.json").write_text(json.dumps({"examples": len(examples)}))
        return out_dir


class FakeEmbedder:
    def __init__(self, path, device="cpu", batch_size=256, progress=True, **kw):
        pass

    def encode(self, texts, desc="embed", show=True):
        rng = [np.random.default_rng(_h(t)).standard_normal(8) for t in texts]
        v = np.array(rng, dtype=np.float32).reshape(len(texts), 8)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def fakes(monkeypatch):
    monkeypatch.setattr(hf, "HFEngine", FakeEngine)
    monkeypatch.setattr(peft, "PeftTrainer", FakeTrainer)
    monkeypatch.setattr(sbert, "SentenceEmbedder", FakeEmbedder)


def _config(tmp_path, **method):
    fpb = SAMPLES / "fpb"
    return parse_config({
        "name": "declared", "runs_dir": str(tmp_path / "runs"), "progress": False,
        "data": {"labeled": str(fpb / "labeled.csv"), "unlabeled": str(fpb / "unlabeled.csv"),
                 "test": str(fpb / "test.csv"), "limit_labeled": 6, "limit_unlabeled": 10, "limit_test": 4},
        "backend": {"generator": "hf", "trainer": "peft", "checkpoint_records": 4},
        "method": method})


def _covered(read: str, declared: tuple[str, ...]) -> bool:
    return any(read == d or read.startswith(d + ".") for d in declared)


def _run_recorded(tmp_path, cfg, phases=PHASES) -> dict[str, set]:
    splits = load_splits(cfg.data)
    rd = RoundDir(tmp_path / "runs" / "declared")
    rd.create({"config": cfg.model_dump(mode="json")})
    reads = {}
    for phase in phases:
        log = set()
        ctx = RoundContext(Recorder(cfg, "", log), splits, rd, "fake-model-path")
        outputs = phase.run(ctx)
        rd.record_phase(phase.name, 0.0, outputs)
        reads[phase.name] = log
        if outputs:  # what it wrote is what it declares (the report adds its charts)
            declared = {getattr(rd, o) for o in phase.outputs}
            assert declared <= set(outputs), (phase.name, outputs)
            assert phase.name == "report" or set(outputs) == declared, (phase.name, outputs)
    return reads


@pytest.mark.parametrize("method", [{}, {"warmup": False, "retrieval": False}], ids=["default", "bare"])
def test_every_phase_reads_only_what_it_declares(tmp_path, fakes, method):
    cfg = _config(tmp_path, **method)
    reads = _run_recorded(tmp_path, cfg)
    assert reads["collaborate"] and reads["select"]
    for phase in PHASES:
        undeclared = sorted(r for r in reads[phase.name] if not _covered(r, phase.reads))
        assert not undeclared, f"{phase.name} reads {undeclared} but declares {phase.reads}"


def test_the_check_catches_an_undeclared_read(tmp_path, fakes):
    """The same check on a phase changed to read a field it does not declare."""
    i, spec = next((i, p) for i, p in enumerate(PHASES) if p.name == "evolve")

    def evolve_reading_theta(ctx):
        ctx.cfg.method.theta
        return spec.run(ctx)

    changed = [*PHASES[:i], dataclasses.replace(spec, run=evolve_reading_theta), *PHASES[i + 1:]]
    reads = _run_recorded(tmp_path, _config(tmp_path), changed)
    assert "method.theta" in reads["evolve"] and not _covered("method.theta", spec.reads)


def _key(cfg, phase: str) -> str:
    fps = {"labeled": "l", "unlabeled": "u", "test": "t"}
    return phase_key(phase, cfg.model_dump(mode="json"), fps, {u: u for u in SPECS[phase].upstream})


def test_the_cache_key_follows_the_declaration(tmp_path):
    base = _config(tmp_path)
    trainer = base.model_copy(update={"backend": base.backend.model_copy(update={"trainer": "llamafactory"})})
    # switching trainer makes another adapter: the training phases recompute, retrieval does not
    assert _key(base, "warm_up") != _key(trainer, "warm_up") and _key(base, "evolve") != _key(trainer, "evolve")
    assert _key(base, "retrieve") == _key(trainer, "retrieve")
    # sharding and progress bars change where and how a phase runs, not its result
    # and so does where the round's trainings are kept
    neutral = base.model_copy(update={"progress": True, "runs_dir": str(tmp_path / "elsewhere"),
                                      "backend": base.backend.model_copy(update={
                                          "shards": 4, "shard_storage": "file:///tmp/x", "dispatch_attempts": 5,
                                          "gpu_timeout_s": 60})})
    assert all(_key(base, p) == _key(neutral, p) for p in SPECS if p != "report")
    # each named, and really read
    assert all(_covered(n, SPECS["collaborate"].reads + SPECS["warm_up"].reads) for n in NOT_IN_KEY)
    theta = base.model_copy(update={"method": base.method.model_copy(update={"theta": 40})})
    assert _key(base, "select") != _key(theta, "select") and _key(base, "warm_up") == _key(theta, "warm_up")

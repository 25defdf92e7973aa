"""The hf engine and the embedder with the real models."""
from pathlib import Path

import numpy as np
import pytest

from semievol_core import load_dataset, prompts
from semievol_core.backends.base import GenRequest
from semievol_core.backends.hf import HFEngine
from semievol_core.backends.sbert import SentenceEmbedder
from semievol_core.config import ModelConfig
from semievol_core.models import resolve_embedder, resolve_model
from semievol_core.retrieval import build_index, knn_stream

pytestmark = pytest.mark.model


def test_adapter_on_off_on_is_identical(fpb_round, samples):
    cfg, result = fpb_round
    engine = HFEngine(resolve_model(cfg.model), cfg.model, {"warm": str(result.path / "warm_adapter")},
                      progress=False)
    recs = load_dataset(samples / "fpb" / "test.csv").records[:4]
    on = [GenRequest(prompts.inference_messages(r, "choice"), "warm", 0.0, 16) for r in recs]
    off = [GenRequest(m.messages, None, 0.0, 16) for m in on]
    first, base, again = engine.generate(on, 0), engine.generate(off, 0), engine.generate(on, 0)
    assert first == again and first != base


def test_a_bf16_engine_holds_its_adapters_in_bf16(fpb_round):
    """The warm adapter trained in fp32; for inference the engine keeps it in the model's dtype, or peft casts
    every layer's input to fp32 and back at each call (1.4x slower warm batches in bf16, measured)."""
    import torch
    cfg, result = fpb_round
    engine = HFEngine(resolve_model(cfg.model), ModelConfig(dtype="bfloat16"),
                      {"warm": str(result.path / "warm_adapter")}, progress=False)
    lora = {p.dtype for n, p in engine.model.named_parameters() if "lora_" in n}
    assert lora == {torch.bfloat16}


def test_sampling_is_seeded():
    cfg = ModelConfig()
    engine = HFEngine(resolve_model(cfg), cfg, progress=False)
    req = [GenRequest([{"role": "user", "content": "Name a colour."}], None, 1.0, 12)] * 4
    assert engine.generate(req, seed=5) == engine.generate(req, seed=5)
    assert engine.generate(req, seed=5) != engine.generate(req, seed=6)


def test_embedder_and_faiss_find_the_same_question(samples):
    emb = SentenceEmbedder(resolve_embedder(ModelConfig()), progress=False)
    qs = [r.question for r in load_dataset(samples / "arc" / "labeled.csv").records]
    vecs = emb.encode(qs)
    assert vecs.dtype == np.float32 and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    batches = list(knn_stream(build_index(vecs), emb.encode, iter(qs[:5]), 3, batch=2))
    assert [len(r) for _, r in batches] == [2, 2, 1]  # streamed: one batch of texts at a time
    scores, rows = np.concatenate([s for s, _ in batches]), np.concatenate([r for _, r in batches])
    assert rows[:, 0].tolist() == list(range(5)) and np.allclose(scores[:, 0], 1, atol=1e-4)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # nearest first


def test_embedded_gguf_converts_to_a_safetensors_directory(tmp_path):
    import json

    path = resolve_model(ModelConfig(cache_dir=str(tmp_path)))
    files = {p.name for p in Path(path).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files
    assert "quantization_config" not in json.loads((Path(path) / "config.json").read_text())
    assert not list(tmp_path.rglob(".*tmp-*"))
    engine = HFEngine(path, ModelConfig(), progress=False)  # loads from safetensors only
    assert engine.generate([GenRequest([{"role": "user", "content": "Say hi."}], None, 0.0, 8)], 0)[0]


def test_model_paths_are_checked(tmp_path):
    from semievol_core import InputError
    with pytest.raises(InputError, match=r"missing: row -, field model.base: model directory not found"):
        resolve_model(ModelConfig(base=str(tmp_path / "missing")))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(InputError, match="no weights"):
        resolve_model(ModelConfig(base=str(tmp_path / "m")))
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(InputError, match="pickle"):
        resolve_model(ModelConfig(base=str(tmp_path / "m")))

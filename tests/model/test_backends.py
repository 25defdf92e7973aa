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
    """The warm adapter trained in fp32; for inference the engine keeps it in the model's dtype, or every layer's
    input would be cast to fp32 and back at each call (1.4x slower warm batches in bf16 under peft, measured)."""
    import torch
    cfg, result = fpb_round
    engine = HFEngine(resolve_model(cfg.model), ModelConfig(dtype="bfloat16"),
                      {"warm": str(result.path / "warm_adapter")}, progress=False)
    assert engine.lora is not None and len(engine.lora.layers) == 30 * 7  # every targeted layer of the 30 blocks
    assert {t.dtype for layer in engine.lora.layers for t in layer.adapters["warm"][:2]} == {torch.bfloat16}


def _peft_copy(src: Path, dst: Path, **changes) -> str:
    """The adapter at src with adapter_config.json fields changed (a config beyond plain LoRA goes to peft)."""
    import json
    import shutil
    shutil.copytree(src, dst)
    config = json.loads((dst / "adapter_config.json").read_text())
    (dst / "adapter_config.json").write_text(json.dumps({**config, **changes}))
    return str(dst)


def test_plain_lora_without_peft_scores_and_generates_as_peft_does(fpb_round, samples, tmp_path):
    """The engine's own LoRA layers (backends/lora.py) against peft's on the same trained adapters, in fp32:
    the same NLLs to float rounding and the same greedy texts, for the warm and the evolved adapter in one
    engine and for the base model with both loaded. rank_pattern (per-layer ranks, which peft handles) sends an
    adapter down the peft path, here with its pattern empty so the two must agree."""
    from semievol_core.backends.base import ScoreRequest
    cfg, result = fpb_round
    fp32 = ModelConfig(dtype="float32")
    names = {"warm": str(result.path / "warm_adapter"), "evolved": str(result.path / "evolved_adapter")}
    via_peft = {n: _peft_copy(Path(p), tmp_path / n, rank_pattern={"zz_no_such_layer": 8}) for n, p in names.items()}
    own = HFEngine(resolve_model(cfg.model), fp32, names, progress=False)
    peft = HFEngine(resolve_model(cfg.model), fp32, via_peft, progress=False)
    assert own.lora is not None and peft.lora is None
    recs = load_dataset(samples / "fpb" / "test.csv").records[:6]
    gen = [GenRequest(prompts.inference_messages(r, "choice"), a, 0.0, 12) for r in recs for a in
           (None, "warm", "evolved")]
    assert own.generate(gen, 0) == peft.generate(gen, 0)
    score = [ScoreRequest(g.messages, "Answer: B", g.adapter) for g in gen]
    a, b = np.array(own.score(score)), np.array(peft.score(score))
    assert np.allclose(a, b, atol=1e-4) and len(set(np.round(a, 3))) > 3


def test_a_prefix_shared_by_the_batch_is_computed_once_and_changes_no_answer(fpb_round, samples):
    """The system turn every prompt starts with, computed once per batch and adapter, then the rows' own parts
    padded after it: in fp32 the same greedy texts and the same sampled ones as the whole prompts left-padded,
    with and without the adapter, on prompts of different lengths (0 to 3 examples)."""
    from semievol_core.backends.hf import prompt_ids, shared_prefix
    cfg, result = fpb_round
    engine = HFEngine(resolve_model(cfg.model), ModelConfig(dtype="float32"),
                      {"warm": str(result.path / "warm_adapter")}, gen_batch_size=8, progress=False)
    lab = load_dataset(samples / "fpb" / "labeled.csv").records
    recs = load_dataset(samples / "fpb" / "test.csv").records[:8]
    msgs = [prompts.inference_messages(r, "choice", lab[i:i + i % 4]) for i, r in enumerate(recs)]
    assert shared_prefix([prompt_ids(engine.tok, m, 4096) for m in msgs]) >= 8
    for temperature in (0.0, 1.0):
        reqs = [GenRequest(m, a, temperature, 12) for m in msgs for a in (None, "warm")]
        shared = engine.generate(reqs, 3)
        assert len(engine._prefixes) == 2  # one per adapter
        engine.share_prefix, engine._prefixes = False, {}
        assert engine.generate(reqs, 3) == shared
        engine.share_prefix = True


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

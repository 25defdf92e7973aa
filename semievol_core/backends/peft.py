"""LoRA training with peft and a plain PyTorch loop (the CPU path; also runs on CUDA)."""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

import torch

from ..config import LoraParams, ModelConfig
from ..errors import TrainingError
from ..progress import Bar
from ..store import atomic_path
from .base import Messages
from .hf import apply_threads, encode_pair, load_model, load_tokenizer

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def verify_adapter(path: Path) -> Path:
    """Files present, config parses, weights load and are finite. Raises TrainingError otherwise."""
    from safetensors.torch import load_file

    path = Path(path)
    missing = [f for f in ADAPTER_FILES if not (path / f).is_file()]
    if missing:
        raise TrainingError(f"adapter {path}: missing {', '.join(missing)}")
    try:
        json.loads((path / "adapter_config.json").read_text())
        tensors = load_file(path / "adapter_model.safetensors")
    except Exception as err:
        raise TrainingError(f"adapter {path}: does not load ({err})") from None
    if not tensors or not all(torch.isfinite(t).all() for t in tensors.values()):
        raise TrainingError(f"adapter {path}: empty or non-finite weights")
    return path


def response_loss(model, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The causal-LM loss transformers computes from `labels` (mean next-token cross-entropy over the tokens not
    labelled -100), with the output layer run at those positions only. A training example is mostly prompt, and
    the full-vocabulary logits of prompt positions are a fifth of a step's work that no loss term reads."""
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = core.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    target = labels[:, 1:]
    keep = target != -100
    logits = core.get_output_embeddings()(hidden[:, :-1][keep]).float()
    return torch.nn.functional.cross_entropy(logits, target[keep])


def with_lora(model, lp: LoraParams):
    """The model wrapped in a fresh (untrained) LoRA of the configured shape; only its weights train."""
    from peft import LoraConfig, get_peft_model
    # On a bf16 base the adapter still trains in fp32: at lr 1e-4 most Adam updates are below bf16's resolution.
    return get_peft_model(model, LoraConfig(r=lp.rank, lora_alpha=lp.alpha, lora_dropout=lp.dropout,
                                            target_modules=lp.target_modules, task_type="CAUSAL_LM"),
                          autocast_adapter_dtype=True)


def example_features(tok, messages: Messages, response: str, max_length: int | None = None):
    """Token ids of prompt + response and their labels, -100 over the prompt so that no loss term reads it. A
    prompt too long for max_length loses its beginning (the retrieved examples), never the response."""
    p, s = encode_pair(tok, messages, response)
    if max_length is not None:
        p = p[-max(1, max_length - len(s)):]
    return p + s, [-100] * len(p) + s


def collate(batch: list[tuple[list[int], list[int]]], pad: int, device=None):
    """(ids, labels) pairs right-padded to the longest: input ids, attention mask, labels (-100 on padding)."""
    width = max(len(x) for x, _ in batch)
    ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in batch], device=device)
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in batch], device=device)
    labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch], device=device)
    return ids, mask, labels


class PeftTrainer:
    def __init__(self, model_path: str, model_cfg: ModelConfig, lora: LoraParams, progress: bool = True):
        self.model_path, self.model_cfg, self.lora, self.progress = model_path, model_cfg, lora, progress

    def _batches(self, feats, epoch):
        order = list(range(len(feats)))
        random.Random(self.lora.seed * 7919 + epoch).shuffle(order)
        bs = self.lora.batch_size
        return [[feats[i] for i in order[s:s + bs]] for s in range(0, len(order), bs)]

    def train(self, examples: list[tuple[Messages, str]], out_dir: Path) -> Path:
        from transformers import get_scheduler

        if not examples:
            raise TrainingError("no training examples")
        lp, out_dir = self.lora, Path(out_dir)
        apply_threads(self.model_cfg)
        torch.manual_seed(lp.seed)
        tok = load_tokenizer(self.model_path, self.model_cfg)
        model = load_model(self.model_path, self.model_cfg)
        device = model.device
        model = with_lora(model, lp)
        feats = [example_features(tok, messages, response, lp.max_length) for messages, response in examples]
        total = lp.optimizer_steps(len(feats))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lp.lr, weight_decay=0.0)
        sched = get_scheduler(lp.scheduler, opt, num_warmup_steps=round(lp.warmup_ratio * total),
                              num_training_steps=total)
        model.train()
        bar = Bar(total, "train LoRA", "step", self.progress)
        step, micro, epoch, t0 = 0, 0, 0, time.perf_counter()
        while step < total:
            for batch in self._batches(feats, epoch):
                loss = response_loss(model, *collate(batch, tok.pad_token_id, device))
                if not torch.isfinite(loss):
                    raise TrainingError(f"loss became {loss.item()} at step {step}")
                (loss / lp.grad_accum).backward()
                micro += 1
                if micro % lp.grad_accum:
                    continue
                opt.step()
                sched.step()
                opt.zero_grad()
                step += 1
                bar.update(1, loss=round(loss.item(), 4), s_step=round((time.perf_counter() - t0) / step, 1))
                if step >= total:
                    break
            epoch += 1
        bar.close()
        # Written beside the target and renamed: a killed run never leaves a half adapter at out_dir.
        with atomic_path(out_dir) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            verify_adapter(tmp)
        return out_dir

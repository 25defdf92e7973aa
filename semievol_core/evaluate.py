"""Test-split evaluation of base, warm and evolved: greedy decoding, fixed seed, 0-shot prompts."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pandas as pd

from . import backends, prompts
from .answers import extract, is_correct
from .backends.base import GenRequest
from .context import Phase, RoundContext
from .data import Dataset
from .store import write_json, write_parquet


def accuracy_report(predicted: list, records: list, task: str) -> dict:
    correct = [is_correct(p, r.answer, task) for p, r in zip(predicted, records)]
    n = max(1, len(records))
    report = {"n": len(records), "accuracy": sum(correct) / n,
              "extraction_failure_rate": sum(p is None for p in predicted) / n}
    cats = defaultdict(list)
    for ok, r in zip(correct, records):
        if r.category is not None:
            cats[r.category].append(ok)
    if cats:
        report["per_category"] = {c: {"n": len(v), "accuracy": sum(v) / len(v)} for c, v in sorted(cats.items())}
    return report


def evaluate_models(cfg, model_path: str, test: Dataset, adapters: dict[str, str | None],
                    seed: int = 0) -> tuple[dict, pd.DataFrame]:
    """adapters: model name -> adapter dir (None = the base model). One engine holds them all."""
    loaded = {name: path for name, path in adapters.items() if path}
    engine = backends.generator(cfg, model_path, loaded or None)
    names = list(adapters)
    requests = [GenRequest(prompts.inference_messages(r, test.task), name if adapters[name] else None,
                           0.0, cfg.method.max_new_tokens) for name in names for r in test.records]
    texts = engine.generate(requests, seed=seed, desc=f"evaluate {'/'.join(names)}")
    metrics, rows = {}, []
    for k, name in enumerate(names):
        chunk = texts[k * len(test):(k + 1) * len(test)]
        preds = [extract(t, test.task, r.options) for t, r in zip(chunk, test.records)]
        metrics[name] = accuracy_report(preds, test.records, test.task)
        rows += [{"model": name, "id": r.id, "response": t, "answer": p, "gold": r.answer}
                 for t, p, r in zip(chunk, preds, test.records)]
    return metrics, pd.DataFrame(rows)


def evaluate(ctx: RoundContext) -> list[Path]:
    if "test" not in ctx.splits:
        return []
    adapters = {"base": None, "warm": ctx.warm_adapter(),
                "evolved": str(ctx.rd.evolved_adapter) if ctx.rd.evolved_adapter.is_dir() else None}
    adapters = {k: v for k, v in adapters.items() if k == "base" or v}
    metrics, preds = evaluate_models(ctx.cfg, ctx.model_path, ctx.splits["test"], adapters, ctx.cfg.method.seed)
    return [write_parquet(ctx.rd.predictions, preds), write_json(ctx.rd.evaluation, metrics)]


EVALUATE = Phase("evaluate", evaluate, splits=("test",), upstream=("warm_up", "evolve"),
                 outputs=("predictions", "evaluation"), reads=("method", "data.task", "model", "backend", "progress"))

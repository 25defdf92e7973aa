"""Test-split evaluation of base, warm and evolved: greedy decoding, fixed seed, 0-shot prompts."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
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


def paired_difference(a, b, reps: int = 10_000, seed: int = 0) -> dict:
    """Accuracy of a minus accuracy of b over the same test items (per-item 0/1 outcomes in the same order), with
    a paired bootstrap: each resample draws items, not two independent samples, so what the two models share
    cancels. The 95% percentile interval, and the share of resamples in which a does not come out ahead."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) != len(b) or len(a) == 0:
        raise ValueError("a paired difference needs the same, non-empty test items")
    diff = a - b
    means = diff[np.random.default_rng(seed).integers(0, len(diff), size=(reps, len(diff)))].mean(axis=1)
    return {"difference": float(diff.mean()), "ci95": [float(np.percentile(means, 2.5)),
                                                       float(np.percentile(means, 97.5))],
            "p_not_better": float((means <= 0).mean()), "n": int(len(diff)), "resamples": reps}


def outcomes(preds: pd.DataFrame, model: str, task: str) -> tuple[list[str], list[int]]:
    """(test ids in order, 1 where the model's answer is right) from eval_predictions.parquet."""
    p = preds[preds["model"] == model].sort_values("id")
    return ([str(i) for i in p["id"]],
            [int(is_correct(None if pd.isna(a) else a, g, task)) for a, g in zip(p["answer"], p["gold"])])


def evolved_vs_warm(preds: pd.DataFrame, task: str) -> dict | None:
    """The evolved model against the warm one on the same test items: what the unlabeled data added."""
    if not {"warm", "evolved"} <= set(preds["model"]):
        return None
    ids_w, warm = outcomes(preds, "warm", task)
    ids_e, evolved = outcomes(preds, "evolved", task)
    return paired_difference(evolved, warm) if ids_w == ids_e and ids_w else None


def verdict(d: dict) -> str:
    """One line on what an evolved-minus-warm interval says."""
    lo, hi = d["ci95"]
    if lo == hi == 0:
        return "the two are right on exactly the same test items: the unlabeled data changed nothing this split sees"
    if lo > 0:
        return ("the unlabeled data made the model better than the warm-up alone, beyond what chance on these "
                "items explains")
    if hi < 0:
        return "the evolved model is worse than the warm-up alone on these items, beyond chance"
    return (f"no difference this test split can show: {d['n']} items leave a gap of "
            f"{100 * max(abs(lo), abs(hi)):.0f} points either way within chance")


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

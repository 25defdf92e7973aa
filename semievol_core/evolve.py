"""Phase 6: a fresh LoRA on the base model over labeled + selected pseudo-labeled data (not a continuation
of the warm adapter: the paper trains the evolved model from the base)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import prompts, trainings
from .context import Phase, RoundContext


def training_set(ctx: RoundContext) -> list:
    task = ctx.task
    examples = [prompts.training_example(r, task, r.answer) for r in ctx.splits["labeled"].records]
    pl = pd.read_parquet(ctx.rd.pseudo_labels)
    by_id = ctx.splits["unlabeled"].by_id()
    for rid, answer in zip(pl.loc[pl["selected"], "id"], pl.loc[pl["selected"], "answer"]):
        examples.append(prompts.training_example(by_id[rid], task, answer))
    return examples


def evolve(ctx: RoundContext) -> list[Path]:
    return [trainings.train(ctx, training_set(ctx), ctx.rd.evolved_adapter)]


EVOLVE = Phase("evolve", evolve, splits=("labeled", "unlabeled"), upstream=("select",), outputs=("evolved_adapter",),
               reads=("data.task", "model", "lora", "backend.trainer", "backend.llamafactory", "progress",
                      "runs_dir"))

"""Phases 1 and 2: in-weight propagation (warm-up LoRA on the labeled data) and in-context propagation
(the k nearest labeled questions of every unlabeled one)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import backends, prompts, trainings
from .context import Phase, RoundContext
from .models import resolve_embedder
from .progress import Bar
from .retrieval import build_index, knn_stream, save_index
from .store import write_parquet


def warm_up(ctx: RoundContext) -> list[Path]:
    if not ctx.cfg.method.warmup:
        return []
    examples = [prompts.training_example(r, ctx.task, r.answer) for r in ctx.splits["labeled"].records]
    return [trainings.train(ctx, examples, ctx.rd.warm_adapter)]


def retrieve(ctx: RoundContext) -> list[Path]:
    m = ctx.cfg.method
    if not m.retrieval or m.k == 0:
        return []
    labeled, unlabeled = ctx.splits["labeled"].records, ctx.splits["unlabeled"].records
    emb = backends.embedder(ctx.cfg, resolve_embedder(ctx.cfg.model))
    index = build_index(emb.encode([r.question for r in labeled], desc="embed labeled"),
                        backends.resolve_device(ctx.cfg.model))
    save_index(index, ctx.rd.index)
    bar = Bar(len(unlabeled), "embed + search unlabeled", "text", ctx.cfg.progress)
    ids, scores = [], []
    for s, rows in knn_stream(index, lambda batch: emb.encode(batch, show=False),
                              (r.question for r in unlabeled), m.k, ctx.cfg.backend.embed_batch_size * 16):
        ids += [[labeled[j].id for j in row] for row in rows]  # nearest first
        scores += [list(map(float, x)) for x in s]
        bar.update(len(rows))
    bar.close()
    df = pd.DataFrame({"id": [r.id for r in unlabeled], "neighbor_ids": ids, "neighbor_scores": scores})
    return [ctx.rd.index, write_parquet(ctx.rd.neighbors, df)]


WARM_UP = Phase("warm_up", warm_up, splits=("labeled",), outputs=("warm_adapter",),
                reads=("method.warmup", "data.task", "model", "lora", "backend.trainer", "backend.llamafactory",
                       "progress", "runs_dir"))
RETRIEVE = Phase("retrieve", retrieve, splits=("labeled", "unlabeled"), outputs=("index", "neighbors"),
                 reads=("method.retrieval", "method.k", "model.embedder", "model.device", "model.dtype",
                        "model.trust_remote_code", "model.allow_pickle", "backend.embed_batch_size", "progress"))

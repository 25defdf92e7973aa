"""Phase 5: adaptive selection. Each pseudo-response is scored by its mean per-token NLL under the warm
model; tau is the theta percentile over the whole pool, and NLL <= tau is kept (paper section 3.4)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import backends, prompts, shards
from .backends.base import ScoreRequest
from .context import Phase, RoundContext
from .store import digest, write_json, write_parquet


def threshold(nll: np.ndarray, theta: float) -> float:
    return float(np.percentile(np.asarray(nll, dtype=np.float64), theta))


def select_mask(nll, theta: float, enabled: bool = True) -> tuple[float | None, np.ndarray]:
    """The paper's rule: keep the pseudo-labels whose NLL is at or below the theta-th percentile of the pool."""
    nll = np.asarray(nll, dtype=np.float64)
    if not enabled or len(nll) == 0:
        return None, np.ones(len(nll), dtype=bool)
    tau = threshold(nll, theta)
    return tau, nll <= tau


def select(nll, answers, agreed, theta: float, enabled: bool = True, scope: str = "pool",
           keep_agreed: bool = False) -> tuple[float | None, dict[str, float], np.ndarray, int]:
    """Which pseudo-labels evolve trains on: (tau over the pool, tau per class, mask, how many of them only the
    agreement gate kept).

    scope "pool" is select_mask; "class" applies theta within each pseudo-labeled class, so a class the warm
    model is less sure of is not crowded out by the majority class's lower NLLs. keep_agreed keeps the records
    every configuration agreed on whatever their NLL (the reference implementation's gate)."""
    nll = np.asarray(nll, dtype=np.float64)
    answers, agreed = np.asarray(answers, dtype=object), np.asarray(agreed, dtype=bool)
    per_class: dict[str, float] = {}
    if not enabled or len(nll) == 0 or scope == "pool":
        tau, mask = select_mask(nll, theta, enabled)
    else:
        tau, mask = None, np.zeros(len(nll), dtype=bool)
        for label in sorted(set(answers)):
            mine = answers == label
            per_class[str(label)] = threshold(nll[mine], theta)
            mask |= mine & (nll <= per_class[str(label)])
    gated = 0
    if enabled and keep_agreed:
        gated = int((agreed & ~mask).sum())
        mask = mask | agreed
    return tau, per_class, mask, gated


CHUNK_DIR = ("shards", "score")


def chunk_plan(ctx: RoundContext) -> list[shards.Chunk]:
    """The pseudo-labels to score, in the same hash-of-id chunks as collaborative inference."""
    pl = pd.read_parquet(ctx.rd.justified)
    by_id = ctx.splits["unlabeled"].by_id()
    warm = ctx.warm_adapter()
    # Scored against the plain 0-shot prompt: the pair the evolved model will be trained on.
    requests = [ScoreRequest(prompts.inference_messages(by_id[i], ctx.task), resp, "warm" if warm else None)
                for i, resp in zip(pl["id"], pl["pseudo_response"])]
    identity = json.dumps([ctx.model_path, warm and digest(Path(warm).parent, [Path(warm).name]),
                           backends.generator_name(ctx.cfg), ctx.cfg.backend.score_batch_size])
    ids = list(pl["id"])
    return shards.plan(ids, ctx.cfg.backend.checkpoint_records, 1, requests, ids,
                       ctx.rd.root.joinpath(*CHUNK_DIR), identity)


def _score(ctx: RoundContext, todo: list[shards.Chunk]) -> int:
    warm = ctx.warm_adapter()
    engine = None

    def compute(ch: shards.Chunk) -> pd.DataFrame:
        nonlocal engine
        if engine is None:
            engine = backends.generator(ctx.cfg, ctx.model_path, {"warm": warm} if warm else None)
        return pd.DataFrame({"id": ch.meta, "nll": engine.score(ch.payload, desc=f"score NLL chunk {ch.index}")})

    return shards.run_missing(todo, compute)


def score_shard(ctx: RoundContext, shard: int, n_shards: int) -> tuple[list[Path], int]:
    plan = chunk_plan(ctx)
    mine = [plan[c] for c in shards.of_shard(len(plan), shard, n_shards)]
    return [ch.path for ch in mine], _score(ctx, mine)


def score_and_select(ctx: RoundContext) -> list[Path]:
    """Scores every pseudo-label (or merges the chunks shard runs scored), then one tau over the whole pool."""
    m = ctx.cfg.method
    pl = pd.read_parquet(ctx.rd.justified)
    plan = chunk_plan(ctx)
    computed = _score(ctx, plan)
    scores = shards.merge(plan, ["id", "nll"])
    nll = dict(zip(scores["id"], scores["nll"]))
    pl["nll"] = np.array([nll[i] for i in pl["id"]], dtype=np.float64)
    tau, per_class, mask, gated = select(pl["nll"].to_numpy(), pl["answer"].to_numpy(),
                                         pl["agreement"].to_numpy(), m.theta, m.selection, m.selection_scope,
                                         m.keep_agreed)
    pl["selected"] = mask

    def per_answer(answers: pd.Series) -> dict[str, int]:
        return {str(k): int(v) for k, v in answers.value_counts().sort_index().items()}

    summary = {"theta": m.theta, "tau": tau, "selection_enabled": m.selection, "scope": m.selection_scope,
               "keep_agreed": m.keep_agreed, "pool": int(len(pl)), "selected": int(mask.sum()),
               "scored_by": "warm adapter" if ctx.warm_adapter() else "base model",
               "pool_per_class": per_answer(pl["answer"]), "selected_per_class": per_answer(pl.loc[mask, "answer"])}
    if per_class:
        summary["tau_per_class"] = per_class
    if m.keep_agreed:
        summary["kept_by_agreement"] = gated
    ctx.notes.update(shards=len(plan), shards_reused=len(plan) - computed)
    out = [write_parquet(ctx.rd.pseudo_labels, pl), write_json(ctx.rd.selection, summary)]
    shards.clean(ctx.rd.root.joinpath(*CHUNK_DIR))
    return out


SELECT = Phase("select", score_and_select, splits=("unlabeled",), upstream=("warm_up", "justify"),
               outputs=("pseudo_labels", "selection"), reads=("method", "data.task", "model", "backend", "progress"))

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
    nll = np.asarray(nll, dtype=np.float64)
    if not enabled or len(nll) == 0:
        return None, np.ones(len(nll), dtype=bool)
    tau = threshold(nll, theta)
    return tau, nll <= tau


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
    tau, mask = select_mask(pl["nll"].to_numpy(), m.theta, m.selection)
    pl["selected"] = mask
    summary = {"theta": m.theta, "tau": tau, "selection_enabled": m.selection, "pool": int(len(pl)),
               "selected": int(mask.sum()), "scored_by": "warm adapter" if ctx.warm_adapter() else "base model"}
    ctx.notes.update(shards=len(plan), shards_reused=len(plan) - computed)
    out = [write_parquet(ctx.rd.pseudo_labels, pl), write_json(ctx.rd.selection, summary)]
    shards.clean(ctx.rd.root.joinpath(*CHUNK_DIR))
    return out


SELECT = Phase("select", score_and_select, splits=("unlabeled",), upstream=("warm_up", "justify"),
               outputs=("pseudo_labels", "selection"), reads=("method", "data.task", "model", "backend", "progress"))

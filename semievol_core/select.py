"""Phase 5: adaptive selection. Each pseudo-response is scored by its mean per-token NLL under the warm
model; tau is the theta percentile over the whole pool, and NLL <= tau is kept (paper section 3.4)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import backends, prompts
from .backends.base import ScoreRequest
from .context import RoundContext
from .store import write_json, write_parquet


def threshold(nll: np.ndarray, theta: float) -> float:
    return float(np.percentile(np.asarray(nll, dtype=np.float64), theta))


def select_mask(nll, theta: float, enabled: bool = True) -> tuple[float | None, np.ndarray]:
    nll = np.asarray(nll, dtype=np.float64)
    if not enabled or len(nll) == 0:
        return None, np.ones(len(nll), dtype=bool)
    tau = threshold(nll, theta)
    return tau, nll <= tau


def score_and_select(ctx: RoundContext) -> list[Path]:
    m = ctx.cfg.method
    pl = pd.read_parquet(ctx.rd.justified)
    by_id = ctx.splits["unlabeled"].by_id()
    warm = ctx.warm_adapter()
    if len(pl):
        # Scored against the plain 0-shot prompt: the pair the evolved model will be trained on.
        requests = [ScoreRequest(prompts.inference_messages(by_id[i], ctx.task), resp, "warm" if warm else None)
                    for i, resp in zip(pl["id"], pl["pseudo_response"])]
        engine = backends.generator(ctx.cfg, ctx.model_path, {"warm": warm} if warm else None)
        pl["nll"] = engine.score(requests, desc="score NLL")
    else:
        pl["nll"] = pd.Series(dtype="float64")
    tau, mask = select_mask(pl["nll"].to_numpy(), m.theta, m.selection)
    pl["selected"] = mask
    summary = {"theta": m.theta, "tau": tau, "selection_enabled": m.selection, "pool": int(len(pl)),
               "selected": int(mask.sum()), "scored_by": "warm adapter" if warm else "base model"}
    return [write_parquet(ctx.rd.pseudo_labels, pl), write_json(ctx.rd.selection, summary)]

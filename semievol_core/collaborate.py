"""Phases 3 and 4: collaborative inference over n configurations, then self-justification of the
records whose configurations disagree (paper section 3.3)."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import backends, prompts, shards
from .answers import extract, format_answer
from .backends.base import GenRequest
from .config import MethodParams
from .context import Phase, RoundContext
from .store import digest, write_json, write_parquet


@dataclass(frozen=True)
class Configuration:
    warm: bool  # warm adapter on
    shots: int  # retrieved labeled examples in the prompt


def config_space(k: int, warm_available: bool, retrieval: bool) -> list[Configuration]:
    """{warm on, off} x {0..k shots}, narrowed by the ablations."""
    return [Configuration(w, s) for w in ((True, False) if warm_available else (False,))
            for s in range(k + 1 if retrieval else 1)]


def draw_configs(method: MethodParams, warm_available: bool) -> list[Configuration]:
    """n configurations drawn with the seed: distinct while the space allows, then repeats (temperature
    sampling still makes repeated configurations answer differently)."""
    space = config_space(method.k, warm_available, method.retrieval)
    if not method.collaboration:
        return [max(space, key=lambda c: (c.warm, c.shots))]  # the strongest single configuration
    rng = random.Random(method.seed)
    drawn = rng.sample(space, min(method.n, len(space)))
    return drawn + [rng.choice(space) for _ in range(method.n - len(drawn))]


def build_requests(ctx: RoundContext, warm: bool) -> tuple[list[Configuration], list[GenRequest], list[dict]]:
    """Every unlabeled record under each of the n configurations: the requests and what each one is."""
    m, task = ctx.cfg.method, ctx.task
    configs = draw_configs(m, warm)
    labeled = ctx.splits["labeled"].by_id()
    neighbors = {}
    if ctx.rd.neighbors.exists():
        df = pd.read_parquet(ctx.rd.neighbors)
        neighbors = dict(zip(df["id"], df["neighbor_ids"]))
    requests, rows = [], []
    for rec in ctx.splits["unlabeled"].records:
        near = list(neighbors.get(rec.id, []))
        for c, conf in enumerate(configs):
            # Nearest example last, next to the question it should inform.
            shots = [labeled[i] for i in reversed(near[:conf.shots])]
            requests.append(GenRequest(prompts.inference_messages(rec, task, shots), "warm" if conf.warm else None,
                                       m.temperature, m.max_new_tokens))
            rows.append({"id": rec.id, "config": c, "warm": conf.warm, "shots": len(shots)})
    return configs, requests, rows


CHUNK_DIR = ("shards", "collaborate")
COLUMNS = ["id", "config", "warm", "shots", "response"]


def chunk_plan(ctx: RoundContext) -> list[shards.Chunk]:
    """The phase's checkpoint chunks (backend.checkpoint_records unlabeled records each, see shards.py)."""
    m = ctx.cfg.method
    warm = ctx.warm_adapter()
    configs, requests, rows = build_requests(ctx, warm is not None)
    identity = json.dumps([ctx.model_path, warm and digest(Path(warm).parent, [Path(warm).name]), m.seed,
                           backends.generator_name(ctx.cfg), ctx.cfg.backend.gen_batch_size])
    ids = [r.id for r in ctx.splits["unlabeled"].records]
    return shards.plan(ids, ctx.cfg.backend.checkpoint_records, len(configs), requests, rows,
                       ctx.rd.root.joinpath(*CHUNK_DIR), identity)


def _generate(ctx: RoundContext, todo: list[shards.Chunk]) -> int:
    m = ctx.cfg.method
    warm = ctx.warm_adapter()
    n = len(draw_configs(m, warm is not None))  # 1 under the no-collaboration ablation, not m.n
    engine = None

    def compute(ch: shards.Chunk) -> pd.DataFrame:
        nonlocal engine
        if engine is None:  # a run that finds every chunk on disk never loads the model
            engine = backends.generator(ctx.cfg, ctx.model_path, {"warm": warm} if warm else None)
        texts = engine.generate(ch.payload, seed=(m.seed * 100_003 + ch.index) % 2**32,
                                desc=f"collaborate x{n} chunk {ch.index}")
        return pd.DataFrame([{**r, "response": t} for r, t in zip(ch.meta, texts)], columns=COLUMNS)

    return shards.run_missing(todo, compute)


def infer_shard(ctx: RoundContext, shard: int, n_shards: int) -> tuple[list[Path], int]:
    """One shard's chunks, for a worker of a sharded round: (their files, how many it computed)."""
    plan = chunk_plan(ctx)
    mine = [plan[c] for c in shards.of_shard(len(plan), shard, n_shards)]
    return [ch.path for ch in mine], _generate(ctx, mine)


def infer(ctx: RoundContext) -> list[Path]:
    """Generates chunk by chunk, each chunk written atomically under shards/collaborate/: a killed run resumes
    with the finished chunks and, with the hf backend (seeded per chunk and batch) or vLLM with per-request
    seeds (GPU), gives the same candidates as an uninterrupted run. Chunks that shard runs of a sharded round
    left there are merged, not recomputed."""
    plan = chunk_plan(ctx)
    computed = _generate(ctx, plan)
    cand = shards.merge(plan, COLUMNS)
    by_id = ctx.splits["unlabeled"].by_id()
    cand["answer"] = [extract(t, ctx.task, by_id[i].options) for i, t in zip(cand["id"], cand["response"])]
    out = write_parquet(ctx.rd.candidates, cand)
    ctx.notes.update(shards=len(plan), shards_reused=len(plan) - computed)
    shards.clean(ctx.rd.root.joinpath(*CHUNK_DIR))  # the merged table is the phase's output now
    return [out]


def agreed_answer(answers: list[str | None]) -> str | None:
    """The common answer when every configuration gave the same one; an empty extraction is disagreement."""
    return answers[0] if answers and answers[0] is not None and len(set(answers)) == 1 else None


def justify(ctx: RoundContext) -> list[Path]:
    m, task = ctx.cfg.method, ctx.task
    cand = pd.read_parquet(ctx.rd.candidates).sort_values(["id", "config"], kind="stable")
    groups = {rid: g for rid, g in cand.groupby("id", sort=False)}
    warm = ctx.warm_adapter()
    rows, requests = [], []
    for rec in ctx.splits["unlabeled"].records:
        g = groups[rec.id]
        answers = [None if pd.isna(a) else a for a in g["answer"]]
        agreed = agreed_answer(answers)
        row = {"id": rec.id, "candidate_answers": [a or "" for a in answers], "agreement": agreed is not None,
               "justified": agreed is None, "response": None, "answer": agreed}
        if agreed is not None:
            row["response"] = g["response"].iloc[0]
        else:
            requests.append(GenRequest(prompts.justify_messages(rec, task, list(g["response"]), answers,
                                                                m.justify_prompt),
                                       "warm" if warm else None, m.justify_temperature, m.max_new_tokens))
        rows.append(row)
    if requests:
        engine = backends.generator(ctx.cfg, ctx.model_path, {"warm": warm} if warm else None)
        texts = iter(engine.generate(requests, seed=m.seed + 1, desc="self-justify"))
        options = {r.id: r.options for r in ctx.splits["unlabeled"].records}
        for row in rows:
            if row["justified"]:
                row["response"] = next(texts)
                row["answer"] = extract(row["response"], task, options[row["id"]])
    kept = [r for r in rows if r["answer"] is not None]
    for r in kept:
        r["pseudo_response"] = format_answer(r["answer"], task)
    summary = {"records": len(rows), "agreed": sum(r["agreement"] for r in rows),
               "justified": sum(r["justified"] for r in rows), "pseudo_labeled": len(kept),
               "dropped_no_answer": len(rows) - len(kept),
               "agreement_rate": sum(r["agreement"] for r in rows) / max(1, len(rows)),
               "configurations": [vars(c) for c in draw_configs(m, warm is not None)]}
    columns = ["id", "candidate_answers", "agreement", "justified", "response", "answer", "pseudo_response"]
    write_parquet(ctx.rd.justified, pd.DataFrame(kept, columns=columns))
    return [ctx.rd.justified, write_json(ctx.rd.justify_summary, summary)]


INFER = Phase("collaborate", infer, splits=("labeled", "unlabeled"), upstream=("warm_up", "retrieve"),
              outputs=("candidates",), reads=("method", "data.task", "model", "backend", "progress"))
JUSTIFY = Phase("justify", justify, splits=("unlabeled",), upstream=("warm_up", "collaborate"),
                outputs=("justified", "justify_summary"), reads=("method", "data.task", "model", "backend", "progress"))

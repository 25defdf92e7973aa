"""Scale: retrieval (embed + kNN) and selection (tau over the pool, the keep mask) over a large synthetic
unlabeled pool with 10,000 labeled questions: wall time, peak memory above the embedder's own footprint, and
how time grows with the pool.

    python benchmarks/scale.py                        # 10k, 100k and 1M unlabeled rows (hours on 2 cores)
    python benchmarks/scale.py --sizes 10000 100000   # a quicker curve

Each size runs in a fresh process, so its peak memory is its own. The unlabeled texts come from a generator
and go through semievol_core.retrieval.knn_stream one batch at a time (the phase's own code path); never
all texts in memory at once. Writes scale.json and scale.md under --out."""
from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import RESULTS, commit, describe, header, load_average, save  # noqa: E402

WORDS = ("shares revenue profit loss quarter outlook guidance market company bank merger sales growth decline "
         "dividend forecast analysts investors contract plant jobs cost margin demand supply price order").split()
TARGET_MB = 2048


def texts(n: int, seed: int):
    """Financial-news-like sentences of 8-20 words, one at a time."""
    rng = random.Random(seed)
    for i in range(n):
        yield f"Company {i % 9973}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))) + "."


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def one(n: int, labeled: int, k: int, theta: float, batch: int) -> dict:
    from semievol_core.backends.sbert import SentenceEmbedder
    from semievol_core.config import ModelConfig
    from semievol_core.models import resolve_embedder
    from semievol_core.retrieval import build_index, knn_stream
    from semievol_core.select import select_mask

    emb = SentenceEmbedder(resolve_embedder(ModelConfig()), batch_size=256, progress=False)
    emb.encode(["warm up"] * 256, show=False)
    footprint = _rss_mb()  # the embedder's own: weights, runtime, first activations
    t0 = time.perf_counter()
    index = build_index(emb.encode(list(texts(labeled, seed=1)), show=False))
    t_index = time.perf_counter() - t0
    rows = np.empty((n, min(k, labeled)), dtype=np.int32)
    done, t1 = 0, time.perf_counter()
    for _, r in knn_stream(index, lambda b: emb.encode(b, show=False), texts(n, seed=2), k, batch):
        rows[done:done + len(r)] = r
        done += len(r)
    t_search = time.perf_counter() - t1
    # Selection over the whole pool: one NLL per row (synthetic here; the LLM scoring is measured elsewhere).
    nll = np.random.default_rng(0).gamma(2.0, 0.5, n).astype(np.float64)
    t2 = time.perf_counter()
    tau, mask = select_mask(nll, theta)
    t_select = time.perf_counter() - t2
    peak = _rss_mb()
    return {"unlabeled": n, "labeled": labeled, "k": k, "batch": batch, "embedder_footprint_mb": round(footprint),
            "peak_mb": round(peak), "peak_above_embedder_mb": round(peak - footprint),
            "seconds": {"index_labeled": round(t_index, 2), "embed_search_unlabeled": round(t_search, 2),
                        "select": round(t_select, 4), "total": round(t_index + t_search + t_select, 2)},
            "unlabeled_per_s": round(n / t_search, 1), "selected": int(mask.sum()), "tau": float(tau)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--labeled", type=int, default=10_000)
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--theta", type=float, default=50)
    p.add_argument("--batch", type=int, default=4096, help="texts embedded and searched per step")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one size in this process
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.labeled, args.k, args.theta, args.batch)))
        return 0
    started = {"commit": commit(), "load_average_at_start": load_average()}
    runs = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--labeled", str(args.labeled), "--k", str(args.k),
               "--theta", str(args.theta), "--batch", str(args.batch)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = runs[-1]
        print(f"{n:>9} rows: {r['seconds']['total']:.1f} s, {r['unlabeled_per_s']} rows/s, peak "
              f"{r['peak_above_embedder_mb']} MB above the embedder", flush=True)
    first, last = runs[0], runs[-1]
    growth = last["seconds"]["embed_search_unlabeled"] / max(1e-9, first["seconds"]["embed_search_unlabeled"])
    result = {"benchmark": "scale", "machine": describe(), **started, "runs": runs,
              "growth": {"rows_ratio": last["unlabeled"] / first["unlabeled"], "time_ratio": round(growth, 2)},
              "target_peak_above_embedder_mb": TARGET_MB,
              "meets_memory_target": all(r["peak_above_embedder_mb"] < TARGET_MB for r in runs)}
    lines = [f"Scale: retrieval + selection, {args.labeled} labeled, k={args.k}, batches of {args.batch} "
             f"({header(result)})", "",
             "| unlabeled rows | index labeled s | embed+search s | select s | rows/s | peak above embedder MB |",
             "|---|---|---|---|---|---|"]
    for r in runs:
        s = r["seconds"]
        lines.append(f"| {r['unlabeled']:,} | {s['index_labeled']} | {s['embed_search_unlabeled']} | {s['select']} | "
                     f"{r['unlabeled_per_s']} | {r['peak_above_embedder_mb']} |")
    lines += ["", f"Time grew {growth:.1f}x for {result['growth']['rows_ratio']:.0f}x the rows; memory target "
              f"(< {TARGET_MB} MB above the embedder): {'met' if result['meets_memory_target'] else 'MISSED'}."]
    md = "\n".join(lines) + "\n"
    save("scale", args.out, result, md)
    print(md)
    print(f"summary: {last['unlabeled']:,} rows in {last['seconds']['total']:.0f} s, peak "
          f"{last['peak_above_embedder_mb']} MB above the embedder, time x{growth:.1f} for rows "
          f"x{result['growth']['rows_ratio']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where collaborative inference spends its time: prompt prefill, decoding and padding, for the requests a
real round sends on one dataset (retrieval runs for real; the round's seeded configurations), and the prefill a
perfect prefix cache would save.

    python benchmarks/generation_profile.py --data ../shared/data/semievol/fpb     # the full splits
    python benchmarks/generation_profile.py                                         # the shipped FPB sample

Counts every request's prompt tokens, the padding the hf engine's batches add (the phase's checkpoint chunks
batched as the engine batches them) and the tokens a prefix cache could skip (every prefix shared by two
prompts of the same adapter computed once: vLLM's automatic prefix caching at a block size of one token, the
most any prefix cache can save). Then times a sample of those batches, repeats in alternating order: the
generation at the round's settings, and the same batch stopped after its first token (the prefill, plus one
sampling step). The warm adapter is a fresh LoRA of the trainer's shape: it costs what a trained one does.
Writes generation_profile.json and .md under --out."""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.engine_start import fresh_adapter  # noqa: E402
from benchmarks.machine import RESULTS, commit, describe, header, load_average, save  # noqa: E402
from benchmarks.throughput import alternating, spread  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def prefix_cached_tokens(adapters: list, prompts: list[list[int]]) -> int:
    """Prompt tokens left to compute when every prefix two prompts of one adapter share is computed once."""
    seen, left = set(), 0
    for adapter, ids in zip(adapters, prompts):
        h = hash(("adapter", adapter))
        for t in ids:
            h = hash((h, t))  # the prefix up to here (a collision would only undercount, once in 2**64)
            if h not in seen:
                seen.add(h)
                left += 1
    return left


def padded(batches: list[list[int]], prompts: list[list[int]]) -> int:
    return sum(len(b) * max(len(prompts[i]) for i in b) for b in batches)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO / "data" / "samples" / "fpb",
                   help="a folder with labeled.csv and unlabeled.csv")
    p.add_argument("--sample-batches", type=int, default=4, help="batches timed, spread over the phase")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=24, help="method.max_new_tokens (the issue's rounds: 24)")
    p.add_argument("--model", default=None, help="the base model (model.base); the embedded SmolLM2 if unset")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    from semievol_core import backends, parse_config, shards
    from semievol_core.backends.hf import generation_batches, prompt_ids
    from semievol_core.collaborate import build_requests
    from semievol_core.propagate import RETRIEVE
    from semievol_core.round import manifest, prepare, run_phase

    result = {"benchmark": "generation_profile", "machine": describe(), "commit": commit(),
              "load_average_at_start": load_average(), "repeats": args.repeats, "data": args.data.name}
    with tempfile.TemporaryDirectory(prefix="semievol-profile-") as tmp:
        cfg = parse_config({"name": "profile", "runs_dir": tmp, "progress": False,
                            "model": {} if args.model is None else {"base": args.model},
                            "backend": {"generator": "hf"}, "method": {"max_new_tokens": args.max_new_tokens},
                            "data": {"labeled": str(args.data / "labeled.csv"),
                                     "unlabeled": str(args.data / "unlabeled.csv")}})
        ctx = prepare(cfg)
        ctx.rd.create(manifest(ctx))
        run_phase(ctx, "retrieve", RETRIEVE.run)
        configs, requests, _ = build_requests(ctx, warm=True)
        engine = backends.generator(cfg, ctx.model_path, {"warm": fresh_adapter(ctx.model_path, cfg.model,
                                                                                Path(tmp) / "warm")})
        engine.start(cfg.method.seed)
        prompts = [prompt_ids(engine.tok, r.messages, engine.max_length) for r in requests]
        # The phase batches within each of its checkpoint chunks: the same plan, each request carrying its index.
        ids = [r.id for r in ctx.splits["unlabeled"].records]
        plan = shards.plan(ids, cfg.backend.checkpoint_records, len(configs), requests, list(range(len(requests))),
                           Path(tmp) / "chunks", "profile")
        batches = [[ch.meta[i] for i in b] for ch in plan
                   for b in generation_batches(ch.payload, [prompts[i] for i in ch.meta], cfg.backend.gen_batch_size)]
        real = sum(map(len, prompts))
        computed = padded(batches, prompts)
        cached = prefix_cached_tokens([r.adapter for r in requests], prompts)
        by_shots = {}
        for c, conf in enumerate(configs):
            lengths = [len(prompts[i]) for i in range(c, len(prompts), len(configs))]
            by_shots[f"{'warm' if conf.warm else 'base'} {conf.shots}-shot"] = round(statistics.mean(lengths), 1)
        result.update(model=cfg.model.base, configs=by_shots, requests=len(requests), batches=len(batches),
                      gen_batch_size=cfg.backend.gen_batch_size, max_new_tokens=cfg.method.max_new_tokens,
                      prompt_tokens=real, padding_tokens=computed - real,
                      prefix_cache_skips=real - cached)

        step = max(1, len(batches) // args.sample_batches)
        sample = batches[::step][:args.sample_batches]
        first_token = [dataclasses.replace(r, max_new_tokens=1) for r in requests]

        def run(reqs):
            def go():
                for b in sample:
                    engine.generate([reqs[i] for i in b], seed=cfg.method.seed)
            return go

        seconds = alternating({"generation": run(requests), "first_token": run(first_token)}, args.repeats)
        core = engine.model.get_base_model() if hasattr(engine.model, "get_base_model") else engine.model
        weights = sum(p.numel() for n, p in core.named_parameters() if "embed" not in n and "lora" not in n)
        sample_tokens = padded(sample, prompts)
        result["sample"] = {"batches": len(sample), "requests": sum(map(len, sample)),
                            "prompt_tokens_with_padding": sample_tokens,
                            "seconds": {k: spread(v) for k, v in seconds.items()},
                            "prefill_share": spread([f / g for f, g in zip(seconds["first_token"],
                                                                          seconds["generation"])]),
                            "prefill_gflop_s": spread([2 * weights * sample_tokens / f / 1e9
                                                       for f in seconds["first_token"]])}
    s = result["sample"]
    share, gf = s["prefill_share"], s["prefill_gflop_s"]
    saved = result["prefix_cache_skips"] / computed
    result["prefix_cache_bound"] = round(share["median"] * saved, 4)
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    md = (f"Generation profile ({header(result)}): collaborative inference's requests on {args.data.name} "
          f"(labeled.csv, unlabeled.csv; retrieval run for real), hf backend, batches of "
          f"{result['gen_batch_size']}, at most {result['max_new_tokens']} new tokens; timings the median of "
          f"{args.repeats} repeats in alternating order, [min, max]\n\n"
          "| figure | value |\n|---|---|\n"
          f"| requests (records x configurations) / batches | {result['requests']} / {result['batches']} |\n"
          "| mean prompt tokens per configuration | "
          + ", ".join(f"{k}: {v}" for k, v in by_shots.items()) + " |\n"
          f"| prompt tokens / padding the batches add | {real} / {computed - real} "
          f"({pct((computed - real) / computed)} of what prefill computes) |\n"
          f"| prompt tokens a perfect prefix cache skips (per adapter) | {real - cached} "
          f"({pct(saved)} of what prefill computes) |\n"
          f"| sample timed: batches / requests / prompt tokens with padding | {s['batches']} / {s['requests']} / "
          f"{sample_tokens} |\n"
          f"| generation at the round's settings / stopped after the first token (prefill) | "
          f"{s['seconds']['generation']['median']} s / {s['seconds']['first_token']['median']} s |\n"
          f"| prefill's share of generation | {pct(share['median'])} [{pct(share['min'])}, {pct(share['max'])}] |\n"
          f"| prefill's rate over the non-embedding weights (2 x weights x tokens / s) | {gf['median']:.1f} "
          f"GFLOP/s [{gf['min']:.1f}, {gf['max']:.1f}] |\n"
          f"| most a perfect prefix cache could cut generation (prefill share x skipped share) | "
          f"{pct(result['prefix_cache_bound'])} |\n")
    save("generation_profile", args.out, result, md)
    print(md)
    print(f"summary: prefill {pct(share['median'])} of generation at {gf['median']:.1f} GFLOP/s; padding "
          f"{pct((computed - real) / computed)}, a perfect prefix cache would skip {pct(saved)} of prefill "
          f"(at most {pct(result['prefix_cache_bound'])} of generation)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

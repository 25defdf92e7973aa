"""Throughput: each figure a ratio of two wall times taken in this one run on this one machine, on identical
requests, repeated (--repeats, default 3, in alternating order) and reported as the median with its spread.

    python benchmarks/throughput.py                       # the demo's size: 32 labeled, 64 unlabeled, n=4
    python benchmarks/throughput.py --backends hf vllm    # both generators on the same phase

1. the collaborative inference phase against the bare engine generating the same requests in one call
   (target: the phase takes <= 1/0.9 of the bare engine's time, i.e. keeps >= 90% of its speed);
2. one engine for the phase against one engine per configuration pass, as the reference implementation
   does (target: >= 2x faster at n=4);
3. scoring (the selection phase) as a fraction of the generation phase's time;
4. a fully cached re-run of a round against its first run, through Prefect (target: <= 5% of the time);
5. each backend on the same phase, and the engine's start-up time (model and adapters loaded, nothing run);
6. what enabling LoRA costs requests that use no adapter: the base configurations' requests in an engine with the
   warm adapter loaded against an engine without it (engine start included in both).
The machine's load average at the start is recorded with the figures. Prefect runs as a private ephemeral
server under a temporary PREFECT_HOME. Writes throughput.json and throughput.md under --out."""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import RESULTS, commit, describe, header, load_average, save  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _config(data: Path, runs: Path, labeled: int, unlabeled: int, n: int, tokens: int, backend: str, name: str,
            model: str):
    from semievol_core import parse_config
    return parse_config({
        "name": name, "runs_dir": str(runs), "progress": False, "model": {"base": model},
        "data": {"labeled": str(data / "labeled.csv"), "unlabeled": str(data / "unlabeled.csv"),
                 "test": str(data / "test.csv"), "task": "choice", "limit_labeled": labeled,
                 "limit_unlabeled": unlabeled, "limit_test": labeled},
        "lora": {"lr": 1e-3, "batch_size": 4}, "method": {"n": n, "max_new_tokens": tokens},
        "backend": {"generator": backend}})


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _figures(x: float) -> float:
    # four significant figures, not a fixed number of decimals: a tiny model's step takes milliseconds, and
    # rounding those to the millisecond moved the ratios computed from them by 1%
    return float(f"{x:.4g}")


def spread(values: list[float]) -> dict:
    v = sorted(values)
    return {"median": _figures(statistics.median(v)), "min": _figures(v[0]), "max": _figures(v[-1]),
            "runs": [_figures(x) for x in values]}


def alternating(designs: dict, repeats: int, after=None) -> dict[str, list[float]]:
    """Wall seconds of each design per repeat, the order reversed on every other repeat so that neither gains
    from running after the other (caches, thermal state). What a design returns is dropped before `after` runs,
    outside the clock (an engine released, gradients zeroed)."""
    seconds = {name: [] for name in designs}
    for r in range(repeats):
        for name in (list(designs) if r % 2 == 0 else list(designs)[::-1]):
            seconds[name].append(_timed(designs[name])[1])
            if after is not None:
                after()
            print(f"  repeat {r + 1}: {name} {seconds[name][-1]:.2f} s", flush=True)
    return seconds


def phase_figures(cfg, tok, repeats: int) -> dict:
    """Ratios 1, 2, 3 and the engine start-up, on one prepared round directory. Every repeat times the phase,
    the bare engine and the engine-per-configuration design on the same requests, in alternating order so that
    neither gains from running after the other (caches, thermal state)."""
    from semievol_core import backends, collaborate
    from semievol_core.propagate import retrieve, warm_up
    from semievol_core.round import manifest, prepare, run_phase
    from semievol_core.select import score_and_select

    ctx = prepare(cfg)
    ctx.rd.create(manifest(ctx))
    run_phase(ctx, "warm_up", warm_up)
    run_phase(ctx, "retrieve", retrieve)
    warm = ctx.warm_adapter()
    configs, requests, _ = collaborate.build_requests(ctx, warm is not None)
    adapters = {"warm": warm} if warm else None

    def count(texts):
        return sum(len(tok(t, add_special_tokens=False).input_ids) for t in texts)

    def phase():
        ctx.rd.candidates.unlink(missing_ok=True)  # nothing reused from the last repeat
        shutil.rmtree(ctx.rd.root.joinpath(*collaborate.CHUNK_DIR), ignore_errors=True)
        run_phase(ctx, "collaborate", collaborate.infer)

    def bare():
        engine = backends.generator(cfg, ctx.model_path, adapters)
        return engine.generate(requests, seed=cfg.method.seed)

    def per_config():  # the reference design: a fresh engine for every configuration pass
        for c, conf in enumerate(configs):
            engine = backends.generator(cfg, ctx.model_path, {"warm": warm} if conf.warm else None)
            engine.generate(requests[c::len(configs)], seed=cfg.method.seed + c)
            del engine

    def start():
        engine = backends.generator(cfg, ctx.model_path, adapters)
        engine.start(cfg.method.seed)  # vLLM builds its engine on first use otherwise
        return engine

    base_requests = [r for c, conf in enumerate(configs) if not conf.warm for r in requests[c::len(configs)]]

    def base_with_lora():
        return backends.generator(cfg, ctx.model_path, adapters).generate(base_requests, seed=cfg.method.seed)

    def base_without_lora():
        return backends.generator(cfg, ctx.model_path, None).generate(base_requests, seed=cfg.method.seed)

    designs = {"phase": phase, "bare": bare, "per_config": per_config, "engine_start": start}
    if adapters and base_requests:
        designs.update(base_lora_on=base_with_lora, base_lora_off=base_without_lora)
    seconds = alternating(designs, repeats)
    import pandas as pd
    phase_tokens = count(pd.read_parquet(ctx.rd.candidates)["response"])
    run_phase(ctx, "justify", collaborate.justify)
    _, t_score = _timed(lambda: run_phase(ctx, "select", score_and_select))
    t_phase = statistics.median(seconds["phase"])
    return {"requests": len(requests), "configurations": len(configs), "repeats": repeats, "start_builds_engine": True,
            "seconds": {k: spread(v) for k, v in seconds.items()},
            "score_phase_s": round(t_score, 2), "phase_tokens": phase_tokens,
            "phase_tokens_per_s": round(phase_tokens / t_phase, 1),
            # per repeat: the bare engine's time over the phase's on the same requests (1.0: no overhead)
            "phase_keeps_of_bare_speed": spread([b / p for b, p in zip(seconds["bare"], seconds["phase"])]),
            "engine_per_phase_speedup": spread([c / p for c, p in zip(seconds["per_config"], seconds["phase"])]),
            # per repeat: how much slower requests without an adapter run once the engine has LoRA enabled
            **({"lora_enabled_slowdown": spread([a / b for a, b in zip(seconds["base_lora_on"],
                                                                       seconds["base_lora_off"])]),
                "base_requests": len(base_requests)} if "base_lora_on" in seconds else {}),
            "scoring_fraction_of_generation": round(t_score / t_phase, 3)}


def cached_rerun(cfg) -> dict:
    from prefect import flow

    from flows.round import semievol_round

    @flow
    def start_server():  # the ephemeral server's start-up is not the round's time
        return 1
    start_server()
    first = _timed(lambda: semievol_round(cfg))[1]
    again = _timed(lambda: semievol_round(cfg))[1]
    return {"first_s": round(first, 2), "cached_s": round(again, 2), "cached_fraction": round(again / first, 3)}


def _ratio(r: dict, pct: bool = False) -> str:
    f = (lambda x: f"{100 * x:.0f}%") if pct else (lambda x: f"{x:.2f}x")
    return f"{f(r['median'])} [{f(r['min'])}, {f(r['max'])}]"


def _start(name: str, b: dict) -> str:
    s = b["seconds"]["engine_start"]
    if name == "vllm" and not b.get("start_builds_engine"):
        # runs before the flag timed vLLM's wrapper only: its engine is built on the first generate call
        return f"not measured (this run timed the wrapper only, {s['median']} s: the engine is built on first use)"
    return f"{s['median']} s [{s['min']}, {s['max']}]"


def markdown(result: dict) -> str:
    lines = [f"Throughput ({header(result)}): "
             f"{result.get('model', 'the embedded SmolLM2')}, {result['size']}; each ratio the median of "
             f"{result.get('repeats', 1)} repeats in alternating order, "
             "[min, max]", "", "| figure | value | target | met |", "|---|---|---|---|"]
    for name, b in result["backends"].items():
        keep, sp, sec = b["phase_keeps_of_bare_speed"], b["engine_per_phase_speedup"], b["seconds"]
        lines += [f"| {name}: phase vs bare engine, same requests, one call (bare time / phase time) | "
                  f"{_ratio(keep, True)} ({sec['phase']['median']} s vs {sec['bare']['median']} s) | >= 90% | "
                  f"{'yes' if keep['median'] >= 0.9 else 'NO'} |",
                  f"| {name}: one engine per phase vs one per configuration | {_ratio(sp)} "
                  f"({sec['per_config']['median']} s vs {sec['phase']['median']} s) | >= 2x | "
                  f"{'yes' if sp['median'] >= 2 else 'NO'} |",
                  f"| {name}: engine start-up (model and adapters loaded) | {_start(name, b)} | - | - |",
                  f"| {name}: scoring time / generation time | {100 * b['scoring_fraction_of_generation']:.0f}% "
                  "| - | - |"]
        if "lora_enabled_slowdown" in b:
            lines.append(f"| {name}: {b['base_requests']} requests without an adapter, engine with LoRA enabled vs "
                         f"without (start included) | {_ratio(b['lora_enabled_slowdown'])} "
                         f"({sec['base_lora_on']['median']} s vs {sec['base_lora_off']['median']} s) | - | - |")
    if len(result["backends"]) > 1:
        tps = {k: v["phase_tokens_per_s"] for k, v in result["backends"].items()}
        lines.append("| phase tokens/s by backend | " + ", ".join(f"{k} {v}" for k, v in tps.items()) + " | - | - |")
    c = result.get("cached_rerun")
    if c:
        met = "yes" if c["cached_fraction"] <= 0.05 else "NO"
        lines.append(f"| fully cached re-run vs first run (Prefect) | {100 * c['cached_fraction']:.1f}% "
                     f"({c['cached_s']} s vs {c['first_s']} s) | <= 5% | {met} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO / "data" / "samples" / "fpb")
    p.add_argument("--labeled", type=int, default=32)
    p.add_argument("--unlabeled", type=int, default=64)
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--backends", nargs="+", default=["hf"], choices=["hf", "vllm"])
    p.add_argument("--model", default=None, help="the base model (model.base); the embedded SmolLM2 if unset")
    p.add_argument("--repeats", type=int, default=3, help="timings per figure, in alternating order")
    p.add_argument("--skip-cached", action="store_true", help="skip the Prefect cached re-run figure")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="semievol-bench-"))
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.update({"PREFECT_HOME": str(home / "prefect"), "SEMIEVOL_RESULTS": str(home / "results"),
                       "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                       "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"})
    from semievol_core.backends.hf import load_tokenizer
    from semievol_core.config import ModelConfig
    from semievol_core.models import resolve_model
    model = ModelConfig() if args.model is None else ModelConfig(base=args.model)
    tok = load_tokenizer(resolve_model(model), model)
    result = {"benchmark": "throughput", "machine": describe(), "commit": commit(), "model": model.base,
              "load_average_at_start": load_average(), "repeats": args.repeats,
              "size": f"{args.labeled} labeled, {args.unlabeled} unlabeled, n={args.n}, "
                      f"{args.max_new_tokens} new tokens at most", "backends": {}}
    try:
        for backend in args.backends:
            cfg = _config(args.data, home / "runs", args.labeled, args.unlabeled, args.n, args.max_new_tokens,
                          backend, f"phases-{backend}", model.base)
            result["backends"][backend] = phase_figures(cfg, tok, args.repeats)
            print(f"{backend}: {result['backends'][backend]}", flush=True)
        if not args.skip_cached:
            cfg = _config(args.data, home / "runs", args.labeled, args.unlabeled, args.n, args.max_new_tokens,
                          args.backends[0], "cached", model.base)
            result["cached_rerun"] = cached_rerun(cfg)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    md = markdown(result)
    save("throughput", args.out, result, md)
    print(md)
    b = result["backends"][args.backends[0]]
    print(f"summary: phase keeps {100 * b['phase_keeps_of_bare_speed']['median']:.0f}% of the bare engine's speed, "
          f"engine per phase {b['engine_per_phase_speedup']['median']:.2f}x vs per configuration, scoring "
          f"{100 * b['scoring_fraction_of_generation']:.0f}% of generation"
          + (f", cached re-run {100 * result['cached_rerun']['cached_fraction']:.1f}% of the first"
             if "cached_rerun" in result else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Engine start-up: what a phase pays before its first token, per generator backend, with the warm adapter
loaded and without one; repeated (--repeats, default 3) in alternating order and reported as the median with its
spread. The clock runs from the engine's constructor to its start() returning (model weights, adapters, and on
vLLM the engine with its KV cache), in a process that has already imported the backend; that one-off import is
timed once and reported beside it (after torch, which both share; in the order of --backends, so
vllm's import after hf's leaves out the transformers it shares).

    python benchmarks/engine_start.py                     # hf and vllm, the embedded SmolLM2
    python benchmarks/engine_start.py --backends hf --repeats 5

The adapter is a fresh, untrained LoRA of the trainer's default shape: loading it costs what loading a trained
one does. Writes engine_start.json and engine_start.md under --out."""
from __future__ import annotations

import argparse
import gc
import importlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import RESULTS, commit, describe, header, load_average, save  # noqa: E402
from benchmarks.throughput import alternating, spread  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# what each backend imports on top of torch, which both share
_MODULES = {"hf": ["transformers", "peft"], "vllm": ["vllm"]}


def fresh_adapter(model_path: str, cfg, out: Path) -> str:
    from semievol_core.backends.hf import load_model
    from semievol_core.backends.peft import with_lora
    from semievol_core.config import LoraParams
    with_lora(load_model(model_path, cfg), LoraParams()).save_pretrained(out, safe_serialization=True)
    return str(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", nargs="+", default=["hf", "vllm"], choices=["hf", "vllm"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--model", default=None, help="the base model (model.base); the embedded SmolLM2 if unset")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    import torch  # noqa: F401
    imports = {}
    for b in args.backends:  # first, before anything else imports them
        t0 = time.perf_counter()
        for module in _MODULES[b]:
            importlib.import_module(module)
        imports[b] = round(time.perf_counter() - t0, 2)
    from semievol_core import backends, parse_config
    from semievol_core.models import resolve_model
    result = {"benchmark": "engine_start", "machine": describe(), "commit": commit(),
              "load_average_at_start": load_average(), "repeats": args.repeats}
    sample = REPO / "data" / "samples" / "fpb"
    with tempfile.TemporaryDirectory(prefix="semievol-start-") as tmp:
        cfgs = {b: parse_config({"name": "start", "runs_dir": tmp, "progress": False,
                                 "model": {} if args.model is None else {"base": args.model},
                                 "backend": {"generator": b},
                                 # (a round config needs data; no split is read here)
                                 "data": {"labeled": str(sample / "labeled.csv"),
                                          "unlabeled": str(sample / "unlabeled.csv")}}) for b in args.backends}
        first = cfgs[args.backends[0]]
        result["model"] = first.model.base
        path = resolve_model(first.model)
        adapter = fresh_adapter(path, first.model, Path(tmp) / "warm")

        def design(b, adapters):
            def run():  # the engine it returns is released, outside the clock, before the next design
                engine = backends.generator(cfgs[b], path, adapters)
                engine.start(first.method.seed)
                return engine
            return run

        designs = {}
        for b in args.backends:
            designs[f"{b}_with_adapter"] = design(b, {"warm": adapter})
            designs[f"{b}_no_adapter"] = design(b, None)
        seconds = alternating(designs, args.repeats, after=gc.collect)
    result["import_s"] = imports
    result["seconds"] = {k: spread(v) for k, v in seconds.items()}
    s = result["seconds"]
    rows = [f"| {b} | {_cell(s[f'{b}_with_adapter'])} | {_cell(s[f'{b}_no_adapter'])} | {imports[b]} s |"
            for b in args.backends]
    md = (f"Engine start-up ({header(result)}): "
          f"{result['model']}; constructor to start() returned, in a process that has imported the backend; the "
          f"median of {args.repeats} repeats in alternating order, [min, max]\n\n"
          "| backend | warm adapter loaded | no adapter | importing its modules (once) |\n|---|---|---|---|\n"
          + "\n".join(rows) + "\n")
    save("engine_start", args.out, result, md)
    print(md)
    print("summary: engine start-up " + ", ".join(
        f"{b} {s[f'{b}_with_adapter']['median']:.2f} s with the adapter" for b in args.backends))
    return 0


def _cell(s: dict) -> str:
    return f"{s['median']:.2f} s [{s['min']:.2f}, {s['max']:.2f}]"


if __name__ == "__main__":
    sys.exit(main())

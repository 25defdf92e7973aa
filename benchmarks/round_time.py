"""Round time before and after a dtype change: the same round (data, recipe, seed) run once in each dtype, one
after the other on this machine, with each phase's time and the ratio between them.

    python benchmarks/round_time.py                                           # the shipped FPB sample
    python benchmarks/round_time.py --data ../shared/data/semievol/fpb --limit 64

On a CPU with native bf16 (AVX-512 BF16 or AMX) `model.dtype: auto` takes bfloat16; this is the figure that
says what that buys a whole round, and whether the round's accuracies move with it. Writes round_time.json and
round_time.md under --out."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import RESULTS, commit, describe, header, load_average, save  # noqa: E402
from benchmarks.quality import base_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PHASES = ["warm_up", "retrieve", "collaborate", "justify", "select", "evolve", "evaluate"]


def round_config(data: Path, limit: int | None, dtype: str, runs: Path, args) -> dict:
    raw = base_config(data, limit, runs, 0, args.max_new_tokens, lr=args.lr, epochs=args.epochs)
    raw["model"]["dtype"] = dtype
    return {**raw, "name": f"round-time-{dtype}", "backend": {"generator": "hf", "trainer": "peft"}}


def timed_round(raw: dict) -> dict:
    from semievol_core import parse_config, run_round
    rd = Path(raw["runs_dir"]) / raw["name"]
    shutil.rmtree(rd, ignore_errors=True)  # a finished round would be reused, not timed
    result = run_round(parse_config(raw))
    phases = json.loads((result.path / "manifest.json").read_text())["phases"]
    seconds = {p: round(phases[p]["seconds"], 1) for p in PHASES if p in phases}
    ev = result.metrics["evaluation"]
    return {"seconds": seconds, "total": round(sum(seconds.values()), 1),
            "accuracy": {m: ev[m]["accuracy"] for m in ("base", "warm", "evolved")},
            "pseudo_label_accuracy": result.metrics.get("pseudo_label_accuracy"),
            "selected": result.metrics["selection"]["selected"]}


def markdown(result: dict) -> str:
    a, b = result["dtypes"]
    ra, rb = result["rounds"][a], result["rounds"][b]
    rows = [f"| {p} | {ra['seconds'][p]} | {rb['seconds'][p]} | {ra['seconds'][p] / max(rb['seconds'][p], 0.1):.2f}x |"
            for p in PHASES if p in ra["seconds"]]
    rows.append(f"| **round** | **{ra['total']}** | **{rb['total']}** | **{ra['total'] / rb['total']:.2f}x** |")
    acc = [f"| {m} | {100 * ra['accuracy'][m]:.1f} | {100 * rb['accuracy'][m]:.1f} |"
           for m in ("base", "warm", "evolved")]
    acc.append(f"| selected pseudo-labels | {ra['selected']} | {rb['selected']} |")
    return (f"Round time by dtype ({header(result)}): {result['size']}; one round per dtype, run one after the "
            f"other, nothing else running\n\n"
            f"| phase | {a} s | {b} s | {a} / {b} |\n|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
            f"Accuracy on the test items (%) and the selected count, to see whether the dtype moves the "
            f"round's result:\n\n| model | {a} | {b} |\n|---|---|---|\n" + "\n".join(acc) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO / "data" / "samples" / "fpb",
                   help="folder with labeled.csv, unlabeled.csv, test.csv")
    p.add_argument("--limit", type=int, default=32, help="labeled and test rows (unlabeled: 3x); 0 for all")
    p.add_argument("--dtypes", nargs=2, default=["float32", "bfloat16"], metavar=("BEFORE", "AFTER"))
    p.add_argument("--lr", type=float, default=1e-4, help="lora.lr (the paper's recipe by default)")
    p.add_argument("--epochs", type=float, default=2)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--runs", type=Path, default=Path("runs") / "bench-round-time")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    for split in ("labeled", "unlabeled", "test"):
        if not (args.data / f"{split}.csv").is_file():
            p.error(f"{args.data / f'{split}.csv'} not found")
    limit = args.limit or None
    result = {"benchmark": "round_time", "machine": describe(), "commit": commit(),
              "load_average_at_start": load_average(), "dtypes": args.dtypes,
              "size": (f"{args.data.name}, " + (f"seeded subsample: {limit} labeled, {3 * limit} unlabeled, {limit} "
                                                 "test" if limit else "full splits")
                       + f"; LoRA lr {args.lr:g} for {args.epochs:g} epochs, batch 4; {args.max_new_tokens} new "
                         "tokens; hf generator, peft trainer"),
              "rounds": {}}
    for dtype in args.dtypes:
        print(f"round in {dtype}", flush=True)
        result["rounds"][dtype] = timed_round(round_config(args.data, limit, dtype, args.runs, args))
    md = markdown(result)
    save("round_time", args.out, result, md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Round time before and after: the same round (data, recipe, seed) run by the code of an earlier commit in one
dtype and by this code in another, one after the other on this machine, with each phase's time and the ratio.

    python benchmarks/round_time.py                                           # the shipped FPB sample
    python benchmarks/round_time.py --data ../shared/data/semievol/fpb --limit 64

The default before is a178076 in float32: the code before the speed work of issue 20 (bf16 as auto's CPU dtype,
decoding attention in bf16, plain LoRA without peft at inference, a batch's shared prompt prefix computed once).
It runs from a git worktree of that commit, so the figure is the whole change, not the part a switch can undo.
Each side runs in a process of its own with a fresh round directory and no trainings kept from earlier runs.
Writes round_time.json and round_time.md under --out."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import RESULTS, commit, describe, header, load_average, save  # noqa: E402
from benchmarks.quality import base_config  # noqa: E402
from semievol_core.config import EMBEDDED_MODEL  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BEFORE = "a178076"
RUN = ("import json, sys; from semievol_core import parse_config, run_round; "
       "run_round(parse_config(json.loads(sys.argv[1])))")
PHASES = ["warm_up", "retrieve", "collaborate", "justify", "select", "evolve", "evaluate"]


def round_config(data: Path, limit: int | None, dtype: str, runs: Path, name: str, args) -> dict:
    raw = base_config(data.resolve(), limit, runs.resolve(), 0, args.max_new_tokens, model=args.model, lr=args.lr,
                      epochs=args.epochs)
    raw["model"]["dtype"] = dtype
    return {**raw, "name": name, "backend": {"generator": "hf", "trainer": "peft"}}


@contextlib.contextmanager
def code_at(rev: str | None):
    """This checkout (None), or a detached worktree of `rev`, removed afterwards."""
    if rev is None:
        yield REPO
        return
    tmp = Path(tempfile.mkdtemp(prefix="round-time-"))
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tmp / "code"), rev], check=True,
                   capture_output=True, text=True)
    try:
        yield tmp / "code"
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tmp / "code")],
                       capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def timed_round(raw: dict, code: Path) -> dict:
    """The round run by the library at `code`, in a process of its own."""
    runs = Path(raw["runs_dir"])
    rd = runs / raw["name"]
    shutil.rmtree(rd, ignore_errors=True)  # a finished round would be reused, not timed
    shutil.rmtree(runs / ".trainings", ignore_errors=True)  # so would a training kept from an earlier run
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run([sys.executable, "-c", RUN, json.dumps(raw)], cwd=code, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=None)
    if out.returncode:
        raise SystemExit(f"the round at {code} failed (exit {out.returncode})")
    phases = json.loads((rd / "manifest.json").read_text())["phases"]
    metrics = json.loads((rd / "metrics.json").read_text())
    seconds = {p: round(phases[p]["seconds"], 1) for p in PHASES if p in phases}
    ev = metrics["evaluation"]
    return {"seconds": seconds, "total": round(sum(seconds.values()), 1),
            "accuracy": {m: ev[m]["accuracy"] for m in ("base", "warm", "evolved")},
            "pseudo_label_accuracy": metrics.get("pseudo_label_accuracy"),
            "selected": metrics["selection"]["selected"]}


def markdown(result: dict) -> str:
    a, b = result["sides"]
    ra, rb = result["rounds"][a], result["rounds"][b]
    rows = [f"| {p} | {ra['seconds'][p]} | {rb['seconds'][p]} | {ra['seconds'][p] / max(rb['seconds'][p], 0.1):.2f}x |"
            for p in PHASES if p in ra["seconds"]]
    rows.append(f"| **round** | **{ra['total']}** | **{rb['total']}** | **{ra['total'] / rb['total']:.2f}x** |")
    acc = [f"| {m} | {100 * ra['accuracy'][m]:.1f} | {100 * rb['accuracy'][m]:.1f} |"
           for m in ("base", "warm", "evolved")]
    acc.append(f"| selected pseudo-labels | {ra['selected']} | {rb['selected']} |")
    return (f"Round time before and after ({header(result)}): {result['size']}; one round each, run one after the "
            f"other, nothing else running\n\n"
            f"| phase | {a} s | {b} s | before / after |\n|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
            f"Accuracy on the test items (%) and the selected count, to see whether the change moves the "
            f"round's result:\n\n| model | {a} | {b} |\n|---|---|---|\n" + "\n".join(acc) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO / "data" / "samples" / "fpb",
                   help="folder with labeled.csv, unlabeled.csv, test.csv")
    p.add_argument("--limit", type=int, default=32, help="labeled and test rows (unlabeled: 3x); 0 for all")
    p.add_argument("--before", default=BEFORE, help="the commit whose code runs the round before")
    p.add_argument("--dtypes", nargs=2, default=["float32", "auto"], metavar=("BEFORE", "AFTER"))
    p.add_argument("--model", default=EMBEDDED_MODEL, help="the base model (model.base)")
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
    before = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", args.before], check=True,
                            capture_output=True, text=True).stdout.strip()
    sides = [f"{before} {args.dtypes[0]}", f"this code {args.dtypes[1]}"]
    result = {"benchmark": "round_time", "machine": describe(), "commit": commit(),
              "load_average_at_start": load_average(), "sides": sides, "before_commit": before,
              "dtypes": args.dtypes,
              "size": (f"{args.data.name}, " + (f"seeded subsample: {limit} labeled, {3 * limit} unlabeled, {limit} "
                                                 "test" if limit else "full splits")
                       + f"; LoRA lr {args.lr:g} for {args.epochs:g} epochs, batch 4; {args.max_new_tokens} new "
                         "tokens; hf generator, peft trainer"),
              "rounds": {}}
    for side, rev, dtype, name in ((sides[0], before, args.dtypes[0], "before"),
                                   (sides[1], None, args.dtypes[1], "after")):
        print(f"round: {side}", flush=True)
        with code_at(rev) as code:
            raw = round_config(args.data, limit, dtype, args.runs, f"round-time-{name}", args)
            result["rounds"][side] = timed_round(raw, code)
    md = markdown(result)
    save("round_time", args.out, result, md)
    print(md)
    a, b = (result["rounds"][s]["total"] for s in sides)
    print(f"summary: {sides[0]} {a} s, {sides[1]} {b} s, {a / b:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

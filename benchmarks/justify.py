"""What self-justify did with its candidates, on finished rounds: for the records where the n configurations
disagreed, how often the justified answer is one of the candidates' answers, how often it is the warm model's
own 0-shot answer, and the pseudo-label accuracy of three rules on the same records: self-justify, the
candidates' majority vote, and the warm 0-shot candidate alone. Per gold class, so a rule that returns the label
prior (right on the majority class, wrong on the others) shows as such.

    python benchmarks/justify.py runs/bench-quality/fpb-semievol-s0-n32 [more round directories]

The gold answers come from the round's unlabeled file and are read for this report only. Prints a markdown table
per round; with --out DIR also writes justify.json and justify.md there, keeping the rounds an earlier run
wrote there (a round directory lives on the machine that ran it; its study outlives it)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import commit, describe, save  # noqa: E402
from benchmarks.quality import _pct  # noqa: E402
from semievol_core import load_dataset  # noqa: E402
from semievol_core.answers import is_correct  # noqa: E402


def majority_vote(answers: list[str | None]) -> str | None:
    """The most common answer; a tie goes to the answer given first (configuration order), None if none."""
    given = [a for a in answers if a]
    if not given:
        return None
    counts = Counter(given)
    top = max(counts.values())
    return next(a for a in given if counts[a] == top)


def study(justified: pd.DataFrame, configs: list[dict], gold: dict[str, str], task: str = "choice") -> dict:
    """justified: the round's justified.parquet (id, candidate_answers in configuration order, justified,
    answer); configs: the justify summary's configurations ({warm, shots} per candidate); gold: id -> answer."""
    warm0 = next((i for i, c in enumerate(configs) if c["warm"] and c["shots"] == 0), None)
    rows = justified[justified["justified"].astype(bool)]
    per: dict[str, Counter] = {}
    for rid, cands, answer in zip(rows["id"], rows["candidate_answers"], rows["answer"]):
        cands = [a or None for a in cands]
        truth = gold[rid]
        given = [a for a in cands if a]
        vote = majority_vote(given)
        strict = vote is not None and 2 * given.count(vote) > len(given)
        w0 = cands[warm0] if warm0 is not None else None
        for key in (truth, "all"):
            c = per.setdefault(key, Counter())
            c["n"] += 1
            c["in_candidates"] += answer in cands
            c["equals_warm_0shot"] += warm0 is not None and answer == w0
            c["self_justify_right"] += is_correct(answer, truth, task)
            c["majority_vote_right"] += vote is not None and is_correct(vote, truth, task)
            c["warm_0shot_right"] += w0 is not None and is_correct(w0, truth, task)
            c["no_strict_majority"] += not strict
    out = {}
    for key, c in sorted(per.items(), key=lambda kv: (kv[0] == "all", kv[0])):
        n = c["n"]
        out[key] = {"n": n, "in_candidates": c["in_candidates"] / n,
                    "equals_warm_0shot": c["equals_warm_0shot"] / n if warm0 is not None else None,
                    "accuracy": {"self_justify": c["self_justify_right"] / n,
                                 "majority_vote": c["majority_vote_right"] / n,
                                 "warm_0shot": c["warm_0shot_right"] / n if warm0 is not None else None},
                    "no_strict_majority": c["no_strict_majority"] / n}
    return {"justified_records": int(len(rows)), "warm_0shot_config": warm0,
            "justified_answers": dict(sorted(Counter(rows["answer"].astype(str)).items())), "by_gold_class": out}


def study_round(rd: Path) -> dict:
    manifest = json.loads((rd / "manifest.json").read_text())
    data = manifest["config"]["data"]
    task = data.get("task", "choice")
    gold = {r.id: r.answer for r in load_dataset(Path(data["unlabeled"]), task).records}
    summary = json.loads((rd / "justify.json").read_text())
    result = study(pd.read_parquet(rd / "justified.parquet"), summary["configurations"], gold, task)
    return {"round": rd.name, "configurations": summary["configurations"], **result}


def markdown(results: list[dict]) -> str:
    lines = ["Self-justify on the records where the configurations disagreed (pseudo-label accuracy %, against "
             "the unlabeled file's gold answers, per gold class)", "",
             "| round | gold class | records | justified answer among the candidates' | equals warm 0-shot | "
             "self-justify | majority vote | warm 0-shot | no strict majority |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for label, c in r["by_gold_class"].items():
            a = c["accuracy"]
            lines.append(f"| {r['round']} | {label} | {c['n']} | {_pct(c['in_candidates'])} | "
                         f"{_pct(c['equals_warm_0shot'])} | {_pct(a['self_justify'])} | {_pct(a['majority_vote'])} | "
                         f"{_pct(a['warm_0shot'])} | {_pct(c['no_strict_majority'])} |")
    lines.append("")
    for r in results:
        confs = ", ".join(f"{'warm' if c['warm'] else 'base'} {c['shots']}-shot" for c in r["configurations"])
        lines.append(f"{r['round']}: configurations {confs}; justified answers "
                     + ", ".join(f"{k}: {v}" for k, v in r["justified_answers"].items())
                     + ("" if r["warm_0shot_config"] is not None else "; warm 0-shot was not drawn") + ".")
    return "\n".join(lines) + "\n"


def merged(earlier: Path, results: list[dict]) -> list[dict]:
    """The rounds of an earlier justify.json that this run did not study, then this run's."""
    try:
        prev = json.loads(earlier.read_text()).get("rounds", [])
    except FileNotFoundError:
        prev = []
    except (OSError, ValueError) as e:
        raise SystemExit(f"{earlier}: unreadable earlier results ({e}); move it away to start afresh")
    now = {r["round"] for r in results}
    return [r for r in prev if r.get("round") not in now] + results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rounds", nargs="+", type=Path, help="finished round directories")
    p.add_argument("--out", type=Path, help="write justify.json and justify.md here")
    args = p.parse_args(argv)
    for rd in args.rounds:
        if not (rd / "justified.parquet").is_file():
            p.error(f"{rd}: no justified.parquet (the round's self-justify phase has not finished)")
    studied = {"studied": time.strftime("%Y-%m-%d"), "commit": commit()}
    results = [{**study_round(rd), **studied} for rd in args.rounds]
    print(markdown(results))
    if args.out:
        kept = merged(args.out / "justify.json", results)
        save("justify", args.out, {"benchmark": "justify", "machine": describe(), "rounds": kept}, markdown(kept))
    # a round whose configurations always agreed has nothing to report (zipping the "all" rows with every
    # round would pair a later round's figures with its name)
    print("summary: " + "; ".join(
        f"{r['round']}: self-justify {_pct(x['accuracy']['self_justify'])}% vs majority vote "
        f"{_pct(x['accuracy']['majority_vote'])}% vs warm 0-shot {_pct(x['accuracy']['warm_0shot'])}%"
        if (x := r["by_gold_class"].get("all")) else f"{r['round']}: no disagreement to justify"
        for r in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

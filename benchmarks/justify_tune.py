"""Self-justify's prompt, compared on the labeled split alone: the labeled file is split (seeded) into a
training part and a held-out part that stands in for the unlabeled data. One round warms a LoRA up on the
training part, retrieves from it and runs collaborative inference on the held-out part; then self-justify runs
once per prompt (method.justify_prompt) and temperature on the same candidates, and each is scored against the
held-out gold answers beside the candidates' majority vote and the warm model's 0-shot candidate, per gold class
(benchmarks/justify.py's study). The test and unlabeled splits are never read, so a prompt picked here can be
compared on them without having been tuned on them.

    python benchmarks/justify_tune.py --data ../shared/data/semievol/fpb --recipe 1e-4:2

The round lives under --runs (a rerun with the same settings reuses its warm-up and candidates). Writes
justify_tune.json and justify_tune.md under --out, keeping the studies of other data or recipes there."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.justify import study  # noqa: E402
from benchmarks.machine import RESULTS, commit, describe, header, load_average, save  # noqa: E402
from benchmarks.quality import _pct  # noqa: E402
from benchmarks.recipe import recipe, split_labeled  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
UPSTREAM = ("warm_up", "retrieve", "collaborate")
PROMPTS = ("paper", "tally")


def _reusable(rd, cfg) -> bool:
    """The round's warm-up, retrieval and candidates were made with this config."""
    try:
        m = rd.read_manifest()
    except (OSError, ValueError):
        return False
    return m.get("config") == cfg.model_dump(mode="json") and all(p in m.get("phases", {}) for p in UPSTREAM)


def run(args) -> dict:
    from semievol_core import parse_config
    from semievol_core.collaborate import JUSTIFY
    from semievol_core.round import PHASES, manifest, prepare, run_phase

    lr, epochs = args.recipe
    name = f"justify-tune-{args.data.name}-lr{lr:g}x{epochs:g}-seed{args.seed}"
    split_dir = args.runs / f"{name}-split"
    split_dir.mkdir(parents=True, exist_ok=True)
    train, held, n_train, n_held = split_labeled(args.data / "labeled.csv", args.held_out, args.seed, split_dir)
    cfg = parse_config({"name": name, "runs_dir": str(args.runs), "progress": True,
                        "model": {} if args.model is None else {"base": args.model},
                        # the held-out part is the unlabeled split; nothing is evaluated, so no test split
                        "data": {"labeled": str(train), "unlabeled": str(held), "task": "choice"},
                        "lora": {"lr": lr, "epochs": epochs, "batch_size": args.batch_size},
                        "method": {"seed": args.seed, "max_new_tokens": args.max_new_tokens}})
    ctx = prepare(cfg)
    gold = {r.id: r.answer for r in ctx.splits["unlabeled"].records}
    result = {"benchmark": "justify_tune", "machine": describe(), "commit": commit(),
              "load_average_at_start": load_average(), "data": args.data.name, "model": cfg.model.base,
              "recipe": {"lr": lr, "epochs": epochs, "batch_size": args.batch_size},
              "split": {"seed": args.seed, "train": n_train, "held_out": n_held},
              "max_new_tokens": args.max_new_tokens, "variants": []}
    with ctx.rd.lock():
        t0 = time.perf_counter()
        if not _reusable(ctx.rd, cfg):
            ctx.rd.create(manifest(ctx))
            for phase in PHASES:
                if phase.name in UPSTREAM:
                    run_phase(ctx, phase.name, phase.run)
        result["upstream_seconds"] = round(time.perf_counter() - t0, 1)
        for style in args.prompts:
            for temperature in args.temperatures:
                raw = cfg.model_dump(mode="json")
                raw["method"].update(justify_prompt=style, justify_temperature=temperature)
                vctx = dataclasses.replace(ctx, cfg=parse_config(raw), notes={})
                t0 = time.perf_counter()
                JUSTIFY.run(vctx)  # rewrites justified.parquet and justify.json in the round directory
                summary = json.loads(ctx.rd.justify_summary.read_text())
                found = study(pd.read_parquet(ctx.rd.justified), summary["configurations"], gold)
                result["variants"].append({"prompt": style, "temperature": temperature,
                                           "seconds": round(time.perf_counter() - t0, 1),
                                           "agreement_rate": summary["agreement_rate"],
                                           "configurations": summary["configurations"], **found})
                print(f"{style} at temperature {temperature:g}: {line(result['variants'][-1])}", flush=True)
    return result


def line(v: dict) -> str:
    a = (v["by_gold_class"].get("all") or {}).get("accuracy")
    if not a:
        return "no disagreement to justify"
    return (f"self-justify {_pct(a['self_justify'])}% vs majority vote {_pct(a['majority_vote'])}% vs warm 0-shot "
            f"{_pct(a['warm_0shot'])}% on {v['justified_records']} disagreements")


def _key(study: dict) -> tuple:
    return (study["data"], study["model"], study["recipe"], study["split"], study["max_new_tokens"])


def merged(earlier: Path, result: dict) -> list[dict]:
    """The studies of an earlier justify_tune.json, with this one in place of the one measured the same way
    (whose prompts and temperatures this run did not try are kept)."""
    try:
        prev = json.loads(earlier.read_text()).get("studies", [])
    except FileNotFoundError:
        prev = []
    except (OSError, ValueError) as e:
        raise SystemExit(f"{earlier}: unreadable earlier results ({e}); move it away to start afresh")
    tried = {(v["prompt"], v["temperature"]) for v in result["variants"]}
    same = [v for s in prev if _key(s) == _key(result) for v in s["variants"]
            if (v["prompt"], v["temperature"]) not in tried]
    return [s for s in prev if _key(s) != _key(result)] + [{**result, "variants": same + result["variants"]}]


def markdown(studies: list[dict]) -> str:
    lines = []
    for s in studies:
        r, sp = s["recipe"], s["split"]
        lines += [f"Self-justify prompts on {s['data']}'s labeled split alone ({header(s)}): {s['model']}, the "
                  f"labeled file split with seed {sp['seed']} into {sp['train']} training and {sp['held_out']} "
                  f"held-out rows that stand in for the unlabeled data; warm-up LoRA lr {r['lr']:g}, {r['epochs']:g} "
                  f"epochs, batch {r['batch_size']}; at most {s['max_new_tokens']} new tokens. Pseudo-label "
                  "accuracy % on the records whose configurations disagreed, per gold class.", "",
                  "| prompt | temperature | gold class | records | answer among the candidates' | equals warm 0-shot "
                  "| self-justify | majority vote | warm 0-shot |", "|---|---|---|---|---|---|---|---|---|"]
        for v in s["variants"]:
            for label, c in v["by_gold_class"].items():
                a = c["accuracy"]
                lines.append(f"| {v['prompt']} | {v['temperature']:g} | {label} | {c['n']} | "
                             f"{_pct(c['in_candidates'])} | {_pct(c['equals_warm_0shot'])} | "
                             f"{_pct(a['self_justify'])} | {_pct(a['majority_vote'])} | {_pct(a['warm_0shot'])} |")
        lines.append("")
        for v in s["variants"]:
            confs = ", ".join(f"{'warm' if c['warm'] else 'base'} {c['shots']}-shot" for c in v["configurations"])
            lines.append(f"- {v['prompt']} at {v['temperature']:g}: justified answers "
                         + (", ".join(f"{k}: {n}" for k, n in v["justified_answers"].items()) or "none")
                         + f" (configurations {confs}; agreement {_pct(v['agreement_rate'])}%)")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO / "data" / "samples" / "fpb",
                   help="a folder with labeled.csv (its unlabeled and test files are not read)")
    p.add_argument("--recipe", type=recipe, default=(1e-4, 2), metavar="LR:EPOCHS", help="the warm-up's LoRA recipe")
    p.add_argument("--prompts", nargs="+", default=list(PROMPTS), choices=PROMPTS)
    p.add_argument("--temperatures", nargs="+", type=float, default=[0.0])
    p.add_argument("--held-out", type=float, default=0.2, help="share of the labeled rows held out")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help="the base model (model.base); the embedded SmolLM2 if unset")
    p.add_argument("--runs", type=Path, default=Path("runs") / "bench-justify-tune")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if not (args.data / "labeled.csv").is_file():
        p.error(f"{args.data / 'labeled.csv'} not found")
    result = run(args)
    studies = merged(args.out / "justify_tune.json", result)
    md = markdown(studies)
    save("justify_tune", args.out, {"benchmark": "justify_tune", "studies": studies}, md)
    print(md)
    print("summary: " + "; ".join(f"{v['prompt']}@{v['temperature']:g}: {line(v)}" for v in result["variants"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Which LoRA recipe lets the warm model leave the label prior, chosen on the labeled split alone: the labeled
file is split (seeded) into a training part and a held-out part, each recipe warms a LoRA up on the training
part, and each warm model answers the held-out part greedily. Reported per recipe: accuracy with its bootstrap
interval, the recall of each class and their mean (a model that answers the majority label for everything has a
macro recall of 1/classes, whatever its accuracy), the answers given, the optimizer steps. The test split is
never read, so a recipe picked here can be compared on test without having been tuned on it.

    python benchmarks/recipe.py --data ../shared/data/semievol/fpb --recipes 1e-4:2 1e-3:2 3e-4:3

A recipe is LR:EPOCHS (batch size --batch-size). Results are written after each recipe, so an interrupted run
keeps what finished. Writes recipe.json and recipe.md under --out."""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import RESULTS, commit, describe, header, load_average, save  # noqa: E402
from benchmarks.quality import _accuracy, sft_steps_round  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def recipe(text: str) -> tuple[float, float]:
    try:
        lr, epochs = text.split(":")
        return float(lr), float(epochs)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a recipe is LR:EPOCHS, e.g. 1e-4:2") from None


def split_labeled(labeled: Path, held_out: float, seed: int, out: Path) -> tuple[Path, Path, int, int]:
    """train.csv and held_out.csv under out: the labeled file's rows, shuffled with the seed and cut."""
    rows = pd.read_csv(labeled, dtype=str, keep_default_na=False)
    order = np.random.default_rng(seed).permutation(len(rows))
    cut = len(rows) - max(1, round(held_out * len(rows)))
    if cut < 1:
        raise SystemExit(f"{labeled}: {len(rows)} rows; too few to hold {held_out:.0%} out and train on the rest")
    train, held = out / "train.csv", out / "held_out.csv"
    rows.iloc[sorted(order[:cut])].to_csv(train, index=False)
    rows.iloc[sorted(order[cut:])].to_csv(held, index=False)
    return train, held, cut, len(rows) - cut


def recalls(preds: pd.DataFrame) -> dict:
    """Recall per gold class (the share of its items answered right) and their mean."""
    per = {str(g): float((grp["answer"] == grp["gold"]).mean()) for g, grp in preds.groupby("gold")}
    return {"per_class": per, "macro": float(np.mean(list(per.values())))}


def markdown(result: dict) -> str:
    s = result["split"]
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    lines = [f"LoRA recipes on the labeled split alone ({header(result)}): {result['model']}, {result['data']}'s "
             f"labeled file split with seed {s['seed']} into {s['train']} training and {s['held_out']} held-out "
             f"rows; batch size {result['batch_size']}, greedy answers, at most {result['max_new_tokens']} new "
             "tokens; the test split is not read", "",
             f"Majority label of the training part ({result['majority']['label']}) on the held-out part: "
             f"{pct(result['majority']['accuracy'])}%, macro recall {pct(result['majority']['macro_recall'])}%.", "",
             "| lr | epochs | optimizer steps | held-out accuracy | macro recall | recall per class | answers | "
             "seconds |", "|---|---|---|---|---|---|---|---|"]
    for r in result["recipes"]:
        h = r["held_out"]
        lines.append(f"| {r['lr']:g} | {r['epochs']:g} | {r['optimizer_steps']} | {pct(h['accuracy'])} "
                     f"[{pct(h['ci95'][0])}, {pct(h['ci95'][1])}] | {pct(h['recall']['macro'])} | "
                     + ", ".join(f"{k}: {pct(v)}" for k, v in h["recall"]["per_class"].items()) + " | "
                     + ", ".join(f"{k}: {v}" for k, v in h["answers"].items()) + f" | {r['seconds']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO / "data" / "samples" / "fpb",
                   help="a folder with labeled.csv and unlabeled.csv (validated, never generated on); "
                        "test.csv is not read")
    p.add_argument("--recipes", nargs="+", type=recipe, default=[(1e-4, 2), (1e-3, 2)], metavar="LR:EPOCHS")
    p.add_argument("--held-out", type=float, default=0.2, help="share of the labeled rows held out")
    p.add_argument("--batch-size", type=int, default=4, help="lora.batch_size (quality.py's rounds: 4)")
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help="the base model (model.base); the embedded SmolLM2 if unset")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    from semievol_core import load_dataset, parse_config

    result = {"benchmark": "recipe", "machine": describe(), "commit": commit(),
              "load_average_at_start": load_average(), "data": args.data.name, "batch_size": args.batch_size,
              "max_new_tokens": args.max_new_tokens, "recipes": []}
    with tempfile.TemporaryDirectory(prefix="semievol-recipe-") as tmp:
        train, held, n_train, n_held = split_labeled(args.data / "labeled.csv", args.held_out, args.seed, Path(tmp))
        result["split"] = {"seed": args.seed, "train": n_train, "held_out": n_held}
        for lr, epochs in args.recipes:
            cfg = parse_config({"name": f"recipe-{lr:g}-{epochs:g}", "runs_dir": str(Path(tmp) / "runs"),
                                "model": {} if args.model is None else {"base": args.model},
                                # a round config needs an unlabeled split: the data's own, never generated
                                # on; only the warm-up (labeled) and the evaluation (test: held out) run
                                "data": {"labeled": str(train), "unlabeled": str(args.data / "unlabeled.csv"),
                                         "test": str(held), "task": "choice"},
                                "lora": {"lr": lr, "epochs": epochs, "batch_size": args.batch_size},
                                "method": {"seed": args.seed, "max_new_tokens": args.max_new_tokens}})
            result.setdefault("model", cfg.model.base)
            t0 = time.perf_counter()
            sft_steps_round(cfg)  # the warm-up and the warm model's greedy answers on the test split
            preds = pd.read_parquet(Path(cfg.runs_dir) / cfg.name / "eval_predictions.parquet")
            if "majority" not in result:
                labeled = load_dataset(str(train), task="choice", require_answers=True).records
                label = Counter(r.answer for r in labeled).most_common(1)[0][0]
                prior = preds.assign(answer=label)
                result["majority"] = {"label": label, "accuracy": float((prior["answer"] == prior["gold"]).mean()),
                                      "macro_recall": recalls(prior)["macro"]}
            result["recipes"].append({"lr": lr, "epochs": epochs,
                                      "optimizer_steps": cfg.lora.optimizer_steps(n_train),
                                      "seconds": round(time.perf_counter() - t0, 1),
                                      "held_out": {**_accuracy(preds, "warm", "choice"), "recall": recalls(preds)}})
            save("recipe", args.out, result, markdown(result))
            h = result["recipes"][-1]["held_out"]
            print(f"lr {lr:g}, {epochs:g} epochs: held-out accuracy {100 * h['accuracy']:.1f}%, macro recall "
                  f"{100 * h['recall']['macro']:.1f}%, answers {h['answers']}", flush=True)
    best = max(result["recipes"], key=lambda r: r["held_out"]["recall"]["macro"])
    print(f"summary: best macro recall {100 * best['held_out']['recall']['macro']:.1f}% at lr {best['lr']:g}, "
          f"{best['epochs']:g} epochs (the majority label: {100 * result['majority']['macro_recall']:.1f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Quality: test accuracy of vanilla (base), SFT (the warm model), SFT with as many optimizer steps as the
evolved model, SemiEvol, the four ablations, two selection rules beyond the paper and a second iterative round,
with pseudo-label accuracy, agreement rate and tau, on the paper's splits.

    python benchmarks/quality.py --data ../shared/data/semievol                # full splits
    python benchmarks/quality.py --data ../shared/data/semievol --limit 64     # one seeded subsample

Each method is a full round (library, no Prefect) over the same seeded subsample, in a round directory named by
dataset, method, seed, limit and LoRA recipe (sft-steps, the control, is a warm-up and its evaluation only): a
rerun after an interruption reuses every round that finished with the same config. quality.json under --out
holds one study per way of measuring (model, subsample, LoRA recipe, machine), side by side; a method a study
already holds for a dataset is not run again (point --out elsewhere to remeasure), so the datasets, ablations
and recipes can be run one invocation at a time; --report-only runs nothing and redraws the tables and plots
from what is there. Every model is paired with SFT (the warm model) on the same test items, and SemiEvol with
every other; the second round (round-2, after the select-per-class round) also with the first round's evolved
model, its own warm model. The unlabeled files' gold answers are read only for the report (pseudo-label
accuracy, the NLL histograms), never by the method.
Writes quality.json, quality.md and PNG plots under --out (default benchmarks/results)."""
from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import RESULTS, commit, describe, machine_line, save  # noqa: E402
from semievol_core import load_dataset, parse_config, run_round  # noqa: E402
from semievol_core.propagate import WARM_UP  # noqa: E402
from semievol_core import prompts  # noqa: E402
from semievol_core.data import load_splits  # noqa: E402
from semievol_core.evolve import training_set  # noqa: E402
from semievol_core.next_round import STANDARD, frame, next_data  # noqa: E402
from semievol_core.round import PHASES, manifest, prepare, run_phase  # noqa: E402
from semievol_core.store import RoundDir, write_json, write_parquet  # noqa: E402
from semievol_core.answers import is_correct  # noqa: E402
from semievol_core.backends import resolve_dtype  # noqa: E402
from semievol_core.config import EMBEDDED_MODEL, ModelConfig  # noqa: E402
from semievol_core.data import subsample  # noqa: E402
from semievol_core.evaluate import evaluate_models, outcomes, paired_difference  # noqa: E402

# The paper's Table 1, Llama-3.1-8B: vanilla / SFT / SemiEvol accuracy (%).
PAPER = {"fpb": (81.7, 96.2, 96.2), "arc": (81.1, 81.8, 83.4), "pubmedqa": (73.5, 75.0, 76.0)}
ABLATIONS = {"semievol": {}, "no-warmup": {"warmup": False}, "no-retrieval": {"retrieval": False},
             "no-collaboration": {"collaboration": False}, "no-selection": {"selection": False}}
# Beyond the paper: selection rules that resist the label prior, each run on the semievol round's own warm
# adapter, retrieval, candidates and self-justified answers (copied), so only the selection differs.
SELECTION_VARIANTS = {"select-per-class": {"selection_scope": "class"}, "keep-agreed": {"keep_agreed": True}}
# Methods whose phases up to self-justify are the semievol round's (their config differs from it only in what
# selection and later read), so they reuse its outputs rather than recompute an hour of the same work.
REUSES_UPSTREAM = ("no-selection", *SELECTION_VARIANTS)
# The control a reviewer asks for: the evolved model trains on labeled + selected, so more optimizer steps than
# the warm-up. sft-steps is the warm-up on the labeled data alone, repeated to the evolved model's step count:
# a gain of SemiEvol over it does not come from the extra steps.
# Step 7 of the method: a second round that treats the first's labeled + selected as labeled and works on the
# unselected rest, after the round-1 method named here (the better selection).
ROUND_TWO = {"round-2": "select-per-class"}
METHODS = [*ABLATIONS, "sft-steps", *SELECTION_VARIANTS, *ROUND_TWO]
OLD_RECIPE = {"lr": 1e-3, "epochs": 2, "batch_size": 4}  # of the results written before the recipe was recorded


def final_model(method: str, entry: dict | None) -> dict | None:
    """The accuracy of the model a method ends with: the evolved one, or for sft-steps its longer SFT."""
    return (entry or {}).get("sft" if method == "sft-steps" else "evolved")


def bootstrap(correct: np.ndarray, reps: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean."""
    if len(correct) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = rng.choice(correct, size=(reps, len(correct)), replace=True).mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _accuracy(preds: pd.DataFrame, model: str, task: str) -> dict:
    """Accuracy with its interval, the answers given (a model that collapsed onto one label shows it here)
    and, per test item in id order, whether it was right (for paired differences later)."""
    ids, correct = outcomes(preds, model, task)
    answers = [None if pd.isna(a) else a for a in preds[preds["model"] == model].sort_values("id")["answer"]]
    ok = np.array(correct, dtype=float)
    lo, hi = bootstrap(ok)
    return {"accuracy": float(ok.mean()) if len(ok) else None, "ci95": [lo, hi], "n": int(len(ok)),
            "extraction_failure_rate": float(np.mean([a is None for a in answers])) if answers else None,
            "answers": dict(sorted(Counter("none" if a is None else str(a) for a in answers).items())),
            "ids": ids, "correct": correct}


def paired(runs: dict, majority: dict | None = None) -> dict:
    """Paired differences on one dataset's test items: SemiEvol against vanilla, SFT and each other method's
    final model, and every model (the majority label's answers too) against SFT, the baseline a user would
    otherwise ship."""
    sv = runs.get("semievol") or {}
    ours, sft = sv.get("evolved") or {}, sv.get("sft") or {}
    pairs = [("semievol - vanilla", ours, sv.get("vanilla")), ("semievol - sft", ours, sft)]
    pairs += [(f"semievol - {m}", ours, final_model(m, runs.get(m))) for m in METHODS if m != "semievol"]
    pairs += [("majority - sft", majority, sft), ("vanilla - sft", sv.get("vanilla"), sft)]
    pairs += [(f"{m} - sft", final_model(m, runs.get(m)), sft) for m in METHODS if m != "semievol"]
    pairs += [(f"{m} - {other}", final_model(m, runs.get(m)), final_model(other, runs.get(other)))
              for m, first in ROUND_TWO.items() for other in (first, "sft-steps")]
    out = {}
    for name, a, b in pairs:
        if a and b and "correct" in a and "correct" in b and a["ids"] == b["ids"]:
            out[name] = paired_difference(a["correct"], b["correct"])
    return out


def matched_steps(cfg, semievol_round: Path):
    """cfg with lora.epochs set so that the warm-up takes as many optimizer steps as the evolve phase of
    `semievol_round` took (labeled + selected examples), and that step count."""
    counts = json.loads((semievol_round / "metrics.json").read_text())["counts"]
    selected = json.loads((semievol_round / "selection.json").read_text())["selected"]
    target = cfg.lora.optimizer_steps(counts["labeled"] + selected)
    per_epoch = cfg.lora.model_copy(update={"epochs": 1}).optimizer_steps(counts["labeled"])
    epochs = target / per_epoch
    if cfg.lora.model_copy(update={"epochs": epochs}).optimizer_steps(counts["labeled"]) != target:
        epochs = float(np.nextafter(epochs, 0))  # per_epoch * epochs rounded up past the target
    raw = cfg.model_dump(mode="json")
    raw["lora"]["epochs"] = epochs
    return parse_config(raw), target


def sft_steps_round(cfg) -> None:
    """The warm-up and the warm model's greedy evaluation, as a round directory of their own."""
    ctx = prepare(cfg)
    with ctx.rd.lock():
        ctx.rd.create(manifest(ctx))
        run_phase(ctx, "warm_up", WARM_UP.run)

        def evaluate_warm(ctx):
            metrics, preds = evaluate_models(ctx.cfg, ctx.model_path, ctx.splits["test"],
                                             {"warm": ctx.warm_adapter()}, ctx.cfg.method.seed)
            return [write_parquet(ctx.rd.predictions, preds), write_json(ctx.rd.evaluation, metrics)]
        run_phase(ctx, "evaluate", evaluate_warm)


def _per_class(pl: pd.DataFrame, ok: list[bool]) -> dict:
    """Pseudo-label accuracy per pseudo-labeled class, over all and over the selected: which classes the
    selection keeps, and how right they are."""
    out = {}
    for label in sorted(set(pl["answer"].astype(str))):
        mine = (pl["answer"].astype(str) == label).to_numpy()
        sel = mine & pl["selected"].to_numpy(dtype=bool)
        right = np.asarray(ok, dtype=bool)
        out[label] = {"n": int(mine.sum()), "accuracy": float(right[mine].mean()),
                      "selected": int(sel.sum()), "selected_accuracy": float(right[sel].mean()) if sel.any() else None}
    return out


def variant_round(cfg, source: Path) -> None:
    """no-selection or a selection variant: the phases up to self-justify are the finished round `source`'s
    (their outputs copied, recorded with 0 s and where they came from), then selection (the NLLs scored again,
    as deterministic as before), evolve, evaluation and the report run with cfg."""
    upstream = [p for p in PHASES if p.name in ("warm_up", "retrieve", "collaborate", "justify")]
    ctx, src = prepare(cfg), RoundDir(source)
    done = src.read_manifest()["phases"]
    with ctx.rd.lock():
        ctx.rd.create(manifest(ctx))
        for phase in upstream:
            outputs = []
            for name in phase.outputs:
                a, b = getattr(src, name), getattr(ctx.rd, name)
                if a.is_dir():
                    shutil.copytree(a, b, dirs_exist_ok=True)
                elif a.is_file():
                    b.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(a, b)
                else:
                    continue
                outputs.append(b)
            if phase.name in done:
                ctx.rd.record_phase(phase.name, 0.0, outputs, reused_from=source.name)
        for phase in PHASES[len(upstream):]:
            run_phase(ctx, phase.name, phase.run)


def round_two_config(raw: dict, source: Path):
    """The config of the round after `source` (a finished round): its method, the data next_data derives from
    its pseudo-labels (written into `source`) and its test split in the same columns beside them."""
    first = parse_config(RoundDir(source).read_manifest()["config"])
    splits = load_splits(first.data)
    lab, unl, _ = next_data(splits["labeled"], splits["unlabeled"], source, "r1")
    if unl is None:
        raise SystemExit(f"{source}: every unlabeled record was selected; no second round to run")
    test = write_parquet(source / "next_test.parquet", frame(splits["test"].records))
    data = {**raw["data"], "labeled": str(lab), "unlabeled": str(unl), "test": str(test),
            "columns": STANDARD.model_dump(), "limit_labeled": None, "limit_unlabeled": None, "limit_test": None}
    return parse_config({**raw, "data": data, "method": first.method.model_dump(mode="json")})


def round_two(cfg, source: Path) -> None:
    """The second round. Its warm-up trains a fresh LoRA on the base model over its labeled set, which is what
    round 1's evolve phase trained over, in the same order and with the same recipe and seed: round 1's evolved
    adapter is taken as its warm adapter (recorded as reused) once the two training sets are checked equal."""
    ctx, src = prepare(cfg), RoundDir(source)
    first = prepare(parse_config(src.read_manifest()["config"]))
    same = (first.cfg.lora == ctx.cfg.lora and first.cfg.model == ctx.cfg.model
            and training_set(first) == [prompts.training_example(r, ctx.task, r.answer)
                                        for r in ctx.splits["labeled"].records])
    with ctx.rd.lock():
        ctx.rd.create(manifest(ctx))
        if same:
            shutil.copytree(src.evolved_adapter, ctx.rd.warm_adapter, dirs_exist_ok=True)
            ctx.rd.record_phase("warm_up", 0.0, [ctx.rd.warm_adapter], reused_from=f"{source.name}/evolved_adapter")
        else:
            print(f"{source.name}: its evolve phase trained on other examples; round 2 trains its own warm-up",
                  flush=True)
            run_phase(ctx, "warm_up", WARM_UP.run)
        for phase in PHASES[1:]:
            run_phase(ctx, phase.name, phase.run)


def base_config(d: Path, limit: int | None, runs: Path, seed: int, max_new_tokens: int,
                model: str = EMBEDDED_MODEL, lr: float = 1e-3, epochs: float = 2) -> dict:
    """A benchmark round's config, less its name: the choice dataset in folder d, seeded subsample of `limit`
    labeled and test rows and 3x as many unlabeled (all if None), LoRA batch 4."""
    return {"runs_dir": str(runs), "progress": True, "model": {"base": model},
            "data": {"labeled": str(d / "labeled.csv"), "unlabeled": str(d / "unlabeled.csv"),
                     "test": str(d / "test.csv"), "task": "choice", "sample_seed": seed,
                     "limit_labeled": limit, "limit_unlabeled": limit and 3 * limit, "limit_test": limit},
            "lora": {"lr": lr, "epochs": epochs, "batch_size": 4},
            "method": {"seed": seed, "max_new_tokens": max_new_tokens}}


def run_dataset(data: Path, name: str, methods: list[str], limit: int | None, runs: Path, seed: int,
                max_new_tokens: int, on_method=lambda name, done: None, report_only: bool = False,
                earlier: dict | None = None, model: str = EMBEDDED_MODEL, lr: float = 1e-3,
                epochs: float = 2) -> dict:
    """Results per method for one dataset; methods in `earlier` (this dataset's entries of an earlier
    quality.json with the same subsample) are kept as they are."""
    earlier = earlier or {}
    d = data / name
    base_cfg = base_config(d, limit, runs, seed, max_new_tokens, model, lr, epochs)
    out = {}
    # The recipe and a dtype other than fp32 are in the name: rounds measured either way live side by side.
    dtype = resolve_dtype(ModelConfig())
    round_name = (f"{name}-{{}}-seed{seed}-limit{limit or 'all'}-lr{lr:g}x{epochs:g}"
                  + ("" if dtype == "float32" else f"-{dtype}")).format
    for method in methods:
        if method in earlier:
            print(f"{name} {method}: kept from the earlier results ({earlier[method].get('date', 'undated')})",
                  flush=True)
            continue
        raw = {**base_cfg, "name": round_name(method),
               "method": {**base_cfg["method"], **ABLATIONS.get(method, {}), **SELECTION_VARIANTS.get(method, {})}}
        cfg, rd = parse_config(raw), runs / raw["name"]
        semievol_rd = runs / round_name("semievol")
        first_rd = runs / round_name(ROUND_TWO.get(method, "semievol"))
        if method in ("sft-steps", *REUSES_UPSTREAM, *ROUND_TWO) and not (first_rd / "metrics.json").is_file():
            print(f"{name} {method}: builds on the {ROUND_TWO.get(method, 'semievol')} round, and {first_rd} has "
                  "not finished; left out", flush=True)
            continue
        if method == "sft-steps":
            cfg, steps = matched_steps(cfg, semievol_rd)
        if method in ROUND_TWO:
            cfg = round_two_config(raw, first_rd)
        last = "evaluate" if method == "sft-steps" else "report"
        if not _finished_with(rd, cfg, last):  # else a round of an earlier, interrupted run of this benchmark
            if report_only:
                print(f"{name} {method}: no result and no finished round in {runs}, left out", flush=True)
                continue
            if method == "sft-steps":
                sft_steps_round(cfg)
            elif method in REUSES_UPSTREAM:
                variant_round(cfg, semievol_rd)
            elif method in ROUND_TWO:
                round_two(cfg, first_rd)
            else:
                run_round(cfg)
            write_json(rd / "benchmark.json", {"commit": started_at()})
        seconds = sum(p["seconds"] for p in json.loads((rd / "manifest.json").read_text())["phases"].values())
        preds = pd.read_parquet(rd / "eval_predictions.parquet")
        finished = time.localtime((rd / "eval_predictions.parquet").stat().st_mtime)
        entry = {"round": rd.name, "date": time.strftime("%Y-%m-%d", finished), "commit": _round_commit(rd),
                 "seconds": round(seconds, 1)}
        if method == "sft-steps":
            entry.update(optimizer_steps=steps, epochs=cfg.lora.epochs, sft=_accuracy(preds, "warm", "choice"))
        else:
            m = json.loads((rd / "metrics.json").read_text())
            entry.update(counts=m["counts"], evolved=_accuracy(preds, "evolved", "choice"),
                         pseudo_label_accuracy=m.get("pseudo_label_accuracy"),
                         agreement_rate=(m.get("justify") or {}).get("agreement_rate"),
                         tau=(m.get("selection") or {}).get("tau"),
                         selection={k: v for k, v in (m.get("selection") or {}).items()
                                    if k in ("pool", "selected", "pool_per_class", "selected_per_class",
                                             "kept_by_agreement")})
            pl = pd.read_parquet(rd / "pseudo_labels.parquet")
            gold = {r.id: r.answer for r in load_dataset(d / "unlabeled.csv", "choice").records}
            ok = [is_correct(a, gold[i], "choice") for i, a in zip(pl["id"], pl["answer"])]
            entry["pseudo_label_accuracy_per_class"] = _per_class(pl, ok)
        if method in ROUND_TWO:
            entry["after"], entry["warm"] = ROUND_TWO[method], _accuracy(preds, "warm", "choice")
        if method == "semievol":
            entry["vanilla"] = _accuracy(preds, "base", "choice")
            entry["sft"] = _accuracy(preds, "warm", "choice")
            entry["optimizer_steps"] = {"warm_up": cfg.lora.optimizer_steps(m["counts"]["labeled"]),
                                        "evolve": cfg.lora.optimizer_steps(m["counts"]["labeled"]
                                                                           + m["selection"]["selected"])}
            entry["nll"] = {"correct": [float(x) for x, o in zip(pl["nll"], ok) if o],
                            "wrong": [float(x) for x, o in zip(pl["nll"], ok) if not o]}
        out[method] = entry
        print(f"{name} {method}: {'SFT' if method == 'sft-steps' else 'evolved'} "
              f"{_pct(final_model(method, entry)['accuracy'])} in {seconds:.0f} s", flush=True)
        on_method(name, out)
    return out


@functools.cache
def started_at() -> str | None:
    """The commit this run started from (main asks first): a commit made while a long run goes on is not the
    code that produced its entries."""
    return commit()


def _round_commit(rd: Path) -> str | None:
    """The commit of the run that made round `rd` (a later invocation may reuse it), None if unrecorded."""
    try:
        return json.loads((rd / "benchmark.json").read_text())["commit"]
    except (OSError, ValueError, KeyError):
        return None


def majority_baseline(data: Path, name: str, limit: int | None, seed: int) -> dict:
    """Test accuracy of always answering the labeled split's most common label: the floor a model that only
    learned the label prior reaches (a LoRA that collapsed onto one answer scores exactly this). Its per-item
    outcomes are in the test ids' order of eval_predictions, so it pairs with the models."""
    lab = subsample(load_dataset(data / name / "labeled.csv", "choice"), limit, seed)
    test = subsample(load_dataset(data / name / "test.csv", "choice"), limit, seed)
    label = Counter(r.answer for r in lab.records).most_common(1)[0][0]
    items = pd.DataFrame({"id": [r.id for r in test.records], "answer": [r.answer for r in test.records]})
    items = items.sort_values("id")
    ok = (items["answer"] == label).to_numpy(dtype=float)
    lo, hi = bootstrap(ok)
    return {"label": label, "accuracy": float(ok.mean()), "ci95": [lo, hi], "n": int(len(ok)),
            "ids": [str(i) for i in items["id"]], "correct": [int(x) for x in ok]}


def _kind(study: dict) -> tuple:
    """What makes results comparable: the same model, subsample, LoRA recipe, dtype and kind of machine."""
    m = study.get("machine") or {}
    return (study.get("model"), study.get("subsample"), study.get("recipe", OLD_RECIPE), study.get("dtype", "float32"),
            tuple(m.get(k) for k in ("cores", "cpu", "gpu")))


def _studies(path: Path) -> list[dict]:
    """The studies an earlier quality.json holds; a file from before studies were kept side by side is one."""
    try:
        prev = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        raise SystemExit(f"{path}: unreadable earlier results ({e}); move it away to start afresh")
    if "studies" in prev:
        return prev["studies"]
    return [{"recipe": OLD_RECIPE, **{k: v for k, v in prev.items() if k != "benchmark"}}]


def _in_order(studies: list[dict]) -> list[dict]:
    """Full splits first, then subsamples; within each, by learning rate and epochs."""
    return sorted(studies, key=lambda s: (not s["subsample"].startswith("full"), s["subsample"],
                                          s.get("recipe", OLD_RECIPE)["lr"], s.get("recipe", OLD_RECIPE)["epochs"]))


def _finished_with(rd: Path, cfg, last: str = "report") -> bool:
    """A round directory made with this config whose `last` phase finished (settings added since then at their
    defaults; the name aside: the directory may have been renamed)."""
    try:
        manifest = json.loads((rd / "manifest.json").read_text())
        then = parse_config(manifest["config"]).model_dump(mode="json")
    except (OSError, ValueError, KeyError):
        return False
    now = cfg.model_dump(mode="json")
    then["name"] = now["name"]
    return (rd / "eval_predictions.parquet").is_file() and last in manifest["phases"] and then == now


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _cell(acc: dict | None) -> str:
    if not acc or acc["accuracy"] is None:
        return "-"
    lo, hi = acc["ci95"]
    return f"{100 * acc['accuracy']:.1f} [{100 * lo:.0f}, {100 * hi:.0f}]"


def _ordered(result: dict) -> dict:
    """Datasets in the paper's order, each with its methods in METHODS order (the JSON's keys are sorted)."""
    rank = {n: i for i, n in enumerate(PAPER)}
    return {n: {m: r[m] for m in METHODS if m in r}
            for n, r in sorted(result["datasets"].items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))}


def _label(study: dict) -> str:
    r = study.get("recipe", OLD_RECIPE)
    dtype = study.get("dtype", "float32")
    return (f"{study['subsample'].split(':')[0].split(';')[0]}, lr {r['lr']:g} x {r['epochs']:g} epochs"
            + ("" if dtype == "float32" else f", {dtype}"))


def tables(studies: list[dict]) -> str:
    """quality.md: one section per study."""
    return "\n".join(table(s) for s in studies)


def table(result: dict) -> str:
    datasets = _ordered(result)
    methods = [m for m in METHODS if any(m in v for v in datasets.values())]
    cols = ["majority label", "vanilla", "SFT"] + methods
    r = result.get("recipe", OLD_RECIPE)
    lines = [f"## {_label(result)}", "",
             f"Quality, {result['model']} on CPU in {result.get('dtype', 'float32')}, {result['subsample']}; LoRA lr "
             f"{r['lr']:g}, {r['epochs']:g} epochs, batch {r['batch_size']} (accuracy %, 95% bootstrap interval; "
             "majority label: always answering the labeled split's most common label)", "",
             "| dataset | " + " | ".join(cols) + " | paper vanilla / SFT / SemiEvol (Llama-3.1-8B) |",
             "|" + "---|" * (len(cols) + 2)]
    for name, runs in datasets.items():
        sv = runs.get("semievol", {})
        maj = result.get("majority", {}).get(name)
        cells = [f"{_cell(maj)} ({maj['label']})" if maj else "-", _cell(sv.get("vanilla")), _cell(sv.get("sft"))]
        cells += [_cell(final_model(m, runs.get(m))) for m in methods]
        paper = " / ".join(f"{x:.1f}" for x in PAPER.get(name, ())) or "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {paper} |")
    lines += ["", "sft-steps: the warm-up alone, its labeled data repeated until it takes as many optimizer steps "
              "as the evolved model of the semievol round.", "",
              "| dataset | method | pseudo-label acc. all | selected | agreement | tau | optimizer steps | seconds "
              "| date | commit |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, runs in datasets.items():
        for method, e in runs.items():
            pla = e.get("pseudo_label_accuracy") or {}
            steps = e.get("optimizer_steps")
            if isinstance(steps, dict):
                steps = f"warm-up {steps['warm_up']}, evolve {steps['evolve']}"
            lines.append(f"| {name} | {method} | {_pct((pla.get('all') or {}).get('accuracy'))} | "
                         f"{_pct((pla.get('selected') or {}).get('accuracy'))} | {_pct(e.get('agreement_rate'))} | "
                         f"{'-' if e.get('tau') is None else round(e['tau'], 4)} | {steps or '-'} | "
                         f"{e['seconds']} | {e.get('date', '-')} | {e.get('commit') or '-'} |")
    per_class = [(name, method, label, c) for name, runs in datasets.items() for method, e in runs.items()
                 for label, c in (e.get("pseudo_label_accuracy_per_class") or {}).items()]
    if per_class:
        lines += ["", "Pseudo-labels per class (the answer self-justify gave; accuracy against the unlabeled "
                  "split's gold answers, which the method never reads):", "",
                  "| dataset | method | class | pseudo-labeled | accuracy | selected | accuracy |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {name} | {method} | {label} | {c['n']} | {_pct(c['accuracy'])} | {c['selected']} | "
                  f"{_pct(c['selected_accuracy'])} |" for name, method, label, c in per_class]
    against = [(name, runs, paired(runs, result.get("majority", {}).get(name))) for name, runs in datasets.items()]
    for name, runs, pairs in against:
        sv = runs.get("semievol") or {}
        rows = [("majority label", "majority", result.get("majority", {}).get(name)),
                ("vanilla", "vanilla", sv.get("vanilla")), ("SFT (the warm model)", "sft", sv.get("sft"))]
        rows += [(m, m, final_model(m, e)) for m, e in runs.items()]
        lines += ["", f"{name}: every model against SFT on the same {(sv.get('sft') or {}).get('n', '-')} test items "
                  "(points; 95% paired bootstrap interval, 10,000 resamples; p: share of resamples where the model "
                  "does not come out ahead of SFT):", "",
                  "| model | accuracy | minus SFT | 95% interval | p |", "|---|---|---|---|---|"]
        for label, key, acc in rows:
            d = pairs.get(f"{key} - sft")
            vs = (f"{100 * d['difference']:+.1f} | [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}] | "
                  f"{d['p_not_better']:.3f}") if d else "- | - | -"
            lines.append(f"| {label} | {_cell(acc)} | {vs} |")
    diffs = [(name, pair, d) for name, _, pairs in against for pair, d in pairs.items()
             if pair.startswith(("semievol", *ROUND_TWO))]
    if diffs:
        lines += ["", "Paired differences on the same test items (accuracy points, 95% paired bootstrap interval, "
                  "10,000 resamples; p: share of resamples where the first model does not come out ahead):", "",
                  "| dataset | difference | points | 95% interval | p |", "|---|---|---|---|---|"]
        lines += [f"| {name} | {pair} | {100 * d['difference']:+.1f} | [{100 * d['ci95'][0]:+.1f}, "
                  f"{100 * d['ci95'][1]:+.1f}] | {d['p_not_better']:.3f} |" for name, pair, d in diffs]
    dist = [(name, label, acc) for name, runs in datasets.items()
            for label, acc in (("vanilla", (runs.get("semievol") or {}).get("vanilla")),
                               ("SFT", (runs.get("semievol") or {}).get("sft")),
                               *((m, final_model(m, e)) for m, e in runs.items())) if acc and "answers" in acc]
    if dist:
        lines += ["", "Answers given on the test items (a model that collapsed onto one label gives only that one; "
                  "none: no answer could be read):", "",
                  "| dataset | model | answers | no answer |", "|---|---|---|---|"]
        lines += [f"| {name} | {label} | " + ", ".join(f"{k}: {v}" for k, v in acc["answers"].items())
                  + f" | {_pct(acc['extraction_failure_rate'])} |" for name, label, acc in dist]
    m = result["machine"]
    lines += ["", f"Machine: {machine_line(m)}; each round's date above, "
              f"tables drawn {m['date']}."]
    return "\n".join(lines) + "\n"


def plots(studies: list[dict], out: Path) -> list[Path]:
    """Accuracy bars and the pseudo-labels' NLL histograms: a row per study, a column per dataset."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = max([len(study["datasets"]) for study in studies] or [1])

    def figure():
        fig, axes = plt.subplots(len(studies), cols, figsize=(5 * cols, 4 * len(studies)), squeeze=False)
        cells = [(axes[i][j], study, name, runs) for i, study in enumerate(studies)
                 for j, (name, runs) in enumerate(_ordered(study).items())]
        used = {id(c[0]) for c in cells}
        for ax in axes.flat:
            if id(ax) not in used:  # a study with fewer datasets than another
                ax.axis("off")
        return fig, cells

    paths = []
    fig, cells = figure()
    for ax, study, name, runs in cells:
        sv = runs.get("semievol", {})
        bars = [("majority", study.get("majority", {}).get(name)), ("vanilla", sv.get("vanilla")),
                ("SFT", sv.get("sft"))]
        bars += [(m, final_model(m, e)) for m, e in runs.items()]
        bars = [(k, a) for k, a in bars if a and a["accuracy"] is not None]
        acc = [100 * a["accuracy"] for _, a in bars]
        err = [[100 * (a["accuracy"] - a["ci95"][0]) for _, a in bars],
               [100 * (a["ci95"][1] - a["accuracy"]) for _, a in bars]]
        ax.bar(range(len(bars)), acc, yerr=err, capsize=3)
        ax.set_xticks(range(len(bars)), [k for k, _ in bars], rotation=45, ha="right")
        ax.set_title(f"{name}: {_label(study)}", fontsize=9)
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
    fig.tight_layout()
    paths.append(out / "quality_accuracy.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    fig, cells = figure()
    for ax, study, name, runs in cells:
        nll = runs.get("semievol", {}).get("nll") or {"correct": [], "wrong": []}
        ax.hist([nll["correct"], nll["wrong"]], bins=20, label=["correct", "wrong"], alpha=0.7)
        ax.set_title(f"{name}: NLL of pseudo-labels, {_label(study)}", fontsize=9)
        ax.set_xlabel("mean token NLL (warm model)")
        ax.legend()
    fig.tight_layout()
    paths.append(out / "quality_nll.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder with <dataset>/{labeled,unlabeled,test}.csv")
    p.add_argument("--datasets", nargs="+", default=["fpb", "arc", "pubmedqa"])
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--lr", type=float, default=1e-3, help="LoRA learning rate of every round (lora.lr)")
    p.add_argument("--epochs", type=float, default=2, help="LoRA epochs of every round (lora.epochs)")
    p.add_argument("--limit", type=int, help="labeled and test rows per dataset (unlabeled: 3x); all if unset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=EMBEDDED_MODEL, help="the base model (model.base of the rounds)")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--runs", type=Path, default=Path("runs") / "bench-quality", help="round directories")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: tabulate the earlier results and the rounds finished under --runs")
    args = p.parse_args(argv)
    if "semievol" not in args.methods:
        args.methods.insert(0, "semievol")  # vanilla and SFT come from its round
    for name in args.datasets:
        for split in ("labeled", "unlabeled", "test"):
            if not (args.data / name / f"{split}.csv").is_file():
                p.error(f"{args.data / name / f'{split}.csv'} not found")
    t0 = time.perf_counter()
    started_at()
    model = "SmolLM2-135M-Instruct" if args.model == EMBEDDED_MODEL else args.model
    result = {"machine": describe(), "model": model,
              "subsample": (f"full splits; {args.max_new_tokens} new tokens" if args.limit is None else
                            f"seeded subsample (seed {args.seed}): {args.limit} labeled, {3 * args.limit} unlabeled, "
                            f"{args.limit} test per dataset, the same for every method; {args.max_new_tokens} new "
                            "tokens"),
              "recipe": {"lr": args.lr, "epochs": args.epochs, "batch_size": 4},
              "dtype": resolve_dtype(ModelConfig()), "datasets": {}}

    # Results measured another way (another subsample or recipe) stay beside this study, untouched.
    others = _studies(args.out / "quality.json")
    mine = [s for s in others if _kind(s) == _kind(result)]
    others = [s for s in others if _kind(s) != _kind(result)]
    earlier = mine[0]["datasets"] if mine else {}
    result["datasets"] = {n: dict(r) for n, r in earlier.items()}
    if mine:
        result["majority"] = mine[0].get("majority", {})

    def write() -> str:
        studies = _in_order([result, *others])
        md = tables(studies)
        save("quality", args.out, {"benchmark": "quality", "studies": studies}, md)
        return md

    def save_partial(name: str, done: dict) -> None:
        # After every method: a run cut short keeps what it finished (and a rerun reuses its rounds).
        result["datasets"].setdefault(name, {}).update(done)
        result["seconds"] = round(time.perf_counter() - t0, 1)
        write()

    for name in args.datasets:
        run_dataset(args.data, name, args.methods, args.limit, args.runs, args.seed, args.max_new_tokens,
                    save_partial, args.report_only, earlier.get(name), args.model, args.lr, args.epochs)
    if not result["datasets"]:
        p.error(f"no results in {args.out} and no finished round under {args.runs} for these datasets and methods")
    result["majority"] = {**result.get("majority", {}),
                          **{n: majority_baseline(args.data, n, args.limit, args.seed) for n in result["datasets"]
                             if (args.data / n / "labeled.csv").is_file()}}
    result["paired"] = {n: paired(r, result["majority"].get(n)) for n, r in result["datasets"].items()}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    write()
    plots(_in_order([result, *others]), args.out)
    md = table(result)
    print(md)
    sv = {n: r["semievol"] for n, r in result["datasets"].items() if "semievol" in r}
    print("summary: " + "; ".join(f"{n} vanilla {_pct(s['vanilla']['accuracy'])} -> SFT {_pct(s['sft']['accuracy'])}"
                                  f" -> SemiEvol {_pct(s['evolved']['accuracy'])}" for n, s in sv.items())
          + f" ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The round's summary: metrics.json and the markdown round card."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .answers import is_correct
from .context import RoundContext
from .store import read_json, write_json, write_text


def pseudo_label_accuracy(ctx: RoundContext) -> dict | None:
    """Against the unlabeled file's gold answers, when it has them: a report, never an input to the method."""
    unlabeled = ctx.splits["unlabeled"]
    if not unlabeled.has_gold() or not ctx.rd.pseudo_labels.exists():
        return None
    pl = pd.read_parquet(ctx.rd.pseudo_labels)
    gold = {r.id: r.answer for r in unlabeled.records}
    ok = [is_correct(a, gold[i], ctx.task) for i, a in zip(pl["id"], pl["answer"])]
    out = {"all": {"n": len(ok), "accuracy": sum(ok) / len(ok) if ok else None}}
    if "selected" in pl:
        sel = [o for o, s in zip(ok, pl["selected"]) if s]
        out["selected"] = {"n": len(sel), "accuracy": sum(sel) / len(sel) if sel else None}
    return out


def _opt(path: Path):
    return read_json(path) if path.exists() else None


def write(ctx: RoundContext) -> list[Path]:
    rd = ctx.rd
    manifest = rd.read_manifest()
    metrics = {
        "round": rd.root.name,
        "counts": {k: len(v) for k, v in ctx.splits.items()},
        "justify": _opt(rd.justify_summary),
        "selection": _opt(rd.selection),
        "pseudo_label_accuracy": pseudo_label_accuracy(ctx),
        "evaluation": _opt(rd.evaluation),
        "seconds": {k: v["seconds"] for k, v in manifest["phases"].items()},
        "cached": {k: v.get("from_round") for k, v in manifest["phases"].items() if v.get("cached")},
    }
    write_json(rd.metrics, metrics)
    return [rd.metrics, write_text(rd.card, card(ctx, metrics))]


PHASE_ORDER = ("warm_up", "retrieve", "collaborate", "justify", "select", "evolve", "evaluate")


def _pct(x):
    return "-" if x is None else f"{100 * x:.1f}%"


def card(ctx: RoundContext, metrics: dict) -> str:
    cfg, m = ctx.cfg, ctx.cfg.method
    j, s, ev, pa = metrics["justify"] or {}, metrics["selection"] or {}, metrics["evaluation"] or {}, \
        metrics["pseudo_label_accuracy"]
    lines = [f"# SemiEvol round `{metrics['round']}`", "",
             f"Model `{cfg.model.base}`, task `{cfg.data.task}`; n={m.n}, k={m.k}, theta={m.theta}, "
             f"temperature={m.temperature}, seed={m.seed}; warm-up={m.warmup}, retrieval={m.retrieval}, "
             f"collaboration={m.collaboration}, selection={m.selection}.", "",
             "| data | rows |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in metrics["counts"].items()]
    lines += ["", "| step | count |", "|---|---|",
              f"| unlabeled records | {j.get('records', '-')} |",
              f"| all configurations agreed | {j.get('agreed', '-')} ({_pct(j.get('agreement_rate'))}) |",
              f"| self-justified | {j.get('justified', '-')} |",
              f"| dropped (no answer) | {j.get('dropped_no_answer', '-')} |",
              f"| pseudo-labeled | {s.get('pool', '-')} |",
              f"| selected (NLL <= tau) | {s.get('selected', '-')} |",
              f"| tau | {'-' if s.get('tau') is None else round(s['tau'], 4)} |"]
    if ev:
        lines += ["", "| model | test accuracy | no answer extracted |", "|---|---|---|"]
        lines += [f"| {k} | {_pct(ev[k]['accuracy'])} | {_pct(ev[k]['extraction_failure_rate'])} |"
                  for k in ("base", "warm", "evolved") if k in ev]
    if pa:
        lines += ["", "Pseudo-label accuracy against the unlabeled file's gold answers (report only): "
                  f"all {_pct(pa['all']['accuracy'])} (n={pa['all']['n']})"
                  + (f", selected {_pct(pa['selected']['accuracy'])} (n={pa['selected']['n']})"
                     if "selected" in pa else "") + "."]
    notes = [f"{role}: {n}" for role, d in ctx.splits.items() for n in d.notes]
    if notes:
        lines += ["", "Data notes: " + "; ".join(notes) + "."]
    lines += ["", "| phase | seconds |", "|---|---|"]
    cached = metrics.get("cached") or {}
    lines += [f"| {k} | {metrics['seconds'][k]} |" if k not in cached else f"| {k} | cached (round {cached[k]}) |"
              for k in PHASE_ORDER if k in metrics["seconds"]]
    return "\n".join(lines) + "\n"

"""The round's summary: metrics.json, the markdown round card and its charts (PNG files beside it, which the
card links by relative name: the NLL histogram of the pseudo-labels and the test accuracy of each model)."""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from .answers import is_correct
from .context import Phase, RoundContext
from .evaluate import evolved_vs_warm, verdict
from .store import atomic_path, read_json, write_json, write_text

NLL_HISTOGRAM, ACCURACY_CHART = "nll_histogram.png", "accuracy.png"


def pseudo_label_accuracy(ctx: RoundContext) -> dict | None:
    """Against the unlabeled file's gold answers, when it has them: a report, never an input to the method."""
    unlabeled = ctx.splits["unlabeled"]
    if not unlabeled.has_gold() or not ctx.rd.pseudo_labels.exists():
        return None
    pl = pd.read_parquet(ctx.rd.pseudo_labels)
    ok = _correct(ctx, pl)
    out = {"all": {"n": len(ok), "accuracy": sum(ok) / len(ok) if ok else None}}
    if "selected" in pl:
        sel = [o for o, s in zip(ok, pl["selected"]) if s]
        out["selected"] = {"n": len(sel), "accuracy": sum(sel) / len(sel) if sel else None}
    return out


def _correct(ctx: RoundContext, pl: pd.DataFrame) -> list[bool]:
    gold = {r.id: r.answer for r in ctx.splits["unlabeled"].records}
    return [is_correct(a, gold.get(i), ctx.task) for i, a in zip(pl["id"], pl["answer"])]


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
        "evolved_vs_warm": evolved_vs_warm(pd.read_parquet(rd.predictions), ctx.task)
        if rd.predictions.exists() else None,
        "seconds": {k: v["seconds"] for k, v in manifest["phases"].items()},
        "cached": {k: v.get("from_round") for k, v in manifest["phases"].items() if v.get("cached")},
    }
    write_json(rd.metrics, metrics)
    charts = {NLL_HISTOGRAM: nll_histogram(ctx), ACCURACY_CHART: accuracy_chart(rd.root, metrics["evaluation"])}
    for name, path in charts.items():
        if path is None:  # a round name run again must not show an earlier run's chart
            (rd.root / name).unlink(missing_ok=True)
    made = [p for p in charts.values() if p is not None]
    return [rd.metrics, *made, write_text(rd.card, card(ctx, metrics, [p.name for p in made]))]


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path | None = None):
    """PNG bytes of the figure, also written (atomically) to path when given."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    _pyplot().close(fig)
    data = buf.getvalue()
    if path is not None:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    return data


SELECTED, REJECTED, CORRECT, WRONG = "#2a9d8f", "#e76f51", "#457b9d", "#e9c46a"


def nll_histogram(ctx: RoundContext) -> Path | None:
    """Mean token NLL of each pseudo-label under the warm model: selected vs rejected, and, when the unlabeled
    file has gold answers, correct vs wrong (a report only: the method never sees gold), with tau marked."""
    rd = ctx.rd
    if not rd.pseudo_labels.exists():
        return None
    pl = pd.read_parquet(rd.pseudo_labels)
    if pl.empty or "nll" not in pl:
        return None
    plt = _pyplot()
    gold = ctx.splits["unlabeled"].has_gold()
    fig, axes = plt.subplots(1, 2 if gold else 1, figsize=(10 if gold else 6, 3.6), sharey=True, squeeze=False)
    nll, sel = pl["nll"].astype(float), pl["selected"].astype(bool)
    lo, hi = float(nll.min()), float(nll.max())
    bins = [lo + (hi - lo) * i / 20 for i in range(21)] if hi > lo else 10
    tau = (_opt(rd.selection) or {}).get("tau")
    if tau is None and sel.any() and not sel.all():
        tau = float(nll[sel].max())
    panels = [("selected vs rejected", [nll[sel], nll[~sel]], [f"selected ({int(sel.sum())})",
                                                             f"rejected ({int((~sel).sum())})"], [SELECTED, REJECTED])]
    if gold:
        ok = pd.Series(_correct(ctx, pl), index=pl.index)
        panels.append(("correct vs wrong (gold, report only)", [nll[ok], nll[~ok]],
                       [f"correct ({int(ok.sum())})", f"wrong ({int((~ok).sum())})"], [CORRECT, WRONG]))
    for ax, (title, data, labels, colors) in zip(axes[0], panels):
        ax.hist(data, bins=bins, stacked=True, label=labels, color=colors)
        if tau is not None:
            ax.axvline(tau, color="black", linestyle="--", label=f"tau {tau:.3f}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("mean token NLL under the warm model")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("pseudo-labels")
    fig.suptitle(f"NLL of the pseudo-labels, round {rd.root.name}", fontsize=11)
    fig.tight_layout()
    out = rd.root / NLL_HISTOGRAM
    _save(fig, out)
    return out


def accuracy_chart(root: Path, evaluation: dict | None) -> Path | None:
    """Test accuracy of base, warm and evolved, one bar each."""
    ev = evaluation or {}
    names = [k for k in ("base", "warm", "evolved") if k in ev]
    if not names:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    acc = [100 * (ev[k]["accuracy"] or 0) for k in names]
    colors = {"base": "#adb5bd", "warm": "#457b9d", "evolved": "#2a9d8f"}
    bars = ax.bar(names, acc, color=[colors[k] for k in names])
    for bar, a in zip(bars, acc):
        ax.annotate(f"{a:.1f}%", (bar.get_x() + bar.get_width() / 2, a), ha="center", va="bottom", fontsize=9)
    ax.set_ylim(0, 105)
    ax.set_ylabel("test accuracy (%)")
    n = ev[names[0]].get("n")
    ax.set_title(f"test accuracy, round {root.name}" + (f" (n={n})" if n else ""), fontsize=10)
    fig.tight_layout()
    out = root / ACCURACY_CHART
    _save(fig, out)
    return out


def history_chart(rows: list[dict], title: str) -> bytes:
    """An evolution's runs, oldest first: evolved accuracy (a filled dot where it was promoted, a cross where it
    was not) against the incumbent's, and the rows each run took, pseudo-labeled and selected."""
    plt = _pyplot()
    n = len(rows)
    x = list(range(1, n + 1))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6.0, min(14.0, 1.5 + 0.5 * n)), 5.6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})

    def pct(v):
        return None if v is None else 100 * v

    evolved = [pct(r.get("evolved_accuracy")) for r in rows]
    incumbent = [pct(r.get("incumbent_accuracy")) for r in rows]
    top.plot(x, [float("nan") if v is None else v for v in evolved], color="#2a9d8f", label="evolved")
    top.plot(x, [float("nan") if v is None else v for v in incumbent], linestyle="none", marker="_",
             markersize=22, markeredgewidth=2, color="#6c757d", label="incumbent before the run")
    promoted = [(i, v) for i, v, r in zip(x, evolved, rows) if v is not None and r.get("promoted")]
    refused = [(i, v) for i, v, r in zip(x, evolved, rows) if v is not None and not r.get("promoted")]
    if promoted:
        top.scatter(*zip(*promoted), color="#2a9d8f", s=40, zorder=3, label="promoted")
    if refused:
        top.scatter(*zip(*refused), color="#e76f51", marker="x", s=50, zorder=3, label="not promoted")
    top.set_ylim(0, 125)
    top.set_yticks([0, 20, 40, 60, 80, 100])
    top.set_ylabel("test accuracy (%)")
    top.legend(fontsize=7, loc="upper center", ncol=4)
    top.set_title(title, fontsize=11)
    width = 0.27
    bars = (("new_rows", "new rows", "#adb5bd"), ("pool", "pseudo-labeled", "#457b9d"),
            ("selected", "selected", "#2a9d8f"))
    for k, (key, label, color) in enumerate(bars):
        bottom.bar([i + (k - 1) * width for i in x], [r.get(key) or 0 for r in rows], width=width, label=label,
                   color=color)
    bottom.set_ylim(0, 1.4 * max([1] + [r.get(k) or 0 for r in rows for k, _, _ in bars]))
    bottom.set_ylabel("rows")
    bottom.legend(fontsize=7, loc="upper center", ncol=3)
    step = max(1, n // 12)
    bottom.set_xticks(x[::step])
    bottom.set_xticklabels([str(r.get("date", ""))[:16].replace("T", " ") for r in rows][::step], rotation=30,
                           ha="right", fontsize=8)
    fig.tight_layout()
    return _save(fig)


PHASE_ORDER = ("warm_up", "retrieve", "collaborate", "justify", "select", "evolve", "evaluate")


def _pct(x):
    return "-" if x is None else f"{100 * x:.1f}%"


def difference_line(d: dict) -> str:
    lo, hi = d["ci95"]
    return (f"{100 * d['difference']:+.1f} points on {d['n']} test items, 95% paired bootstrap interval "
            f"[{100 * lo:+.1f}, {100 * hi:+.1f}]: {verdict(d)}")


def _selection_rule(m) -> str:
    if not m.selection:
        return "off (every pseudo-label kept)"
    if m.selection_scope == "pool":
        rule = f"NLL at or below the {m.theta:g}th percentile of the pool (the paper's rule)"
    else:
        rule = f"NLL at or below the {m.theta:g}th percentile within each pseudo-labeled class"
    return rule + (", and every record all configurations agreed on" if m.keep_agreed else "")


def _classes(counts: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) or "none"


def card(ctx: RoundContext, metrics: dict, charts: list[str] = ()) -> str:
    """The round card in markdown; `charts` are PNG files in the round directory, linked by relative name."""
    cfg, m = ctx.cfg, ctx.cfg.method
    j, s, ev, pa = metrics["justify"] or {}, metrics["selection"] or {}, metrics["evaluation"] or {}, \
        metrics["pseudo_label_accuracy"]
    lines = [f"# SemiEvol round `{metrics['round']}`", "",
             f"Model `{cfg.model.base}`, task `{cfg.data.task}`; n={m.n}, k={m.k}, theta={m.theta}, "
             f"temperature={m.temperature}, seed={m.seed}; warm-up={m.warmup}, retrieval={m.retrieval}, "
             f"collaboration={m.collaboration}, selection={m.selection}; self-justify prompt {m.justify_prompt}, "
             f"temperature {m.justify_temperature}.", "",
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
    lines += ["", f"Selection: {_selection_rule(m)}" + (
        f"; pool per class {_classes(s['pool_per_class'])}, selected per class {_classes(s['selected_per_class'])}"
        if s.get("pool_per_class") is not None else "") + (
        f"; {s['kept_by_agreement']} kept by the agreement gate alone" if "kept_by_agreement" in s else "") + "."]
    if ev:
        lines += ["", "| model | test accuracy | no answer extracted |", "|---|---|---|"]
        lines += [f"| {k} | {_pct(ev[k]['accuracy'])} | {_pct(ev[k]['extraction_failure_rate'])} |"
                  for k in ("base", "warm", "evolved") if k in ev]
    d = metrics.get("evolved_vs_warm")
    if d:
        lines += ["", f"Evolved minus warm: {difference_line(d)}."]
    if pa:
        lines += ["", "Pseudo-label accuracy against the unlabeled file's gold answers (report only): "
                  f"all {_pct(pa['all']['accuracy'])} (n={pa['all']['n']})"
                  + (f", selected {_pct(pa['selected']['accuracy'])} (n={pa['selected']['n']})"
                     if "selected" in pa else "") + "."]
    notes = [f"{role}: {n}" for role, d in ctx.splits.items() for n in d.notes]
    if notes:
        lines += ["", "Data notes: " + "; ".join(notes) + "."]
    alts = {NLL_HISTOGRAM: "NLL histogram of the pseudo-labels",
            ACCURACY_CHART: "test accuracy of base, warm and evolved"}
    for f in charts:
        lines += ["", f"![{alts.get(f, f)}]({f})"]
    lines += ["", "| phase | seconds |", "|---|---|"]
    cached = metrics.get("cached") or {}
    lines += [f"| {k} | {metrics['seconds'][k]} |" if k not in cached else f"| {k} | cached (round {cached[k]}) |"
              for k in PHASE_ORDER if k in metrics["seconds"]]
    return "\n".join(lines) + "\n"


# Not cached (it runs in the flow itself, in seconds); declared like the others all the same.
REPORT = Phase("report", write, splits=("labeled", "unlabeled", "test"),
               upstream=("retrieve", "collaborate", "justify", "select", "evaluate"), outputs=("metrics", "card"),
               reads=("name", "data", "model", "method", "lora", "backend", "progress"))

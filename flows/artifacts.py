"""What a round shows in the Prefect UI: the round card, a metrics table with a stable key (one version
per round), and a link to the NLL ('entropy') histogram saved in the round directory."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from semievol_core.store import RoundDir, atomic_path

CARD_KEY, TABLE_KEY, HISTOGRAM_KEY = "semievol-round-card", "semievol-metrics", "semievol-nll-histogram"


def nll_histogram(rd: RoundDir) -> Path | None:
    """NLL of the pseudo-labels, selected vs rejected, with tau; correct vs wrong when gold exists is in the
    benchmark, not here (a round must not need gold)."""
    if not rd.pseudo_labels.exists():
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pl = pd.read_parquet(rd.pseudo_labels)
    if pl.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = 20
    ax.hist([pl.loc[pl["selected"], "nll"], pl.loc[~pl["selected"], "nll"]], bins=bins, stacked=True,
            label=["selected", "rejected"], color=["#2a9d8f", "#e76f51"])
    tau = pl.loc[pl["selected"], "nll"].max() if pl["selected"].any() else None
    if tau is not None and not pl["selected"].all():
        ax.axvline(tau, color="black", linestyle="--", label="tau")
    ax.set_xlabel("mean token NLL under the warm model")
    ax.set_ylabel("pseudo-labels")
    ax.legend()
    fig.tight_layout()
    out = rd.root / "nll_histogram.png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out


def publish(rd: RoundDir, metrics: dict) -> None:
    hist = nll_histogram(rd)
    card = rd.card.read_text(encoding="utf-8")
    if hist is not None:
        card += f"\nNLL histogram: [{hist.name}]({hist.resolve().as_uri()})\n"
        create_link_artifact(hist.resolve().as_uri(), link_text=f"NLL histogram of {rd.root.name}",
                             key=HISTOGRAM_KEY, description="pseudo-label NLL, selected vs rejected")
    card += f"\nRound directory: `{rd.root.resolve()}`\n"
    create_markdown_artifact(card, key=CARD_KEY, description=f"SemiEvol round {rd.root.name}")
    rows = [{"round": rd.root.name, "model": name, "accuracy": round(v["accuracy"], 4),
             "extraction_failure_rate": round(v["extraction_failure_rate"], 4), "n": v["n"]}
            for name, v in (metrics.get("evaluation") or {}).items()]
    sel, just = metrics.get("selection") or {}, metrics.get("justify") or {}
    rows.append({"round": rd.root.name, "model": "pseudo-labels", "accuracy": _acc(metrics),
                 "extraction_failure_rate": None, "n": sel.get("pool"),
                 "agreement_rate": just.get("agreement_rate"), "tau": sel.get("tau"),
                 "selected": sel.get("selected")})
    create_table_artifact(rows, key=TABLE_KEY, description=f"SemiEvol metrics, round {rd.root.name}")


def _acc(metrics: dict):
    pa = metrics.get("pseudo_label_accuracy")
    return None if not pa else pa["all"]["accuracy"]

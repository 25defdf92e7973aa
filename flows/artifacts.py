"""What a round and an evolution show in the Prefect UI.

A round: the round card (markdown), a metrics table with a stable key (one version per round) and the NLL
histogram. An evolution: its history, one row per round run, under a key of its own per evolution name.

Charts are PNG images inlined in the markdown as data: URIs. That is what the Prefect UI (3.7) renders as an
image: its markdown renderer turns `![alt](src)` into an <img> with that src, so a data: URI shows in any
browser that opens the UI, while a file:// link to the worker's disk does not open from the UI, and inline
SVG loses its styles to the UI's HTML sanitizer (tried in headless Chromium: it renders as a black box)."""
from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from semievol_core import report
from semievol_core.store import RoundDir

CARD_KEY, TABLE_KEY, HISTOGRAM_KEY = "semievol-round-card", "semievol-metrics", "semievol-nll-histogram"
HISTORY_PREFIX = "semievol-history-"
HISTORY_TABLE_ROWS = 50  # the chart shows every run; the table the latest ones

_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+\.png)\)")


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def inline_images(markdown: str, root: Path) -> str:
    """Replaces each image linked by a relative name of a PNG file under root with the image itself."""
    def swap(m: re.Match) -> str:
        path = root / m.group(2)
        if "://" in m.group(2) or not path.is_file():
            return m.group(0)
        return f"![{m.group(1)}]({data_uri(path.read_bytes())})"
    return _IMAGE.sub(swap, markdown)


def publish(rd: RoundDir, metrics: dict) -> None:
    card = inline_images(rd.card.read_text(encoding="utf-8"), rd.root)
    card += f"\nRound directory: `{rd.root.resolve()}`\n"
    create_markdown_artifact(card, key=CARD_KEY, description=f"SemiEvol round {rd.root.name}")
    hist = rd.root / report.NLL_HISTOGRAM
    if hist.is_file():
        create_markdown_artifact(
            f"# NLL of the pseudo-labels, round `{rd.root.name}`\n\n"
            f"![NLL histogram of the pseudo-labels]({data_uri(hist.read_bytes())})\n",
            key=HISTOGRAM_KEY, description="pseudo-label NLL: selected vs rejected, correct vs wrong with gold")
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


def history_key(name: str) -> str:
    """The evolution history's artifact key: stable per evolution name, in what Prefect allows in a key
    (lowercase letters, digits, dashes). A name that had to change gets a short hash of itself, so that
    `Nightly` and `nightly` keep histories of their own."""
    slug = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", name.lower())).strip("-")
    if slug != name:
        slug = f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}".strip("-")
    return HISTORY_PREFIX + slug


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def history_markdown(name: str, rows: list[dict], chart: bytes | None) -> str:
    modes = sorted({str(r.get("mode")) for r in rows if r.get("mode")})
    lines = [f"# SemiEvol evolution `{name}`", "",
             f"{len(rows)} round run(s) ({', '.join(modes) or '-'}); the chart shows every one, oldest first, "
             "the table the newest first.", ""]
    if chart:
        lines += [f"![history of evolution {name}]({data_uri(chart)})", ""]
    shown = rows[-HISTORY_TABLE_ROWS:][::-1]
    if len(rows) > len(shown):
        lines += [f"The table shows the latest {len(shown)}; `history.json` in the evolution's directory has all.",
                  ""]
    lines += ["| date (UTC) | round | new rows | pool | selected | evolved | incumbent | promoted |",
              "|---|---|---|---|---|---|---|---|"]
    for r in shown:
        lines.append(f"| {str(r.get('date', '-'))[:16].replace('T', ' ')} | `{r.get('round')}` "
                     f"| {r.get('new_rows', '-')} | {r.get('pool', '-')} | {r.get('selected', '-')} "
                     f"| {_pct(r.get('evolved_accuracy'))} | {_pct(r.get('incumbent_accuracy'))} "
                     f"| {'yes' if r.get('promoted') else 'no'} |")
    return "\n".join(lines) + "\n"


def publish_history(name: str, rows: list[dict], chart: bytes | None) -> None:
    create_markdown_artifact(history_markdown(name, rows, chart), key=history_key(name),
                             description=f"SemiEvol evolution {name}: one row per round run")

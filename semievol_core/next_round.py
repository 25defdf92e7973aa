"""Step 7's data: the next round treats labeled + selected as labeled and works on the unselected rest."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .config import Columns
from .data import Dataset, Record
from .store import write_parquet

# The columns every derived split is written with, so rounds can mix original and derived files.
STANDARD = Columns(id="id", question="question", options="options", answer="answer", category="category")


def frame(records: list[Record], answers: dict[str, str] | None = None, prefix: str = "") -> pd.DataFrame:
    """Records in the STANDARD columns; `answers` replaces theirs by id, `prefix` goes before every id."""
    return pd.DataFrame({
        "id": [prefix + r.id for r in records], "question": [r.question for r in records],
        "options": [r.options for r in records],
        "answer": [(answers or {}).get(r.id, r.answer) for r in records],
        "category": [r.category for r in records]})


def next_data(labeled: Dataset, unlabeled: Dataset, round_dir: Path, tag: str) -> tuple[Path, Path | None, int]:
    """labeled + the round's selected pseudo-labeled records (ids prefixed with `tag`:, in the order the
    evolve phase trained on them) and the unselected rest, as next_labeled.parquet and next_unlabeled.parquet
    in round_dir (None when nothing is left); and how many were selected."""
    pl = pd.read_parquet(Path(round_dir) / "pseudo_labels.parquet")
    chosen = dict(zip(pl.loc[pl["selected"], "id"], pl.loc[pl["selected"], "answer"]))
    by_id = unlabeled.by_id()
    new_labeled = pd.concat([frame(labeled.records), frame([by_id[i] for i in chosen], chosen, prefix=f"{tag}:")],
                            ignore_index=True)
    rest = [r for r in unlabeled.records if r.id not in chosen]
    lab = write_parquet(Path(round_dir) / "next_labeled.parquet", new_labeled)
    unl = write_parquet(Path(round_dir) / "next_unlabeled.parquet", frame(rest)) if rest else None
    return lab, unl, len(chosen)

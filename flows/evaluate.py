"""Evaluate any model and adapters on a split: greedy, fixed seed, the round's prompts."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from prefect import flow
from prefect.artifacts import create_table_artifact

from semievol_core.config import RoundConfig
from semievol_core.data import load_splits
from semievol_core.errors import InputError
from semievol_core.evaluate import evaluate_models
from semievol_core.models import resolve_model
from semievol_core.store import write_json, write_parquet


def check_adapters(adapters: dict[str, str | None], allow_pickle: bool) -> None:
    for name, path in adapters.items():
        if path and not (Path(path) / "adapter_config.json").is_file():
            raise InputError(path, None, f"adapters.{name}", "not an adapter directory (no adapter_config.json)")
        if path and not allow_pickle and not (Path(path) / "adapter_model.safetensors").is_file():
            raise InputError(path, None, f"adapters.{name}",
                             "no adapter_model.safetensors (pickle weights load only with model.allow_pickle)")


@flow(name="semievol-evaluate", log_prints=True)
def evaluate(config: RoundConfig, adapters: dict[str, str | None] | None = None,
             split: Literal["test", "labeled", "unlabeled"] = "test", out: str | None = None) -> dict:
    """adapters: name -> adapter directory (None = the base model). Writes eval.json and predictions."""
    adapters = adapters or {"base": None}
    check_adapters(adapters, config.model.allow_pickle)
    splits = load_splits(config.data)
    if split not in splits:
        raise InputError("config", None, f"data.{split}", "split not given")
    metrics, preds = evaluate_models(config, resolve_model(config.model), splits[split], adapters,
                                     config.method.seed)
    out_dir = Path(out or Path(config.runs_dir) / f"eval-{time.strftime('%Y%m%d-%H%M%S')}")
    write_json(out_dir / "eval.json", metrics)
    write_parquet(out_dir / "eval_predictions.parquet", preds)
    create_table_artifact([{"model": k, **{m: v[m] for m in ("n", "accuracy", "extraction_failure_rate")}}
                           for k, v in metrics.items()], key="semievol-evaluation",
                          description=f"{split} split of {getattr(config.data, split)}")
    return {"out": str(out_dir), "metrics": metrics}

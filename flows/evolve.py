"""Evolution over rounds.

iterative: round after round, labeled := labeled + selected, unlabeled := the rest, until the pool is used
up, the round count is reached, or the evolved model stops gaining on the evaluation split.
continuous: each run takes only the unlabeled rows that arrived since the last run's watermark (the ids
already taken; for a source without an id column, the questions already taken, so that the file may grow or be
replaced by each day's batch), runs a round, and promotes the evolved adapter only if it beats the incumbent.

Both keep a history, one row per round run (`history.json` in the evolution's directory, and a markdown
artifact with its chart under a key of its own per evolution name); a continuous run also tells the rest of
the platform what it decided, with a Prefect event (EVENT_PROMOTED or EVENT_REFUSED) that automations can
react to (deployments/on-promotion.yaml)."""
from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from prefect.events import emit_event
from pydantic import BaseModel, ConfigDict, Field

from semievol_core import report
from semievol_core.config import RoundConfig
from semievol_core.data import Dataset, Record, load_dataset, question_id, question_key
from semievol_core.next_round import STANDARD, frame, next_data
from semievol_core.errors import BusyError
from semievol_core.store import atomic_path, exclusive, read_json, write_json, write_parquet

from flows.artifacts import history_key, publish_history
from flows.round import semievol_round

EVENT_PROMOTED, EVENT_REFUSED = "semievol.adapter.promoted", "semievol.adapter.promotion-refused"


class EvolveParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    round: RoundConfig = Field(..., description="the first round's config; later rounds change only the data")
    mode: Literal["iterative", "continuous"] = "iterative"
    max_rounds: int = Field(3, ge=1, le=100, description="iterative: most rounds to run")
    min_gain: float = Field(0.0, ge=0, le=1, description="iterative: stop unless evolved accuracy gains more; "
                            "continuous: promote only if it beats the incumbent by more")
    name: str = Field("evolve", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                      description="directory under runs_dir that keeps the state, rounds and the promoted adapter")
    secret_env: dict[str, str] | None = Field(None, description="environment variables set from Prefect Secret "
                                              "blocks for each round, e.g. {\"HF_TOKEN\": \"hf-token\"}")
    gpu_deployment: str | None = Field(None, description="run each round's GPU phases as runs of this "
                                                         "deployment, e.g. semievol-phase/gpu")


def _with_data(cfg: RoundConfig, name: str, **data) -> RoundConfig:
    return cfg.model_copy(update={"name": name, "data": cfg.data.model_copy(update=data)})


def _normalize(cfg: RoundConfig, home: Path) -> RoundConfig:
    """Copies every split into the standard columns once, so rounds can mix original and derived files."""
    out = {}
    for role in ("labeled", "unlabeled", "test"):
        source = getattr(cfg.data, role)
        if source:
            ds = _load(cfg, source, role != "unlabeled")
            out[role] = str(write_parquet(home / "data" / f"{role}.parquet", frame(ds.records)))
    data = cfg.data.model_copy(update={**out, "columns": STANDARD, "limit_labeled": None, "limit_unlabeled": None,
                                       "limit_test": None})
    return cfg.model_copy(update={"data": data})


def arrivals(source: Dataset, taken: set[str]) -> list[Record]:
    """The rows of the unlabeled source no earlier run took. A source with ids is followed by its ids. One
    without is followed by its questions, and its rows take ids made from them: its row numbers would name other
    rows once the file is replaced by a fresh batch. (A watermark written before that, of row numbers, is
    still honoured.) A question twice among the arrivals is taken once."""
    if not source.ids_from_rows:
        return [r for r in source.records if r.id not in taken]
    legacy = any(not t.startswith("q-") for t in taken)
    out, seen = [], set()
    for r in source.records:
        rid = question_id(r)
        if rid in taken or rid in seen or (legacy and r.id in taken):
            continue
        seen.add(rid)
        out.append(dataclasses.replace(r, id=rid))
    return out


def unknown(new: list[Record], known: set[str]) -> tuple[list[Record], list[Record]]:
    """The arrivals worth a round, and the rest: a question already labeled (by the user, or pseudo-labeled by
    an earlier round) or in the test split, or twice among the arrivals. A stream repeats its questions, under
    new ids too; sent on, they would be pseudo-labeled again, leak the test split into training, and a batch
    mostly of them would be refused by the round's overlap check on every run, the stream stuck behind it."""
    keep, skip, seen = [], [], set(known)
    for r in new:
        k = question_key(r)
        (skip if k in seen else keep).append(r)
        seen.add(k)
    return keep, skip


def _evolved_accuracy(metrics: dict) -> float | None:
    ev = metrics.get("evaluation") or {}
    return (ev.get("evolved") or {}).get("accuracy")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _history_row(mode: str, metrics: dict, round_name: str, incumbent: float | None, promoted: bool) -> dict:
    sel = metrics.get("selection") or {}
    return {"date": _now(), "round": round_name, "mode": mode, "new_rows": (metrics.get("counts") or {}).get(
        "unlabeled"), "pool": sel.get("pool"), "selected": sel.get("selected"),
        "evolved_accuracy": _evolved_accuracy(metrics), "incumbent_accuracy": incumbent, "promoted": promoted,
        "round_dir": metrics.get("round_dir")}


def record_history(home: Path, name: str, row: dict) -> list[dict]:
    """Appends one round run to the evolution's history (history.json, its chart history.png) and publishes
    both as the evolution's history artifact, whose key stays the same run after run."""
    path = home / "history.json"
    rows = (read_json(path) if path.exists() else []) + [row]
    write_json(path, rows)
    chart = report.history_chart(rows, f"evolution {name}")
    with atomic_path(home / "history.png") as tmp:
        tmp.write_bytes(chart)
    publish_history(name, rows, chart)
    return rows


def _announce(params: EvolveParams, entry: dict, incumbent: dict | None, reason: str | None) -> None:
    """A Prefect event for the promotion decision, for automations to act on (refresh serving, notify)."""
    promoted = reason is None
    adapter = entry["adapter"]
    payload = {"evolution": params.name, "round": entry["round"], "adapter": adapter,
               "evolved_accuracy": entry["evolved_accuracy"],
               "incumbent_accuracy": None if incumbent is None else incumbent["accuracy"],
               "incumbent_adapter": None if incumbent is None else incumbent["adapter"],
               "incumbent_round": None if incumbent is None else incumbent["round"],
               "min_gain": params.min_gain, "new_rows": entry["new_rows"], "pool": entry["pool"],
               "selected": entry["selected"], "round_dir": entry["round_dir"],
               "history_artifact": history_key(params.name)}
    if promoted:
        payload["promoted_file"] = str(Path(params.round.runs_dir) / params.name / "promoted.json")
    else:
        payload["reason"] = reason
    emit_event(EVENT_PROMOTED if promoted else EVENT_REFUSED,
               resource={"prefect.resource.id": f"semievol.evolution.{params.name}",
                         "prefect.resource.name": params.name, "semievol.adapter": adapter},
               related=[{"prefect.resource.id": f"semievol.round.{entry['round']}", "prefect.resource.role": "round",
                         "prefect.resource.name": entry["round"]}],
               payload=payload)


def _load(cfg: RoundConfig, source: str, answers: bool) -> Dataset:
    """A split as the config maps it, limits applied to the config's own splits only."""
    from semievol_core.data import subsample
    c = cfg.data
    ds = load_dataset(source, c.task, c.columns, c.labels, require_answers=answers)
    for role in ("labeled", "unlabeled", "test"):
        if source == getattr(c, role):
            return subsample(ds, getattr(c, f"limit_{role}"), c.sample_seed)
    return ds


@flow(name="semievol-evolve-iterative", log_prints=True)
def evolve_iterative(params: EvolveParams) -> list[dict]:
    logger = get_run_logger()
    home = Path(params.round.runs_dir) / params.name
    with exclusive(home):
        return _iterate(params, home, logger)


def _iterate(params: EvolveParams, home: Path, logger) -> list[dict]:
    history, best, base = [], None, params.name
    cfg = _normalize(params.round, home)
    for i in range(params.max_rounds):
        metrics = semievol_round(_with_data(cfg, f"{base}-r{i + 1}"), gpu_deployment=params.gpu_deployment,
                                 secret_env=params.secret_env)
        history.append(metrics)
        acc = _evolved_accuracy(metrics)
        logger.info("round %d: evolved accuracy %s", i + 1, acc)
        round_dir = Path(metrics["round_dir"])
        gained = best is None or (acc is not None and acc > best + params.min_gain)
        # "promoted" in iterative mode: the round beat the best earlier round, so the next round builds on it
        record_history(home, params.name, _history_row("iterative", metrics, f"{base}-r{i + 1}", best, gained))
        if not gained:
            logger.info("stopping: no gain over %.4f", best)
            break
        best = acc if acc is not None else best
        labeled = _load(cfg, cfg.data.labeled, True)
        unlabeled = _load(cfg, cfg.data.unlabeled, False)
        lab, unl, n = next_data(labeled, unlabeled, round_dir, f"r{i + 1}")
        if unl is None:
            logger.info("stopping: unlabeled pool used up")
            break
        cfg = _with_data(cfg, cfg.name, labeled=str(lab), unlabeled=str(unl))
    return history


@flow(name="semievol-evolve-continuous", log_prints=True)
def evolve_continuous(params: EvolveParams) -> dict:
    logger = get_run_logger()
    home = Path(params.round.runs_dir) / params.name
    try:
        with exclusive(home):
            return _continue(params, home, logger)
    except BusyError as err:
        # A cron run that overlaps a slow one is not a failure: the rows wait for the next run.
        logger.warning("skipped: %s", err)
        state = read_json(home / "state.json") if (home / "state.json").exists() else {"rounds": [], "incumbent": None}
        return {**state, "skipped": str(err)}


def _continue(params: EvolveParams, home: Path, logger) -> dict:
    state_path = home / "state.json"
    cfg = _normalize(params.round, home) if not state_path.exists() else _with_data(
        params.round, None, columns=STANDARD, test=str(home / "data" / "test.parquet") if params.round.data.test
        else None, limit_labeled=None, limit_test=None)
    state = read_json(state_path) if state_path.exists() else {
        "taken_ids": [], "labeled": cfg.data.labeled, "incumbent": None, "rounds": []}
    # New rows are read from the user's unlabeled source as they map it; everything derived is standard.
    source = _load(params.round, params.round.data.unlabeled, False)
    taken = set(state["taken_ids"])
    labeled = _load(cfg, state["labeled"], True)
    known = {question_key(r) for r in labeled.records}
    if cfg.data.test:
        known |= {question_key(r) for r in _load(cfg, cfg.data.test, True).records}
    new, repeated = unknown(arrivals(source, taken), known)
    if repeated:
        logger.info("%d new rows skipped: questions already labeled, in the test split, or repeated among "
                    "the new rows", len(repeated))
    if not new:
        logger.info("no unlabeled rows since the last round")
        if repeated:  # the watermark moves past them, or every run would weigh them again
            state["taken_ids"] = sorted(taken | {r.id for r in repeated})
            write_json(state_path, state)
        return state
    tag = time.strftime("%Y%m%d-%H%M%S")
    name = f"{params.name}-{tag}"
    batch = write_parquet(home / "batches" / f"{tag}.parquet", frame(new))
    rcfg = _with_data(cfg, name, labeled=state["labeled"], unlabeled=str(batch))
    metrics = semievol_round(rcfg, gpu_deployment=params.gpu_deployment, secret_env=params.secret_env)
    round_dir = Path(metrics["round_dir"])
    lab, _, n = next_data(labeled, _load(rcfg, str(batch), False), round_dir, tag)
    acc = _evolved_accuracy(metrics)
    inc = state["incumbent"]
    if acc is None:
        reason = "the round has no test split to compare adapters on"
    elif inc is not None and acc <= inc["accuracy"] + params.min_gain:
        reason = (f"evolved accuracy {acc:.4f} does not beat the incumbent's {inc['accuracy']:.4f}"
                  + (f" by more than min_gain {params.min_gain:g}" if params.min_gain else ""))
    else:
        reason = None
    promoted = reason is None
    adapter = str(round_dir / "evolved_adapter")
    if promoted:
        state["incumbent"] = {"round": name, "accuracy": acc, "adapter": adapter}
        write_json(home / "promoted.json", state["incumbent"])
    state["taken_ids"] = sorted(taken | {r.id for r in new + repeated})
    state["labeled"] = str(lab)
    row = _history_row("continuous", metrics, name, None if inc is None else inc["accuracy"], promoted)
    entry = {**row, "new_rows": len(new), "selected": n, "adapter": adapter, "round_dir": str(round_dir)}
    state["rounds"].append(entry)
    write_json(state_path, state)  # written last: a crash before here leaves the watermark where it was
    logger.info("round %s: %d new rows, evolved accuracy %s, promoted=%s%s", name, len(new), acc, promoted,
                "" if promoted else f" ({reason})")
    _announce(params, entry, inc, reason)
    record_history(home, params.name, entry)
    return state

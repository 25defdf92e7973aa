"""The round flow: the seven phases as cached, retryable Prefect tasks over one round directory.

A phase's cache hit is only trusted once its files are found and their digest matches; a hit recorded by
another round (same inputs, another directory) is copied in. GPU phases can run on a GPU work pool through
the `semievol-phase` deployment (flows/phase.py) while this flow stays on a CPU worker."""
from __future__ import annotations

import shutil
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.deployments import run_deployment

from semievol_core import report
from semievol_core.config import RoundConfig
from semievol_core.round import manifest, prepare
from semievol_core.store import RoundDir, atomic_path, digest, read_json
from tasks.phases import TASKS, phase_key

from flows.artifacts import publish

GPU_PHASES = {"warm_up", "collaborate", "justify", "select", "evolve", "evaluate"}


def adopt(result: dict, rd: RoundDir) -> bool:
    """Brings a phase's recorded outputs into this round directory and checks their digest."""
    src_root = Path(result["round_dir"])
    try:
        for rel in result["files"]:
            src, dst = src_root / rel, rd.root / rel
            if src.resolve() == dst.resolve():
                continue
            if not src.exists():
                return False
            with atomic_path(dst) as tmp:
                shutil.copytree(src, tmp) if src.is_dir() else shutil.copy2(src, tmp)
        return digest(rd.root, result["files"]) == result["digest"]
    except (FileNotFoundError, NotADirectoryError):
        return False


def _dispatch(phase: str, config: dict, rd: RoundDir, key: str, deployment: str) -> dict:
    """Runs one phase as a flow run on the GPU work pool; the round directory must be shared storage."""
    run = run_deployment(deployment, parameters={"phase": phase, "config": config, "round_dir": str(rd.root),
                                                 "key": key}, as_subflow=True)
    if not run.state.is_completed():
        raise RuntimeError(f"phase {phase} on {deployment} ended {run.state.name}: {run.state.message}")
    return run.state.result()


def run_task(phase: str, config: dict, rd: RoundDir, key: str, gpu_deployment: str | None = None) -> str:
    logger = get_run_logger()
    if gpu_deployment and phase in GPU_PHASES:
        result = _dispatch(phase, config, rd, key, gpu_deployment)
        cached = False
    else:
        state = TASKS[phase](config, str(rd.root), key, return_state=True)
        result, cached = state.result(), state.name == "Cached"
    if not adopt(result, rd):
        logger.warning("phase %s: cached outputs missing or changed; recomputing", phase)
        result, cached = TASKS[phase].with_options(refresh_cache=True)(config, str(rd.root), key), False
        if not adopt(result, rd):
            raise RuntimeError(f"phase {phase}: outputs do not match their digest after a fresh run")
    if cached:
        rd.record_phase(phase, 0.0, [rd.root / f for f in result["files"]], cached=True,
                        from_round=Path(result["round_dir"]).name)
    return result["digest"]


@flow(name="semievol-round", log_prints=True)
def semievol_round(config: RoundConfig, gpu_deployment: str | None = None) -> dict:
    """One SemiEvol round: warm-up, retrieval, collaborative inference, self-justify, selection, evolve,
    evaluate. Returns the round's metrics (also in runs/<round>/metrics.json)."""
    logger = get_run_logger()
    ctx = prepare(config)  # validation first: a bad input fails here and writes nothing
    ctx.rd.create(manifest(ctx))
    logger.info("round directory %s", ctx.rd.root)
    cfg = config.model_dump(mode="json")
    fps = {k: v.fingerprint for k, v in ctx.splits.items()}
    digests: dict[str, str] = {}
    for phase in TASKS:
        digests[phase] = run_task(phase, cfg, ctx.rd, phase_key(phase, cfg, fps, digests), gpu_deployment)
    report.write(ctx)
    metrics = read_json(ctx.rd.metrics)
    publish(ctx.rd, metrics)
    metrics["round_dir"] = str(ctx.rd.root.resolve())
    return metrics

"""The round flow: the seven phases as cached, retryable Prefect tasks over one round directory.

A phase's cache hit is only trusted once its files are found and their digest matches; a hit recorded by
another round (same inputs, another directory) is copied in. GPU phases can run on a GPU work pool through
the `semievol-phase` deployment (flows/phase.py) while this flow stays on a CPU worker."""
from __future__ import annotations

import shutil
from pathlib import Path

from prefect import flow, get_run_logger, tags

from semievol_core import report
from semievol_core.config import RoundConfig, absolute_paths
from semievol_core.errors import InputError
from semievol_core.round import manifest, prepare
from semievol_core.store import RoundDir, atomic_path, digest, read_json
from tasks.dispatch import Job, run_watched
from tasks.phases import SHARDED, TASKS, phase_key

from flows.artifacts import publish
from flows.secrets import apply_secret_env

# Embedding a large unlabeled pool is GPU work too (1M rows: an hour on 2 CPU cores, all of it in the embedder).
GPU_PHASES = {"warm_up", "retrieve", "collaborate", "justify", "select", "evolve", "evaluate"}
GPU_TAG = "gpu"  # the tag concurrency limit of GPU phases that run inside the orchestrator's own process


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


def _dispatch(phase: str, config: dict, rd: RoundDir, key: str, deployment: str,
              secret_env: dict[str, str] | None) -> dict:
    """Runs one phase as a watched flow run on the GPU work pool (tasks/dispatch.py). The round directory is
    storage both workers read, so the phase's record is rebuilt from its manifest entry there, never read back
    from Prefect results (those live in the other worker's result storage)."""
    backend = config["backend"]
    job = Job(f"{rd.root.name}-{phase.replace('_', '-')}", {"phase": phase, "config": config,
                                                             "round_dir": str(rd.root), "key": key,
                                                             "secret_env": secret_env})
    run_watched([job], deployment, backend["dispatch_attempts"], backend["gpu_timeout_s"])
    entry = rd.read_manifest()["phases"].get(phase)
    if entry is None:
        raise RuntimeError(f"phase {phase} on {deployment} completed but recorded nothing in {rd.manifest}")
    return {"phase": phase, "round_dir": str(rd.root), "files": entry["outputs"],
            "digest": digest(rd.root, entry["outputs"])}


def run_task(phase: str, config: dict, rd: RoundDir, key: str, gpu_deployment: str | None = None,
             secret_env: dict[str, str] | None = None, on_gpu_pool: bool = False) -> str:
    """Runs (or reuses) one phase and leaves its checked outputs and manifest entry in `rd`.

    Where GPU slots are counted: a phase sent to the GPU pool is counted by the pool (its concurrency limit and
    each worker's --limit: one flow run per GPU), so nothing is held while a run waits in its queue, and a
    sharded phase's parent runs here holding nothing while its shards run. Only a GPU phase computed in this
    process (no GPU pool) takes the `gpu` tag's slot, for as long as it computes."""
    logger = get_run_logger()
    sharded = bool(gpu_deployment) and phase in SHARDED and config["backend"]["shards"] > 1
    if gpu_deployment and phase in GPU_PHASES and not sharded:
        result = _dispatch(phase, config, rd, key, gpu_deployment, secret_env)
        cached = False
    else:
        # A sharded phase runs here: its task sends the shards to the GPU pool, then merges their chunks.
        computes = phase in GPU_PHASES and not sharded
        t = TASKS[phase].with_options(timeout_seconds=config["backend"]["gpu_timeout_s"]) if computes \
            else TASKS[phase]
        with tags(*([GPU_TAG] if computes and not on_gpu_pool else [])):
            state = t(config, str(rd.root), key, gpu_deployment if sharded else None, secret_env,
                      return_state=True)
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
def semievol_round(config: RoundConfig, gpu_deployment: str | None = None,
                   secret_env: dict[str, str] | None = None) -> dict:
    """One SemiEvol round: warm-up, retrieval, collaborative inference, self-justify, selection, evolve,
    evaluate. Returns the round's metrics (also in runs/<round>/metrics.json).

    gpu_deployment: run the GPU phases as runs of this deployment (e.g. semievol-phase/gpu).
    secret_env: environment variables to set from Prefect Secret blocks, e.g. {"HF_TOKEN": "hf-token"}."""
    if config.backend.shards > 1 and not gpu_deployment:
        raise InputError("config", None, "backend.shards",
                         "shards > 1 needs gpu_deployment, the deployment whose work pool runs the shards")
    logger = get_run_logger()
    apply_secret_env(secret_env)
    if gpu_deployment:
        # The phases run in a worker's process, maybe in a container: a path relative to this process's working
        # directory would name something else there, or nothing.
        config = absolute_paths(config)
    ctx = prepare(config)  # validation first: a bad input fails here and writes nothing
    with ctx.rd.lock():  # a second run of the same round name fails here instead of clobbering this one
        ctx.rd.create(manifest(ctx))
        logger.info("round directory %s", ctx.rd.root)
        cfg = config.model_dump(mode="json")
        fps = {k: v.fingerprint for k, v in ctx.splits.items()}
        digests: dict[str, str] = {}
        for phase in TASKS:
            digests[phase] = run_task(phase, cfg, ctx.rd, phase_key(phase, cfg, fps, digests), gpu_deployment,
                                      secret_env)
        report.write(ctx)
        metrics = read_json(ctx.rd.metrics)
        publish(ctx.rd, metrics)
    metrics["round_dir"] = str(ctx.rd.root.resolve())
    return metrics

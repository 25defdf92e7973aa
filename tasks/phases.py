"""One Prefect task per phase. A task's result is a small record of paths and a content digest, never the
data; the cache key comes from content (data fingerprints, the config sections the phase reads, the model,
upstream digests, the library's code) plus the task's own source."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE, TASK_SOURCE, CachePolicy

from semievol_core import collaborate, progress, remote, select, shards
from semievol_core.config import RoundConfig
from semievol_core.context import RoundContext
from semievol_core.data import load_splits
from semievol_core.models import cache_dir, resolve_model
from semievol_core.round import PHASES
from semievol_core.store import RoundDir, code_version, digest

from tasks.retry import GPU_TASK, halvings, is_oom, note_oom
from tasks.shards import fan_out, write_record

SPECS = {p.name: p for p in PHASES}
PHASE_FNS = {p.name: p.run for p in PHASES}
# Config fields that change where or how a phase runs but never its result, so they stay out of every cache key:
# sharding is proven to give the unsharded result (tests/prefect/test_shards.py), and progress bars, re-dispatch,
# time limits and where trainings are kept for reuse (runs_dir, semievol_core/trainings.py) do not touch the
# numbers.
NOT_IN_KEY = ("progress", "runs_dir", "backend.shards", "backend.shard_storage", "backend.dispatch_attempts",
              "backend.gpu_timeout_s")
# The phases a sharded round spreads over the GPU pool: their chunk plans, one shard's work, where the chunks go.
SHARDED = {"collaborate": (collaborate.chunk_plan, collaborate.infer_shard, collaborate.CHUNK_DIR),
           "select": (select.chunk_plan, select.score_shard, select.CHUNK_DIR)}
# What a shard run reads from the round directory (pushed to backend.shard_storage when that is set).
SHARD_INPUTS = {"collaborate": ["warm_adapter", "retrieval/neighbors.parquet"],
                "select": ["warm_adapter", "justified.parquet"]}



def result_storage() -> Path | str:
    """Where the phases' Prefect results (their path records, hence their cache hits) are kept, from
    SEMIEVOL_RESULTS:
    - unset: the local directory $SEMIEVOL_CACHE/prefect-results, or, where Prefect's own
      PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK is set, that block;
    - a directory; `file:///mnt/x` is the directory /mnt/x (a mount every worker shares);
    - any other fsspec URL (`s3://bucket/prefix` with s3fs installed, `gs://...`, `az://...`): kept as a
      Prefect RemoteFileSystem block named `semievol-results-<hash of the URL>`, saved on the server here;
    - `block:<block type>/<block name>`: a storage block already saved on the server, e.g.
      `block:s3-bucket/semievol-results` or `block:local-file-system/shared-results`.
    A phase recorded by one worker is a cache hit on every worker whose SEMIEVOL_RESULTS names the same place."""
    import urllib.parse

    value = os.environ.get("SEMIEVOL_RESULTS", "").strip()
    if not value:
        from prefect.settings import get_current_settings
        block = get_current_settings().results.default_storage_block
        if block:
            return block
        value = str(cache_dir() / "prefect-results")
    if value.startswith("block:"):
        slug = value[len("block:"):]
        if slug.count("/") != 1 or not all(slug.split("/")):
            raise ValueError(f"SEMIEVOL_RESULTS={value!r}: expected block:<block type>/<block name>, "
                             "e.g. block:s3-bucket/semievol-results")
        return slug
    scheme = urllib.parse.urlsplit(value).scheme if "://" in value else ""
    if scheme in ("", "file", "local"):
        path = Path(urllib.parse.unquote(urllib.parse.urlsplit(value).path) if scheme else value).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path
    import fsspec
    from prefect.filesystems import RemoteFileSystem
    try:
        fsspec.get_filesystem_class(scheme)
    except (ImportError, ValueError) as err:
        raise ValueError(f"SEMIEVOL_RESULTS={value!r}: fsspec cannot open {scheme}:// here ({err})") from None
    name = "semievol-results-" + hashlib.sha256(value.encode()).hexdigest()[:12]
    # Prefect takes a block as a task's result storage only once it is saved on the server.
    RemoteFileSystem(basepath=value).save(name, overwrite=True, _sync=True)
    return f"remote-file-system/{name}"


CODE_VERSION = code_version()


def _section(cfg: dict, dotted: str):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def _keyed(config: dict, reads: tuple[str, ...]) -> dict:
    """The declared fields of a phase, less NOT_IN_KEY."""
    out = {}
    for r in reads:
        if any(r == n or r.startswith(n + ".") for n in NOT_IN_KEY):
            continue
        value = copy.deepcopy(_section(config, r))
        for n in NOT_IN_KEY:
            if n.startswith(r + "."):
                inner = value
                *parents, leaf = n[len(r) + 1:].split(".")
                for part in parents:
                    inner = inner.get(part, {})
                inner.pop(leaf, None)
        out[r] = value
    return out


def phase_key(phase: str, config: dict, fingerprints: dict, upstream: dict) -> str:
    spec = SPECS[phase]
    parts = {"phase": phase, "code": CODE_VERSION, "config": _keyed(config, spec.reads),
             "data": {s: fingerprints.get(s) for s in spec.splits},
             "upstream": {u: upstream[u] for u in spec.upstream}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def context(cfg: RoundConfig, round_dir: str) -> RoundContext:
    return RoundContext(cfg, load_splits(cfg.data), RoundDir(Path(round_dir)), resolve_model(cfg.model))


# vLLM's own defaults for an offline engine (0.x): where halving starts when the config leaves them unset.
VLLM_DEFAULT_SEQS, VLLM_DEFAULT_BATCHED_TOKENS = 256, 8192


def _halved(cfg: RoundConfig, times: int) -> RoundConfig:
    """After an out-of-memory error: half the batches of every backend (transformers' generation, scoring and
    embedding batches; the per-device training batch, with as many more accumulation steps, so the effective
    training batch stays; vLLM's sequences and tokens per engine step), the same results."""
    b, lora, v = cfg.backend, cfg.lora, cfg.backend.vllm
    f = 2 ** times
    seqs = max(1, (v.max_num_seqs or VLLM_DEFAULT_SEQS) // f)
    # never below max_model_len: an engine without chunked prefill refuses a smaller step
    vllm = v.model_copy(update={"max_num_seqs": seqs, "max_num_batched_tokens": max(
        v.max_model_len, seqs, (v.max_num_batched_tokens or VLLM_DEFAULT_BATCHED_TOKENS) // f)})
    return cfg.model_copy(update={
        "backend": b.model_copy(update={"gen_batch_size": max(1, b.gen_batch_size // f),
                                        "score_batch_size": max(1, b.score_batch_size // f),
                                        "embed_batch_size": max(1, b.embed_batch_size // f), "vllm": vllm}),
        "lora": lora.model_copy(update={"batch_size": max(1, lora.batch_size // f),
                                        "grad_accum": lora.grad_accum * min(f, lora.batch_size)})})


def _oom_note(cfg: RoundConfig, times: int) -> dict:
    """What the manifest says of a phase that ran with smaller batches after out-of-memory errors."""
    b = cfg.backend
    return {"oom_retries": times, "batches": {
        "gen_batch_size": b.gen_batch_size, "score_batch_size": b.score_batch_size,
        "embed_batch_size": b.embed_batch_size, "lora.batch_size": cfg.lora.batch_size,
        "lora.grad_accum": cfg.lora.grad_accum, "vllm.max_num_seqs": b.vllm.max_num_seqs,
        "vllm.max_num_batched_tokens": b.vllm.max_num_batched_tokens}}


class _ProgressArtifact:
    """Mirrors the core's progress bars into one Prefect progress artifact per phase, at most every 2 s."""

    def __init__(self, phase: str):
        self.phase, self.last, self.id = phase, 0.0, None

    def __call__(self, desc: str, done: int, total: int, stats: dict) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 2:
            return
        self.last = now
        pct = 100.0 * done / max(1, total)
        text = f"{self.phase}: {desc} {done}/{total}" + "".join(f", {k}={v}" for k, v in stats.items())
        if self.id is None:
            self.id = create_progress_artifact(pct, description=text)
        else:
            update_progress_artifact(self.id, pct, description=text)


def _shards_first(ctx: RoundContext, phase: str, parameters: dict, deployment: str) -> None:
    """Has the shard runs compute every chunk of the phase that is not on disk yet; the phase itself then only
    merges them (and computes tau over the whole pool)."""
    plan_fn, _, chunk_dir = SHARDED[phase]
    n, plan, url = ctx.cfg.backend.shards, plan_fn(ctx), ctx.cfg.backend.shard_storage
    directory = ctx.rd.root.joinpath(*chunk_dir)
    rel_dir = "/".join(chunk_dir)
    if url:
        remote.push(ctx.rd.root, SHARD_INPUTS[phase], url)
        remote.pull(url, ctx.rd.root.name, [rel_dir], ctx.rd.root)  # chunks an earlier attempt finished
    todo = shards.pending(plan, n)
    if todo:
        ctx.notes["shard_runs"] = fan_out(phase, parameters, todo, n, deployment, directory,
                                          ctx.cfg.backend.dispatch_attempts, ctx.cfg.backend.gpu_timeout_s,
                                          pull=(lambda: remote.pull(url, ctx.rd.root.name, [rel_dir], ctx.rd.root))
                                          if url else None)
    missing = [str(ch.path.name) for ch in plan if not ch.path.exists()]
    if missing:
        raise RuntimeError(f"{phase}: every shard run completed but chunks are missing: {missing[:5]}")


def run_phase(phase: str, config: dict, round_dir: str, key: str = "", shard_deployment: str | None = None,
              secret_env: dict[str, str] | None = None) -> dict:
    cfg = RoundConfig.model_validate(config)
    times = halvings(round_dir, phase)
    if times:
        cfg = _halved(cfg, times)
    ctx = context(cfg, round_dir)
    if times:
        ctx.notes.update(_oom_note(cfg, times))
    listener = _ProgressArtifact(phase)
    progress.add_listener(listener)
    t0 = time.perf_counter()
    try:
        if shard_deployment and phase in SHARDED and cfg.backend.shards > 1:
            _shards_first(ctx, phase, {"config": config, "round_dir": round_dir, "key": key,
                                       "secret_env": secret_env}, shard_deployment)
        outputs = PHASE_FNS[phase](ctx)
    except Exception as exc:
        if is_oom(exc):
            note_oom(round_dir, phase)
        raise
    finally:
        progress.remove_listener(listener)
    ctx.rd.record_phase(phase, time.perf_counter() - t0, outputs, **ctx.notes)
    rels = [str(Path(p).relative_to(ctx.rd.root)) for p in outputs]
    return {"phase": phase, "round_dir": str(ctx.rd.root), "files": rels, "digest": digest(ctx.rd.root, rels)}


def _key_from_parameters(context, parameters) -> str:
    return parameters["key"]


CACHE = CachePolicy.from_cache_key_fn(_key_from_parameters) + TASK_SOURCE


def run_shard(phase: str, config: dict, round_dir: str, shard: int, n_shards: int) -> dict:
    """One shard of a sharded phase, on a GPU worker: its chunks, written into the shared round directory."""
    cfg = RoundConfig.model_validate(config)
    oom_key = f"{phase}-shard-{shard}"
    if halvings(round_dir, oom_key):
        cfg = _halved(cfg, halvings(round_dir, oom_key))
    _, shard_fn, chunk_dir = SHARDED[phase]
    url, rel_dir = cfg.backend.shard_storage, "/".join(chunk_dir)
    scratch, original_dir = None, round_dir
    if url:  # this worker may not see the round directory: a scratch copy of what the shard reads
        scratch = Path(tempfile.mkdtemp(prefix="semievol-shard-"))
        round_dir = str(scratch / Path(round_dir).name)
        remote.pull(url, Path(round_dir).name, SHARD_INPUTS[phase] + [rel_dir], Path(round_dir))
    try:
        ctx = context(cfg, round_dir)
        t0 = time.perf_counter()
        try:
            files, computed = shard_fn(ctx, shard, n_shards)
        except Exception as exc:
            if is_oom(exc):
                note_oom(original_dir, oom_key)
            raise
        record = write_record(ctx.rd.root.joinpath(*chunk_dir), shard, n_shards, files, computed,
                              time.perf_counter() - t0)
        if url:
            remote.push(ctx.rd.root, [str(Path(f).relative_to(ctx.rd.root)) for f in [*files, record]], url)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return {"phase": phase, "shard": shard, "chunks": len(files), "computed": computed}


# Not cached by Prefect: the chunk files on disk are the checkpoint (a finished chunk is never recomputed).
shard = task(name="shard", task_run_name="{phase}-shard-{shard}", cache_policy=NO_CACHE, persist_result=False,
             **GPU_TASK)(run_shard)


RESULT_STORAGE = result_storage()  # resolved once per process (a fsspec URL is saved as a block once)


def _phase_task(phase: str):
    def fn(config: dict, round_dir: str, key: str, shard_deployment: str | None = None,
           secret_env: dict[str, str] | None = None) -> dict:
        return run_phase(phase, config, round_dir, key, shard_deployment, secret_env)
    fn.__name__ = fn.__qualname__ = phase
    options = dict(name=phase.replace("_", "-"), cache_policy=CACHE, persist_result=True,
                   result_storage=RESULT_STORAGE, task_run_name=f"{phase.replace('_', '-')}")
    # Every phase retries out-of-memory and transient errors; which ones hold a GPU slot is decided where they
    # run (flows/round.py), so that no task holds one while it waits for other GPU work.
    return task(**options, **GPU_TASK)(fn)


warm_up = _phase_task("warm_up")
retrieve = _phase_task("retrieve")
collaborate = _phase_task("collaborate")
justify = _phase_task("justify")
select = _phase_task("select")
evolve = _phase_task("evolve")
evaluate = _phase_task("evaluate")
TASKS = {"warm_up": warm_up, "retrieve": retrieve, "collaborate": collaborate, "justify": justify,
         "select": select, "evolve": evolve, "evaluate": evaluate}

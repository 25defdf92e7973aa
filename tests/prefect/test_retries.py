"""GPU phases retry transient errors and out-of-memory (with smaller batches, on every backend), never bad input."""
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import small_config, task_runs
from prefect import flow, task

import tasks.phases as phases
from semievol_core import InputError, parse_config
from semievol_core.round import manifest, prepare
from tasks.retry import GPU_TASK, retry_condition

pytestmark = pytest.mark.prefect


def test_every_phase_carries_the_retry_rule_and_no_gpu_tag_of_its_own():
    # The gpu tag is taken where a phase computes (flows/round.py), never by a task that may wait.
    for t in phases.TASKS.values():
        assert not t.tags and t.retries >= 1 and t.retry_condition_fn is retry_condition
    assert not phases.shard.tags


def test_transient_error_is_retried_and_the_flow_completes(prefect_server):
    calls = []

    @task(**{**GPU_TASK, "retry_delay_seconds": 0})
    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("lost the GPU node")
        return "done"

    @flow
    def f():
        return flaky()

    assert f() == "done" and len(calls) == 2


def test_validation_error_fails_without_retry(prefect_server):
    calls = []

    @task(**{**GPU_TASK, "retry_delay_seconds": 0})
    def bad():
        calls.append(1)
        raise InputError("x.csv", 3, "answer", "answer 'Z' is not a letter within the 3 options")

    @flow
    def f():
        return bad()

    state = f(return_state=True)
    assert state.is_failed() and len(calls) == 1


def test_out_of_memory_retries_the_real_phase_with_half_the_batch(prefect_server, small_data, tmp_path,
                                                                  monkeypatch):
    cfg = parse_config(small_config(small_data, tmp_path, "oom"))
    ctx = prepare(cfg)
    ctx.rd.create(manifest(ctx))
    seen = []

    def fake_warm_up(ctx):
        seen.append((ctx.cfg.lora.batch_size, ctx.cfg.lora.grad_accum, ctx.cfg.backend.gen_batch_size))
        if len(seen) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return []

    monkeypatch.setitem(phases.PHASE_FNS, "warm_up", fake_warm_up)
    t = phases.warm_up.with_options(retry_delay_seconds=0, refresh_cache=True)

    @flow
    def f():
        return t(cfg.model_dump(mode="json"), str(ctx.rd.root), "oom-test-key")

    state = f(return_state=True)
    assert state.is_completed()
    assert seen == [(4, 1, 32), (2, 2, 16)]  # halved batch, same effective training batch
    runs = task_runs(state.state_details.flow_run_id)
    assert runs["warm-up"].run_count == 2


@pytest.mark.vllm
@pytest.mark.llamafactory
def test_out_of_memory_on_vllm_and_llamafactory_retries_with_smaller_batches(prefect_server, samples, tiny_model,
                                                                              tmp_path, monkeypatch):
    """A whole round on vLLM + LLaMA-Factory through Prefect, where the real llamafactory-cli fails its first run
    with CUDA's out-of-memory message (a wrapper script) and the first vLLM engine start fails as vLLM does when
    the KV cache does not fit: both phases complete on retry with smaller batches, and the manifest says so."""
    import vllm

    from flows.round import semievol_round
    from semievol_core.backends.llamafactory import find_cli
    from semievol_core.config import LlamaFactoryParams

    marker, wrapper = tmp_path / "lf-failed-once", tmp_path / "llamafactory-cli"
    wrapper.write_text(f"""#!/bin/sh
if [ ! -e '{marker}' ]; then
  touch '{marker}'
  echo 'torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB' >&2
  exit 1
fi
exec '{find_cli(LlamaFactoryParams())}' "$@"
""")
    wrapper.chmod(0o755)
    real_llm, starts = vllm.LLM, []

    def llm_failing_once(**kwargs):
        starts.append(kwargs)
        if len(starts) == 1:
            raise ValueError("No available memory for the cache blocks. Try increasing `gpu_memory_utilization` "
                             "when initializing the engine.")  # vLLM 0.32's own message
        return real_llm(**kwargs)

    monkeypatch.setattr(vllm, "LLM", llm_failing_once)
    fpb = samples / "fpb"
    cfg = parse_config({
        "name": "oom-vllm-lf", "runs_dir": str(tmp_path / "runs"), "progress": False,
        "model": {"base": str(tiny_model)},
        "data": {"labeled": str(fpb / "labeled.csv"), "unlabeled": str(fpb / "unlabeled.csv"),
                 "test": str(fpb / "test.csv"), "limit_labeled": 16, "limit_unlabeled": 8, "limit_test": 8},
        "lora": {"rank": 8, "alpha": 16, "lr": 1e-3, "batch_size": 4, "seed": 2},
        "method": {"max_new_tokens": 24, "seed": 2},
        "backend": {"generator": "vllm", "trainer": "llamafactory", "llamafactory": {"cli": str(wrapper)},
                    "vllm": {"max_model_len": 2048, "max_lora_rank": 8}}})
    metrics = semievol_round(cfg)
    rd = Path(metrics["round_dir"])
    phases = json.loads((rd / "manifest.json").read_text())["phases"]
    warm = phases["warm_up"]
    assert warm["oom_retries"] == 1 and marker.exists()
    assert (warm["batches"]["lora.batch_size"], warm["batches"]["lora.grad_accum"]) == (2, 2)  # same effective batch
    collab = phases["collaborate"]
    assert collab["oom_retries"] == 1
    assert (collab["batches"]["vllm.max_num_seqs"], collab["batches"]["vllm.max_num_batched_tokens"]) == (128, 4096)
    assert starts[1]["max_num_seqs"] == 128 and starts[1]["max_num_batched_tokens"] == 4096
    # the phases after them ran with the configured batches again
    assert all("oom_retries" not in phases[p] for p in ("justify", "select", "evolve", "evaluate"))
    assert "max_num_seqs" not in starts[-1]
    # the round itself is whole: what the vLLM + LLaMA-Factory pair must produce
    ev = json.loads((rd / "eval.json").read_text())
    assert set(ev) == {"base", "warm", "evolved"} and ev["warm"]["extraction_failure_rate"] <= 0.25
    cand = pd.read_parquet(rd / "candidates.parquet")
    assert len(cand) == 8 * 4 and cand["response"].str.len().gt(0).mean() > 0.9
    pl = pd.read_parquet(rd / "pseudo_labels.parquet")
    assert pl["nll"].notna().all() and pl["selected"].any()

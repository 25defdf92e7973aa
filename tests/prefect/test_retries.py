"""GPU phases retry transient errors and out-of-memory (with half the batch), never bad input."""
import pytest
import torch
from helpers import small_config, task_runs
from prefect import flow, task

import tasks.phases as phases
from semievol_core import InputError, parse_config
from semievol_core.round import manifest, prepare
from tasks.retry import GPU_TASK, retry_condition

pytestmark = pytest.mark.prefect


def test_gpu_phases_carry_the_gpu_tag_and_the_retry_rule():
    for name in ("warm_up", "collaborate", "justify", "select", "evolve", "evaluate"):
        t = phases.TASKS[name]
        assert "gpu" in t.tags and t.retries >= 1 and t.retry_condition_fn is retry_condition
    assert "gpu" not in phases.TASKS["retrieve"].tags


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

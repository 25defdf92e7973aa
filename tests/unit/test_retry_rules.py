"""Which errors a GPU phase retries, and what an out-of-memory retry changes: pure logic, no server."""
import pytest
import torch

from semievol_core import parse_config
from semievol_core.errors import InputError, TrainingError
from tasks.phases import _halved, _oom_note
from tasks.retry import is_oom, is_retryable

# vLLM 0.32's own start-up messages (its KV-cache and worker utility modules), abridged.
VLLM_NO_CACHE = ValueError("No available memory for the cache blocks. Try increasing `gpu_memory_utilization` "
                           "when initializing the engine.")
VLLM_SHORT_CACHE = ValueError("To serve at least one request with the model's max seq len (4096), (0.5 GiB KV "
                              "cache is needed, which is larger than the available KV cache memory (0.2 GiB).")
VLLM_BUSY_GPU = ValueError("Free memory on device (10.1/79.2 GiB) on startup is less than desired GPU memory "
                           "utilization (0.85, 67.3 GiB).")
LF_OOM = TrainingError("llamafactory-cli train failed (exit code 1):\n  File \"trainer.py\", line 3\n"
                       "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.mark.parametrize("exc", [torch.OutOfMemoryError("CUDA out of memory"), VLLM_NO_CACHE, VLLM_SHORT_CACHE,
                                 VLLM_BUSY_GPU, LF_OOM, RuntimeError("CUDA error: out of memory")])
def test_out_of_memory_on_every_backend_is_retried(exc):
    assert is_oom(exc) and is_retryable(exc)


@pytest.mark.parametrize("exc", [
    InputError("x.csv", 3, "answer", "answer 'Z' is not one of the labels"),
    InputError("x.csv", 3, "question", "a question about running out of memory"),  # text alone never retries it
    TrainingError("llamafactory-cli train failed (exit code 1):\nKeyError: 'semievol'"),
    ValueError("max_lora_rank must be >= 16"), KeyError("adapter"), None])
def test_bad_input_and_plain_failures_are_not_retried(exc):
    assert not is_retryable(exc)


def test_transient_errors_are_retried():
    assert is_retryable(ConnectionError("lost the GPU node")) and is_retryable(TimeoutError("phase timed out"))


def test_halving_shrinks_every_backend_and_keeps_the_effective_batch():
    cfg = parse_config({"data": {"labeled": "l.csv", "unlabeled": "u.csv"}, "lora": {"batch_size": 8},
                        "backend": {"vllm": {"max_model_len": 2048}}})
    once, twice = _halved(cfg, 1), _halved(cfg, 2)
    assert (once.lora.batch_size, once.lora.grad_accum) == (4, 2)
    assert (twice.lora.batch_size, twice.lora.grad_accum) == (2, 4)
    assert (once.backend.gen_batch_size, once.backend.score_batch_size) == (16, 8)
    # vLLM from its own defaults (256 sequences, 8192 tokens a step), tokens never under max_model_len
    assert (once.backend.vllm.max_num_seqs, once.backend.vllm.max_num_batched_tokens) == (128, 4096)
    assert (twice.backend.vllm.max_num_seqs, twice.backend.vllm.max_num_batched_tokens) == (64, 2048)
    assert _halved(cfg, 5).backend.vllm.max_num_batched_tokens == 2048
    note = _oom_note(once, 1)
    assert note["oom_retries"] == 1 and note["batches"]["vllm.max_num_seqs"] == 128
    assert note["batches"]["lora.batch_size"] == 4 and note["batches"]["lora.grad_accum"] == 2


def test_a_run_waiting_for_a_worker_is_reported_once_per_period():
    from tasks.dispatch import WAIT_WARN_S, Job, overdue
    job = Job("r-warm-up", {}, sent=100.0)
    assert overdue(job, 100.0 + WAIT_WARN_S - 1) is None
    assert overdue(job, 100.0 + WAIT_WARN_S) == WAIT_WARN_S
    assert overdue(job, 100.0 + WAIT_WARN_S + 5) is None  # reported for this period already
    assert overdue(job, 100.0 + 3.5 * WAIT_WARN_S) == 3.5 * WAIT_WARN_S  # a long silence: reported once, not thrice
    assert overdue(job, 100.0 + 3.9 * WAIT_WARN_S) is None
    job.started = 200.0
    assert overdue(job, 100.0 + 10 * WAIT_WARN_S) is None  # running: waiting is over

"""Which failures a GPU phase retries: out-of-memory (with smaller batches) and transient errors retry; bad
input never does. Out-of-memory is recognised on every backend: torch's OutOfMemoryError (hf, peft), vLLM's
engine start-up errors (a ValueError that names the KV cache or gpu_memory_utilization), and a LLaMA-Factory
run whose output ends in a CUDA out-of-memory error (a TrainingError carrying that output)."""
from __future__ import annotations

import re

from semievol_core.errors import InputError, SemiEvolError

TRANSIENT = (ConnectionError, TimeoutError)
_OOM_TEXT = re.compile(r"out of memory|no available memory for the cache blocks|kv cache is needed|"
                       r"less than desired gpu memory utilization", re.I)
# (round dir, phase) -> how many times the batch sizes have been halved after an out-of-memory error.
_halvings: dict[tuple[str, str], int] = {}


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, InputError):
        return False
    return type(exc).__name__ == "OutOfMemoryError" or bool(_OOM_TEXT.search(str(exc)))


def is_retryable(exc: BaseException | None) -> bool:
    if exc is None or isinstance(exc, InputError):
        return False
    if is_oom(exc):  # before the SemiEvolError test: a TrainingError can carry an out-of-memory
        return True
    return not isinstance(exc, SemiEvolError) and isinstance(exc, TRANSIENT)


def retry_condition(task, task_run, state) -> bool:
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as err:  # the result itself may be the exception raised on read
        exc = err
    return is_retryable(exc if isinstance(exc, BaseException) else None)


def note_oom(round_dir: str, phase: str) -> None:
    _halvings[(round_dir, phase)] = _halvings.get((round_dir, phase), 0) + 1


def halvings(round_dir: str, phase: str) -> int:
    return _halvings.get((round_dir, phase), 0)


# No tags here: a GPU slot is taken where the phase runs (flows/round.py), never by a task that waits.
GPU_TASK = dict(retries=3, retry_delay_seconds=[2, 10, 30], retry_condition_fn=retry_condition)

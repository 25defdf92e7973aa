"""Which failures a GPU phase retries: out-of-memory (with half the batch size) and transient errors
retry; bad input never does."""
from __future__ import annotations

from semievol_core.errors import InputError, SemiEvolError

TRANSIENT = (ConnectionError, TimeoutError)
# (round dir, phase) -> how many times the batch size has been halved after an out-of-memory error.
_halvings: dict[tuple[str, str], int] = {}


def is_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def is_retryable(exc: BaseException | None) -> bool:
    if exc is None or isinstance(exc, (InputError, SemiEvolError)):
        return False
    return is_oom(exc) or isinstance(exc, TRANSIENT)


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


GPU_TASK = dict(tags=["gpu"], retries=3, retry_delay_seconds=[2, 10, 30], retry_condition_fn=retry_condition)

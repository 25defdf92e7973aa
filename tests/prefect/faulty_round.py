"""`semievol` with one fault injected, for the tests: the API is lost once while a sharded phase's parent task
waits for the shard runs it has just dispatched (a ConnectionError, which the task retries). The retried task
must find the shard runs it started through their idempotency keys, not start a second set.

    python tests/prefect/faulty_round.py round --config x.yaml --gpu-deployment semievol-phase/gpu
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import tasks.dispatch as dispatch  # noqa: E402
import tasks.shards as shards  # noqa: E402
from flows.cli import main  # noqa: E402

armed = {"shard_waits": 0}


class _FlakyTime:
    """time, except that the first sleep of an armed shard wait loses the connection."""

    def __getattr__(self, name):
        return getattr(time, name)

    def sleep(self, seconds):
        if armed["shard_waits"] == 1:
            armed["shard_waits"] += 1
            raise ConnectionError("injected by the test: lost the API while waiting for shard runs")
        time.sleep(seconds)


def _run_watched(jobs, *args, **kwargs):
    armed["shard_waits"] += 1 if armed["shard_waits"] == 0 else 0  # only the first sharded phase
    return dispatch.run_watched(jobs, *args, **kwargs)


dispatch.time = _FlakyTime()
shards.run_watched = _run_watched

if __name__ == "__main__":
    sys.exit(main())

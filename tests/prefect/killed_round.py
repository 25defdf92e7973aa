"""`semievol` that SIGKILLs itself at an exact point of a phase, for the crash-resume test: no polling from
outside, so a fast or a loaded machine kills at the same place.

    python tests/prefect/killed_round.py train-step round --config x.yaml   # after warm-up's first optimizer step
    python tests/prefect/killed_round.py chunk-2 round --config x.yaml      # once collaborate's 2nd chunk is saved
"""
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import semievol_core.shards as shards  # noqa: E402
from flows.cli import main  # noqa: E402
from semievol_core import progress  # noqa: E402


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def at_train_step(desc, done, total, stats):
    if "train LoRA" in desc and done >= 1:
        _die()


saved = []


def write_then_count(path, df):
    out = write_parquet(path, df)
    if "collaborate" in Path(path).parts:
        saved.append(path)
        if len(saved) == 2:
            _die()
    return out


if __name__ == "__main__":
    point = sys.argv.pop(1)
    if point == "train-step":
        progress.add_listener(at_train_step)
    elif point == "chunk-2":
        write_parquet, shards.write_parquet = shards.write_parquet, write_then_count
    else:
        sys.exit(f"unknown kill point {point!r}")
    sys.exit(main())

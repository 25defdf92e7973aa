"""A round whose flow process is SIGKILLed, during warm-up training and then during collaborative inference,
resumes to the same outputs as an uninterrupted round: finished phases come from the cache, finished shards of
the interrupted phase from the round directory, and a half-trained adapter is never used."""
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import small_config

from semievol_core import load_config, run_round

pytestmark = pytest.mark.prefect


REPO = Path(__file__).resolve().parents[2]


def _start(config: Path, name: str, kill_at: str | None = None) -> subprocess.Popen:
    """The round's CLI; with kill_at, one that SIGKILLs itself at that point (tests/prefect/killed_round.py)."""
    cli = [str(REPO / "tests" / "prefect" / "killed_round.py"), kill_at] if kill_at else ["-m", "flows.cli"]
    log = tempfile.TemporaryFile()  # a file, not a pipe: a chatty run never blocks on a full pipe
    proc = subprocess.Popen([sys.executable, *cli, "round", "--config", str(config), "--name", name],
                            stdout=subprocess.DEVNULL, stderr=log, env=os.environ.copy(), start_new_session=True)
    proc.log = log
    return proc


def _tail(proc: subprocess.Popen) -> str:
    proc.log.seek(0)
    return proc.log.read().decode(errors="replace")[-3000:]


def _killed(proc: subprocess.Popen) -> None:
    rc = proc.wait(timeout=900)
    assert rc == -signal.SIGKILL, f"exit {rc}, not killed:\n{_tail(proc)}"


@pytest.fixture(scope="module")
def config(prefect_server, tiny_data, tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    cfg = small_config(tiny_data, root / "runs", "unused", tiny_model)
    del cfg["name"]
    # Seeds of their own: no other test's cached phases may stand in for this module's work.
    cfg["lora"]["seed"] = 11
    cfg["method"]["seed"] = 11
    cfg["backend"] = {"checkpoint_records": 2}  # 6 unlabeled records: 3 shards
    path = root / "round.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_killed_round_resumes_to_the_uninterrupted_result(config, tmp_path):
    runs = config.parent / "runs"
    crash = runs / "crash"

    # 1. Killed during warm-up training, right after its first optimizer step.
    _killed(_start(config, "crash", "train-step"))
    assert not (crash / "warm_adapter").exists()

    # 2. Re-run, killed during collaborative inference right after its second chunk (of three) is saved.
    shards = crash / "shards" / "collaborate"
    _killed(_start(config, "crash", "chunk-2"))
    done = {p.name: p.stat().st_mtime_ns for p in shards.glob("*.parquet")}
    assert len(done) == 2 and not (crash / "candidates.parquet").exists()
    assert not [p for p in crash.iterdir() if p.name.startswith(".warm_adapter")]  # temp dir of the first kill
    warm_mtime = (crash / "warm_adapter" / "adapter_model.safetensors").stat().st_mtime_ns

    # 3. Re-run to the end.
    proc = _start(config, "crash")
    assert proc.wait(timeout=900) == 0, _tail(proc)
    manifest = json.loads((crash / "manifest.json").read_text())
    assert manifest["phases"]["warm_up"].get("cached") and manifest["phases"]["retrieve"].get("cached")
    assert (crash / "warm_adapter" / "adapter_model.safetensors").stat().st_mtime_ns == warm_mtime
    assert manifest["phases"]["collaborate"]["shards"] == 3
    assert manifest["phases"]["collaborate"]["shards_reused"] == len(done) == 2
    assert not shards.exists()

    # The same round uninterrupted, through the library (no Prefect cache to lean on).
    cfg = load_config(config)
    cfg.name, cfg.runs_dir = "reference", str(tmp_path)
    ref = run_round(cfg).path
    order = ["id", "config"]
    a = pd.read_parquet(crash / "candidates.parquet").sort_values(order, ignore_index=True)
    b = pd.read_parquet(ref / "candidates.parquet").sort_values(order, ignore_index=True)
    pd.testing.assert_frame_equal(a, b)
    pa = pd.read_parquet(crash / "pseudo_labels.parquet").sort_values("id", ignore_index=True)
    pb = pd.read_parquet(ref / "pseudo_labels.parquet").sort_values("id", ignore_index=True)
    assert pa[["id", "answer", "selected"]].equals(pb[["id", "answer", "selected"]])
    assert (pa["nll"] - pb["nll"]).abs().max() < 1e-6
    assert json.loads((crash / "eval.json").read_text()) == json.loads((ref / "eval.json").read_text())

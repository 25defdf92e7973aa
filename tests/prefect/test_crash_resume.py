"""A round whose flow process is SIGKILLed, during warm-up training and then during collaborative inference,
resumes to the same outputs as an uninterrupted round: finished phases come from the cache, finished shards of
the interrupted phase from the round directory, and a half-trained adapter is never used."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import small_config
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterType

from semievol_core import load_config, run_round

pytestmark = [pytest.mark.prefect, pytest.mark.model]


def _start(config: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "flows.cli", "round", "--config", str(config), "--name", name],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy(),
                            start_new_session=True)


def _training_started(since) -> bool:
    """The warm-up's progress artifact exists once the first optimizer step is done."""
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=["progress"])))
    return any(a.created >= since and "warm_up: train LoRA" in (a.description or "") for a in arts)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "never reached the kill point"
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="module")
def config(prefect_server, tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    cfg = small_config(tiny_data, root / "runs", "unused")
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

    # 1. Kill during warm-up training, after its first optimizer step.
    from datetime import datetime, timezone
    since = datetime.now(timezone.utc)
    proc = _start(config, "crash")
    _kill_when(proc, lambda: _training_started(since))
    assert not (crash / "warm_adapter").exists()

    # 2. Re-run, kill during collaborative inference once two shards are on disk.
    shards = crash / "shards" / "collaborate"
    proc = _start(config, "crash")
    _kill_when(proc, lambda: len(list(shards.glob("*.parquet"))) >= 2)
    done = {p.name: p.stat().st_mtime_ns for p in shards.glob("*.parquet")}
    assert not (crash / "candidates.parquet").exists()
    assert not [p for p in crash.iterdir() if p.name.startswith(".warm_adapter")]  # temp dir of the first kill
    warm_mtime = (crash / "warm_adapter" / "adapter_model.safetensors").stat().st_mtime_ns

    # 3. Re-run to the end.
    proc = _start(config, "crash")
    assert proc.wait(timeout=900) == 0, proc.stderr.read().decode()[-3000:]
    manifest = json.loads((crash / "manifest.json").read_text())
    assert manifest["phases"]["warm_up"].get("cached") and manifest["phases"]["retrieve"].get("cached")
    assert (crash / "warm_adapter" / "adapter_model.safetensors").stat().st_mtime_ns == warm_mtime
    assert manifest["phases"]["collaborate"]["shards"] == 3
    assert manifest["phases"]["collaborate"]["shards_reused"] >= len(done) >= 2
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

"""Evolution over rounds and the command line, against the session's Prefect server."""
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
import yaml
from helpers import small_config

from flows.evolve import EvolveParams, evolve_continuous
from semievol_core import parse_config
from semievol_core.store import exclusive

pytestmark = pytest.mark.prefect


def test_continuous_takes_only_new_rows_and_promotes_on_gain(prefect_server, small_data, samples, tiny_model,
                                                              tmp_path):
    # The first run takes the 12 rows of the shared small data: the inputs of the operator module's first
    # evolution round, so one of the two is a cache hit. More rows come from the full sample file.
    unl = tmp_path / "unlabeled.csv"
    more = pd.read_csv(samples / "fpb" / "unlabeled.csv").iloc[12:16]
    shutil.copy(small_data / "unlabeled.csv", unl)
    raw = small_config(small_data, tmp_path / "runs", None, tiny_model)
    raw["data"]["unlabeled"] = str(unl)
    params = EvolveParams(round=parse_config(raw), mode="continuous", name="nightly")
    home = tmp_path / "runs" / "nightly"

    s1 = evolve_continuous(params)
    assert [r["new_rows"] for r in s1["rounds"]] == [12] and len(s1["taken_ids"]) == 12
    assert s1["incumbent"] and s1["rounds"][0]["promoted"]  # the first evolved adapter has no rival

    more.iloc[:2].to_csv(unl, mode="a", header=False, index=False)  # 2 rows arrive before the run, 2 while it runs

    def arrive_while_running():
        deadline = time.monotonic() + 600
        while len(list((home / "batches").glob("*.parquet"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        more.iloc[2:4].to_csv(unl, mode="a", header=False, index=False)

    helper = threading.Thread(target=arrive_while_running)
    helper.start()
    s2 = evolve_continuous(params)
    helper.join()
    assert [r["new_rows"] for r in s2["rounds"]] == [12, 2] and len(s2["taken_ids"]) == 14

    # A cron run that overlaps a running one (here: while the evolution's lock is held, as a run holds it)
    # skips instead of taking the same rows twice, and says so.
    cfg_file = tmp_path / "round.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    before = (home / "state.json").read_bytes()
    with exclusive(home):
        overlap = _cli("evolve", "--mode", "continuous", "--evolve-name", "nightly", "--config", str(cfg_file))
    assert overlap.returncode == 0 and "skipped" in overlap.stdout, overlap.stderr[-2000:]
    assert (home / "state.json").read_bytes() == before and len(list((home / "batches").glob("*"))) == 2
    second = s2["rounds"][1]
    assert second["promoted"] == (second["evolved_accuracy"] > s1["incumbent"]["accuracy"])

    s3 = evolve_continuous(params)  # the rows that arrived mid-round: taken now, exactly once
    assert [r["new_rows"] for r in s3["rounds"]] == [12, 2, 2]
    batches = [pd.read_parquet(b)["id"].tolist() for b in sorted((home / "batches").glob("*.parquet"))]
    taken = sum(batches, [])
    assert [len(b) for b in batches] == [12, 2, 2]
    assert len(set(taken)) == 16 and sorted(taken) == sorted(s3["taken_ids"])  # each row in exactly one batch
    promoted = json.loads((home / "promoted.json").read_text())
    assert promoted == s3["incumbent"]
    for r in s3["rounds"]:  # every round keeps its adapter and card
        assert (tmp_path / "runs" / r["round"] / "evolved_adapter" / "adapter_config.json").is_file()
        assert (tmp_path / "runs" / r["round"] / "card.md").is_file()

    # Rows that repeat a labeled question and a test question, one of them twice: no round (the round would
    # refuse a batch that is half labeled questions), and the watermark moves past them.
    repeats = pd.concat([pd.read_csv(small_data / f"{split}.csv").iloc[:1] for split in ("labeled", "test", "test")])
    repeats.to_csv(unl, mode="a", header=False, index=False)
    s4 = evolve_continuous(params)
    assert len(s4["rounds"]) == 3 and not s4.get("skipped") and len(s4["taken_ids"]) == 18
    assert json.loads((home / "state.json").read_text())["taken_ids"] == s4["taken_ids"]

    s5 = evolve_continuous(params)  # nothing new: no round
    assert len(s5["rounds"]) == 3 and not s5.get("skipped") and s5["taken_ids"] == s4["taken_ids"]


def test_failed_evolve_training_promotes_nothing(prefect_server, small_data, tiny_model, tmp_path):
    """The evolve phase's trainer fails for real (the loss diverges): the round fails with the trainer's
    error, no adapter is left in place, nothing is promoted and the watermark does not move."""
    runs = tmp_path / "runs"
    raw = small_config(small_data, runs, None, tiny_model)
    raw["method"].update(warmup=False, retrieval=False)  # evolve is the round's only training
    raw["lora"]["lr"] = 1e30
    params = EvolveParams(round=parse_config(raw), mode="continuous", name="nightly")
    state = evolve_continuous(params, return_state=True)
    assert state.is_failed() and "TrainingError" in state.message and "nan" in state.message, state.message
    home = runs / "nightly"
    assert not (home / "promoted.json").exists() and not (home / "state.json").exists()
    [round_dir] = [d for d in runs.iterdir() if d.name.startswith("nightly-")]
    assert (round_dir / "pseudo_labels.parquet").is_file()  # the phases before it finished and are kept
    assert not (round_dir / "evolved_adapter").exists() and not list(round_dir.glob(".evolved_adapter*"))
    assert "evolve" not in json.loads((round_dir / "manifest.json").read_text())["phases"]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True,
                          timeout=900, env=os.environ.copy())


def test_cli_help_documents_every_command():
    out = _cli("--help").stdout
    for cmd in ("demo", "round", "evaluate", "evolve"):
        assert cmd in out
    assert "--adapter" in _cli("evaluate", "--help").stdout


@pytest.mark.parametrize("bad", [
    {"data": {"labeled": "nowhere.csv", "unlabeled": "nowhere.csv"}},
    {"data": {"labeled": "l.csv", "unlabeled": "u.csv"}, "method": {"thetta": 40}},
])
def test_cli_bad_config_is_one_line_and_exit_2(bad, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**bad, "runs_dir": str(tmp_path / "runs")}))
    out = _cli("round", "--config", str(path))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("semievol: error:")
    assert "Traceback" not in out.stderr + out.stdout
    assert not (tmp_path / "runs").exists()


def test_cli_round_prints_the_result_table(prefect_server, small_data, tiny_model, tmp_path):
    path = tmp_path / "round.yaml"
    path.write_text(yaml.safe_dump(small_config(small_data, tmp_path / "runs", "cli", tiny_model)))
    out = _cli("round", "--config", str(path))
    assert out.returncode == 0, out.stderr[-3000:]
    ev = json.loads((tmp_path / "runs" / "cli" / "eval.json").read_text())
    for model in ("base", "warm", "evolved"):  # each row carries that model's figures from eval.json
        row = f"{model:<10} {100 * ev[model]['accuracy']:>13.1f}% {100 * ev[model]['extraction_failure_rate']:>9.1f}%"
        assert row in out.stdout.splitlines(), out.stdout
    sel = json.loads((tmp_path / "runs" / "cli" / "selection.json").read_text())
    assert f"selected {sel['selected']} at tau {sel['tau']}" in out.stdout
    assert f"round directory: {tmp_path / 'runs' / 'cli'}" in out.stdout
    d = json.loads((tmp_path / "runs" / "cli" / "metrics.json").read_text())["evolved_vs_warm"]
    assert d["difference"] == pytest.approx(ev["evolved"]["accuracy"] - ev["warm"]["accuracy"])
    assert f"evolved - warm: {100 * d['difference']:+.1f} points on 8 test items" in out.stdout


def test_cli_evaluate_scores_adapters_on_a_split(prefect_server, small_data, tiny_model, tmp_path):
    path = tmp_path / "round.yaml"
    path.write_text(yaml.safe_dump(small_config(small_data, tmp_path / "runs", "evalsrc", tiny_model)))
    assert _cli("round", "--config", str(path)).returncode == 0
    adapter = tmp_path / "runs" / "evalsrc" / "evolved_adapter"
    out = _cli("evaluate", "--config", str(path), "--adapter", f"evolved={adapter}", "--out", str(tmp_path / "ev"))
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads((tmp_path / "ev" / "eval.json").read_text())
    want = json.loads((tmp_path / "runs" / "evalsrc" / "eval.json").read_text())
    assert got["base"] == want["base"] and got["evolved"] == want["evolved"]  # same greedy decoding
    bad = _cli("evaluate", "--config", str(path), "--adapter", f"x={tmp_path}")
    assert bad.returncode == 2 and "adapters.x" in bad.stderr

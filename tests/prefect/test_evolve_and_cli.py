"""Evolution over rounds and the command line, against the session's Prefect server."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from helpers import small_config

from flows.evolve import EvolveParams, evolve_continuous, evolve_iterative
from semievol_core import parse_config

pytestmark = pytest.mark.prefect


def test_iterative_rounds_grow_the_labeled_set(prefect_server, small_data, tmp_path):
    cfg = parse_config(small_config(small_data, tmp_path, None))
    history = evolve_iterative(EvolveParams(round=cfg, max_rounds=2, name="it"))
    assert 1 <= len(history) <= 2
    first = history[0]
    assert first["counts"] == {"labeled": 8, "unlabeled": 12, "test": 8}
    if len(history) == 2:
        chosen = first["selection"]["selected"]
        assert history[1]["counts"]["labeled"] == 8 + chosen
        assert history[1]["counts"]["unlabeled"] == 12 - chosen
    nxt = pd.read_parquet(tmp_path / "it-r1" / "next_labeled.parquet")
    assert nxt["id"].is_unique and len(nxt) == 8 + first["selection"]["selected"]


def test_continuous_takes_only_new_rows_and_promotes_on_gain(prefect_server, small_data, tmp_path):
    unl = tmp_path / "unlabeled.csv"
    rows = pd.read_csv(small_data / "unlabeled.csv")
    rows.iloc[:8].to_csv(unl, index=False)
    raw = small_config(small_data, tmp_path / "runs", None)
    raw["data"]["unlabeled"] = str(unl)
    params = EvolveParams(round=parse_config(raw), mode="continuous", name="nightly")

    s1 = evolve_continuous(params)
    assert [r["new_rows"] for r in s1["rounds"]] == [8] and len(s1["taken_ids"]) == 8
    assert s1["incumbent"] and s1["rounds"][0]["promoted"]  # the first evolved adapter has no rival

    rows.iloc[:12].to_csv(unl, index=False)  # 4 rows arrive
    s2 = evolve_continuous(params)
    assert [r["new_rows"] for r in s2["rounds"]] == [8, 4] and len(s2["taken_ids"]) == 12
    second = s2["rounds"][1]
    assert second["promoted"] == (second["evolved_accuracy"] > s1["incumbent"]["accuracy"])
    promoted = json.loads((tmp_path / "runs" / "nightly" / "promoted.json").read_text())
    assert promoted == s2["incumbent"]
    for r in s2["rounds"]:  # every round keeps its adapter and card
        assert (tmp_path / "runs" / r["round"] / "evolved_adapter" / "adapter_config.json").is_file()
        assert (tmp_path / "runs" / r["round"] / "card.md").is_file()

    s3 = evolve_continuous(params)  # nothing new: no round
    assert len(s3["rounds"]) == 2


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


def test_cli_round_prints_the_result_table(prefect_server, small_data, tmp_path):
    path = tmp_path / "round.yaml"
    path.write_text(yaml.safe_dump(small_config(small_data, tmp_path / "runs", "cli")))
    out = _cli("round", "--config", str(path))
    assert out.returncode == 0, out.stderr[-3000:]
    for needle in ("base", "warm", "evolved", "round directory:"):
        assert needle in out.stdout


def test_cli_evaluate_scores_adapters_on_a_split(prefect_server, small_data, tmp_path):
    path = tmp_path / "round.yaml"
    path.write_text(yaml.safe_dump(small_config(small_data, tmp_path / "runs", "evalsrc")))
    assert _cli("round", "--config", str(path)).returncode == 0
    adapter = tmp_path / "runs" / "evalsrc" / "evolved_adapter"
    out = _cli("evaluate", "--config", str(path), "--adapter", f"evolved={adapter}", "--out", str(tmp_path / "ev"))
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads((tmp_path / "ev" / "eval.json").read_text())
    want = json.loads((tmp_path / "runs" / "evalsrc" / "eval.json").read_text())
    assert got["base"] == want["base"] and got["evolved"] == want["evolved"]  # same greedy decoding
    bad = _cli("evaluate", "--config", str(path), "--adapter", f"x={tmp_path}")
    assert bad.returncode == 2 and "adapters.x" in bad.stderr

"""Paths a round's config names, as phases in another process see them, and a config the CLI refuses before
any flow run exists."""
import os

import yaml

from flows.cli import main
from semievol_core import parse_config
from semievol_core.config import absolute_paths


def test_absolute_paths_for_another_process(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ds").mkdir()
    (tmp_path / "m").mkdir()
    cfg = parse_config({"runs_dir": "runs", "data": {"labeled": "d/l.csv", "unlabeled": "hf:ds:train",
                                                     "test": "hf:org/name"},
                        "model": {"base": "m", "embedder": "embedded:all-minilm-l6-v2"}})
    out = absolute_paths(cfg)
    assert out.runs_dir == str(tmp_path / "runs") and out.data.labeled == str(tmp_path / "d" / "l.csv")
    assert out.data.unlabeled == f"hf:{tmp_path / 'ds'}:train" and out.data.test == "hf:org/name"
    assert out.model.base == str(tmp_path / "m") and out.model.embedder == "embedded:all-minilm-l6-v2"
    assert cfg.runs_dir == "runs"  # a copy: the caller's config is left as it was
    hub = absolute_paths(parse_config({"data": {"labeled": "/x/l.csv", "unlabeled": "/x/u.csv"},
                                       "model": {"base": "HuggingFaceTB/SmolLM2-135M-Instruct"}}))
    assert hub.model.base == "HuggingFaceTB/SmolLM2-135M-Instruct" and hub.data.labeled == "/x/l.csv"


def test_shards_without_a_gpu_deployment_refused_before_a_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "r.yaml"
    config.write_text(yaml.safe_dump({"runs_dir": "runs", "backend": {"shards": 2},
                                      "data": {"labeled": "l.csv", "unlabeled": "u.csv"}}))
    assert main(["round", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "backend.shards" in err and "--gpu-deployment" in err and err.count("\n") == 1
    assert not os.path.exists(tmp_path / "runs")

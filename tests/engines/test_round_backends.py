"""A whole round from one config file with hf + peft. The vllm + llamafactory pair runs its whole round through
Prefect in tests/prefect/test_retries.py (with an out-of-memory failure injected into each)."""
import json

import pandas as pd
import pytest
import yaml

from semievol_core import load_config, run_round

pytestmark = [pytest.mark.model]


@pytest.fixture(scope="module")
def config_file(samples, tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "round.yaml"
    fpb = samples / "fpb"
    path.write_text(yaml.safe_dump({
        "runs_dir": str(path.parent / "runs"), "progress": False,
        "data": {"labeled": str(fpb / "labeled.csv"), "unlabeled": str(fpb / "unlabeled.csv"),
                 "test": str(fpb / "test.csv"), "limit_labeled": 16, "limit_unlabeled": 8, "limit_test": 8},
        "lora": {"rank": 8, "alpha": 16, "lr": 1e-3, "batch_size": 4, "seed": 2},
        "method": {"max_new_tokens": 24, "seed": 2},
        "backend": {"vllm": {"max_model_len": 2048, "max_lora_rank": 8}},
    }))
    return path


@pytest.mark.parametrize("generator,trainer", [("hf", "peft")])
def test_full_round(config_file, generator, trainer):
    cfg = load_config(config_file)
    cfg.name = f"{generator}-{trainer}"
    cfg.backend.generator, cfg.backend.trainer = generator, trainer
    result = run_round(cfg)
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest["backends"] == {"generator": generator, "trainer": trainer}
    assert set(manifest["phases"]) >= {"warm_up", "collaborate", "justify", "select", "evolve", "evaluate"}
    ev = json.loads((result.path / "eval.json").read_text())
    assert set(ev) == {"base", "warm", "evolved"}
    cand = pd.read_parquet(result.path / "candidates.parquet")
    assert len(cand) == 8 * 4 and cand["response"].str.len().gt(0).mean() > 0.9
    pl = pd.read_parquet(result.path / "pseudo_labels.parquet")
    assert pl["nll"].notna().all() and pl["selected"].any()
    # the warm-up taught the answer format, whichever trainer ran it
    assert ev["warm"]["extraction_failure_rate"] <= 0.25

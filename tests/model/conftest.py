import pytest
import yaml

from semievol_core import load_config, run_round


@pytest.fixture(scope="session")
def fpb_round(tmp_path_factory, samples):
    """One complete round with the real SmolLM2 on CPU, from a config file as a user writes it: FPB 16 labeled,
    32 unlabeled, 16 test, transformers generation and peft training."""
    root = tmp_path_factory.mktemp("round")
    fpb = samples / "fpb"
    path = root / "round.yaml"
    path.write_text(yaml.safe_dump({
        "name": "fpb-small", "runs_dir": str(root / "runs"), "progress": False,
        "data": {"labeled": str(fpb / "labeled.csv"), "unlabeled": str(fpb / "unlabeled.csv"),
                 "test": str(fpb / "test.csv"), "limit_labeled": 16, "limit_unlabeled": 32, "limit_test": 16},
        "method": {"max_new_tokens": 48},
        # 16 examples at the default lr 1e-4 are 4 steps that barely move the adapter; a tiny slice needs more.
        "lora": {"lr": 1e-3, "batch_size": 4},
        "backend": {"generator": "hf", "trainer": "peft"},
    }))
    cfg = load_config(path)
    return cfg, run_round(cfg)

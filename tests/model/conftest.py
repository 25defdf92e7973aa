import pytest

from semievol_core import parse_config, run_round


@pytest.fixture(scope="session")
def fpb_round(tmp_path_factory, samples):
    """One complete round with the real SmolLM2 on CPU: FPB 16 labeled, 32 unlabeled, 16 test."""
    runs = tmp_path_factory.mktemp("runs")
    cfg = parse_config({
        "name": "fpb-small", "runs_dir": str(runs),
        "data": {"labeled": str(samples / "fpb" / "labeled.csv"), "unlabeled": str(samples / "fpb" / "unlabeled.csv"),
                 "test": str(samples / "fpb" / "test.csv"),
                 "limit_labeled": 16, "limit_unlabeled": 32, "limit_test": 16},
        "method": {"max_new_tokens": 48},
        # 16 examples at the default lr 1e-4 are 4 steps that barely move the adapter; a tiny slice needs more.
        "lora": {"lr": 1e-3, "batch_size": 4},
        "progress": False,
    })
    return cfg, run_round(cfg)

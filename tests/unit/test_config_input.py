"""Config and message rules that the reliability corpus relies on, checked on their own."""
import json
import os

import numpy as np
import pytest
import torch

from semievol_core import InputError, load_config, parse_config
from semievol_core.config import SEED_MAX
from semievol_core.errors import one_line, path_problem

DATA = {"labeled": "l.csv", "unlabeled": "u.csv"}


def test_largest_seeds_fit_numpy_and_torch_after_derivation():
    # collaborate: chunk i is seeded with (method.seed * 100_003 + i) mod 2**32 (vLLM hands it to numpy); hf
    # then seeds torch per batch with that * 1_000_003 + b.
    chunk_seed = (SEED_MAX * 100_003 + 10**7) % 2**32
    np.random.seed(chunk_seed)
    np.random.seed(SEED_MAX)
    torch.manual_seed(SEED_MAX * 1_000_003 + 10**6)
    for section, seed in (("method", SEED_MAX + 1), ("lora", SEED_MAX + 1), ("lora", -1)):
        with pytest.raises(InputError, match=f"{section}.seed"):
            parse_config({"data": DATA, section: {"seed": seed}})


@pytest.mark.parametrize("name", ["r1\n", "r1\r", "a\nb", "\u2028r"])
def test_round_names_match_whole(name):
    with pytest.raises(InputError, match="field name"):
        parse_config({"data": DATA, "name": name})


def test_one_line_escapes_like_repr():
    assert one_line("a\nb\u2028c\x85d\udce9e\x00é") == "a\\nb\\u2028c\\x85d\\udce9e\\x00é"
    assert "\n" not in str(InputError("f\nile", 1, "fi\reld", "pro\u2029blem"))


def test_path_problem(tmp_path):
    (tmp_path / "f").write_text("x")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "broken").symlink_to("nowhere")
    assert path_problem(tmp_path / "f") is None and path_problem(tmp_path, directory=True) is None
    assert path_problem(tmp_path / "no") == "file not found"
    assert path_problem(tmp_path) == "is a directory, not a file"
    assert path_problem(tmp_path / "f", directory=True) == "is not a directory"
    assert "not a regular file" in path_problem(tmp_path / "fifo")
    assert "symbolic links" in path_problem(tmp_path / "loop")
    assert path_problem(tmp_path / "broken") == "is a broken symbolic link"


def test_config_that_is_a_directory_or_fifo(tmp_path):
    os.mkfifo(tmp_path / "round.yaml")
    with pytest.raises(InputError, match="not a regular file"):
        load_config(tmp_path / "round.yaml")  # would block if it were opened
    with pytest.raises(InputError, match="config is a directory"):
        load_config(tmp_path)


def test_yaml_errors_name_the_line(tmp_path):
    p = tmp_path / "round.yaml"
    p.write_text("data: {labeled: l.csv, unlabeled: u.csv}\nlora:\n  rank: 8\n   alpha: 4\n")
    with pytest.raises(InputError, match=r"line 4, column \d+"):
        load_config(p)


def test_strings_keep_what_was_typed_only_where_the_schema_wants_text(tmp_path):
    p = tmp_path / "round.yaml"
    p.write_text("name: 0x10\ndata: {labeled: l.csv, unlabeled: u.csv, task: label, labels: [on, off, 1.0]}\n"
                 "progress: no\nlora: {rank: 0x10, target_modules: [yes]}\n"
                 "backend: {llamafactory: {extra: {flag: yes, when: 2024-01-01}}}\n")
    cfg = load_config(p)
    assert cfg.name == "0x10" and cfg.data.labels == ["on", "off", "1.0"] and cfg.progress is False
    assert cfg.lora.rank == 16 and cfg.lora.target_modules == ["yes"]
    assert cfg.backend.llamafactory.extra["flag"] is True  # free-form keys keep YAML's own types


def _typed(value):
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


def test_a_config_survives_its_json_round_trip_with_the_same_types():
    # What a flow parameter or a dispatched phase gets back must be the config the CLI built in process: a
    # default int in a float field came back as a float, and vLLM's integer-only KV cache setting then broke.
    cfg = parse_config({"data": DATA})
    again = parse_config(json.loads(json.dumps(cfg.model_dump(mode="json"))))
    assert _typed(cfg.model_dump()) == _typed(again.model_dump())
    assert isinstance(cfg.lora.epochs, float) and isinstance(cfg.backend.vllm.cpu_kv_cache_gib, int)

"""A corpus of malformed inputs. Each must raise InputError naming the file, row and field (or config key),
make the CLI print one line and exit 2, and leave the runs directory untouched."""
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from flows.cli import main
from semievol_core import InputError, load_config
from semievol_core.round import prepare

GOOD = [{"id": f"r{i}", "question": f"Question {i}?", "options": json.dumps(["yes", "no", "maybe"]),
         "answer": "AB"[i % 2]} for i in range(4)]


def csv(rows, header=None) -> str:
    return pd.DataFrame(rows, columns=header).to_csv(index=False)


def jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def replace(i, **kw):
    rows = [dict(r) for r in GOOD]
    rows[i].update(kw)
    return rows


# name: (files written beside the config: {name: text | bytes | DataFrame}, config overrides,
#        expected (file name in the message, row text, field text))
CASES = {
    "csv missing question column": ({"l.csv": csv([{k: v for k, v in r.items() if k != "question"} for r in GOOD])},
                                    {}, ("l.csv", "row header", "field question")),
    "csv answer column misnamed": ({"l.csv": csv([{**{k: v for k, v in r.items() if k != "answer"}, "label": "A"}
                                                  for r in GOOD])}, {}, ("l.csv", "row header", "field answer")),
    "csv empty file": ({"l.csv": ""}, {}, ("l.csv", "row header", "field data.labeled")),
    "csv header only": ({"l.csv": "id,question,options,answer\n"}, {}, ("l.csv", "row 1", "field data.labeled")),
    "options not a list": ({"l.csv": csv(replace(2, options="yes or no"))}, {}, ("l.csv", "row 3", "field options")),
    "options a JSON object": ({"l.csv": csv(replace(1, options='{"a": "yes"}'))}, {},
                              ("l.csv", "row 2", "field options")),
    "one option only": ({"l.csv": csv(replace(0, options='["yes"]'))}, {}, ("l.csv", "row 1", "field options")),
    "answer letter outside the options": ({"l.csv": csv(replace(3, answer="E"))}, {},
                                          ("l.csv", "row 4", "field answer")),
    "duplicate ids": ({"l.csv": csv(replace(2, id="r0"))}, {}, ("l.csv", "row 3", "field id")),
    "empty question": ({"l.csv": csv(replace(1, question="   "))}, {}, ("l.csv", "row 2", "field question")),
    "non-UTF-8 bytes": ({"l.csv": csv(GOOD).replace("Question 2?", "Question \udce9?").encode("utf-8", "surrogateescape")},
                        {}, ("l.csv", "row 3", "field question")),
    "1 MB question": ({"l.csv": csv(replace(2, question="word " * 200_000))}, {}, ("l.csv", "row 3", "field question")),
    "NaN answer in labeled": ({"l.csv": csv(replace(3, answer=float("nan")))}, {}, ("l.csv", "row 4", "field answer")),
    "number task, non-numeric gold": ({"l.csv": csv([{"question": "2+2?", "answer": "4"},
                                                     {"question": "3+3?", "answer": "six"}])},
                                      {"data": {"task": "number"}}, ("l.csv", "row 2", "field answer")),
    "label task, answer outside labels": ({"l.csv": csv([{"question": "Up?", "answer": "positive"},
                                                         {"question": "Down?", "answer": "bad"}])},
                                          {"data": {"task": "label", "labels": ["positive", "negative"]}},
                                          ("l.csv", "row 2", "field answer")),
    "jsonl invalid line": ({"l.jsonl": jsonl(GOOD[:2]) + "{not json\n"}, {"data": {"labeled": "l.jsonl"}},
                           ("l.jsonl", "row 3", "field data.labeled")),
    "jsonl line not an object": ({"l.jsonl": jsonl(GOOD[:2]) + "[1, 2]\n"}, {"data": {"labeled": "l.jsonl"}},
                                 ("l.jsonl", "row 3", "field data.labeled")),
    "jsonl an empty option": ({"l.jsonl": jsonl([*GOOD[:2], {**GOOD[2], "options": ["yes", "", "no"]}])},
                                 {"data": {"labeled": "l.jsonl"}}, ("l.jsonl", "row 3", "field options")),
    "jsonl missing answer in labeled": ({"l.jsonl": jsonl([*GOOD[:3], {k: v for k, v in GOOD[3].items()
                                                                       if k != "answer"}])},
                                        {"data": {"labeled": "l.jsonl"}}, ("l.jsonl", "row 4", "field answer")),
    "parquet corrupt": ({"l.parquet": b"PAR1 this is not parquet"}, {"data": {"labeled": "l.parquet"}},
                        ("l.parquet", "row -", "field data.labeled")),
    "parquet missing column": ({"l.parquet": pd.DataFrame(GOOD).drop(columns=["options"])},
                               {"data": {"labeled": "l.parquet"}}, ("l.parquet", "row header", "field options")),
    "parquet duplicate ids": ({"l.parquet": pd.DataFrame(replace(3, id="r1"))}, {"data": {"labeled": "l.parquet"}},
                              ("l.parquet", "row 4", "field id")),
    "parquet no rows": ({"l.parquet": pd.DataFrame(GOOD).iloc[:0]}, {"data": {"labeled": "l.parquet"}},
                        ("l.parquet", "row 1", "field data.labeled")),
    "unsupported file type": ({"l.txt": "hello"}, {"data": {"labeled": "l.txt"}}, ("l.txt", "row -", "data.labeled")),
    "labeled file missing": ({}, {"data": {"labeled": "nope.csv"}}, ("nope.csv", "row -", "field data.labeled")),
    "unlabeled bad answer letter": ({"u.csv": csv(replace(0, answer="Z"))}, {}, ("u.csv", "row 1", "field answer")),
    "config: unknown top-level key": ({}, {"methd": {"n": 4}}, ("round.yaml", "row -", "field methd")),
    "config: typo in a nested key": ({}, {"method": {"thetaa": 40}}, ("round.yaml", "row -", "field method.thetaa")),
    "config: negative n": ({}, {"method": {"n": -1}}, ("round.yaml", "row -", "field method.n")),
    "config: theta above 100": ({}, {"method": {"theta": 150}}, ("round.yaml", "row -", "field method.theta")),
    "config: negative k": ({}, {"method": {"k": -2}}, ("round.yaml", "row -", "field method.k")),
    "config: n is not a number": ({}, {"method": {"n": "four"}}, ("round.yaml", "row -", "field method.n")),
    "config: round name escapes runs_dir": ({}, {"name": "../outside"}, ("round.yaml", "row -", "field name")),
    "config: absolute round name": ({}, {"name": "/tmp/elsewhere"}, ("round.yaml", "row -", "field name")),
    "config: round name with a separator": ({}, {"name": "a/b"}, ("round.yaml", "row -", "field name")),
    "config: hidden round name": ({}, {"name": ".hidden"}, ("round.yaml", "row -", "field name")),
    "config: model with its own code, not trusted": (
        {"m/config.json": '{"auto_map": {"AutoModelForCausalLM": "evil.Model"}}', "m/model.safetensors": b"x"},
        {"model": {"base": "MODELDIR"}}, ("config.json", "row -", "field model.trust_remote_code")),
    "config: model path does not exist": ({}, {"model": {"base": "./no-such-model"}},
                                          ("no-such-model", "row -", "field model.base")),
    "config: model directory without weights": ({"m/config.json": "{}"}, {"model": {"base": "MODELDIR"}},
                                                ("m", "row -", "field model.base")),
    "config: pickle-only model": ({"p/config.json": "{}", "p/pytorch_model.bin": b"\x80\x04"},
                                  {"model": {"base": "PICKLEDIR"}}, ("p", "row -", "field model.base")),
    "config: unknown backend": ({}, {"backend": {"generator": "vlm"}}, ("round.yaml", "row -", "backend.generator")),
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _write_case(tmp_path: Path, files: dict, overrides: dict) -> Path:
    (tmp_path / "l.csv").write_text(csv(GOOD))
    (tmp_path / "u.csv").write_text(csv([{k: v for k, v in r.items()} for r in GOOD]))
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, pd.DataFrame):
            content.to_parquet(path, index=False)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    cfg = _merge({"runs_dir": str(tmp_path / "runs"), "data": {"labeled": "l.csv", "unlabeled": "u.csv"},
                  "method": {"retrieval": False}}, overrides)
    base = cfg.get("model", {}).get("base")
    if base in ("MODELDIR", "PICKLEDIR"):
        cfg["model"]["base"] = str(tmp_path / ("m" if base == "MODELDIR" else "p"))
    path = tmp_path / "round.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, tmp_path, capsys, monkeypatch):
    files, overrides, (file_part, row_part, field_part) = CASES[case]
    config = _write_case(tmp_path, files, overrides)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as err:
        prepare(load_config(config))
    message = str(err.value)
    assert file_part in message and row_part in message and field_part in message, message
    assert "\n" not in message
    assert main(["round", "--config", str(config)]) == 2
    out = capsys.readouterr().err.strip().splitlines()
    assert len(out) == 1 and out[0] == f"semievol: error: {message}"
    assert not (tmp_path / "runs").exists()


def test_corpus_is_large_enough():
    assert len(CASES) >= 25

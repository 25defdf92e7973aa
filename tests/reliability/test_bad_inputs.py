"""A corpus of malformed inputs. Each must raise InputError naming the file, row and field (or config key),
make the CLI print one line and exit 2, and leave the runs directory untouched. VALID holds unusual inputs
that must be accepted as the user meant them."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from flows.cli import main
from semievol_core import InputError, load_config
from semievol_core.round import prepare

GOOD = [{"id": f"r{i}", "question": f"Question {i}?", "options": json.dumps(["yes", "no", "maybe"]),
         "answer": "AB"[i % 2]} for i in range(4)]
UNLABELED = [{**r, "id": f"u{i}", "question": f"Unlabeled question {i}?"} for i, r in enumerate(GOOD)]


def csv(rows, header=None) -> str:
    return pd.DataFrame(rows, columns=header).to_csv(index=False)


def jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def replace(i, **kw):
    rows = [dict(r) for r in GOOD]
    rows[i].update(kw)
    return rows


# Special files: written by _write_case as a directory, a FIFO (reading one would block) or a symlink to itself.
DIR, FIFO, LOOP = "<dir>", "<fifo>", "<symlink loop>"
def raw(text: str, data: str = "labeled: l.csv, unlabeled: u.csv") -> dict:
    """A config given as text (YAML that yaml.safe_dump cannot produce)."""
    return {"round.yaml": f"runs_dir: runs\ndata: {{{data}}}\n{text}"}


BOMB = f"      a: &a [{', '.join(['lol'] * 9)}]\n" + "".join(  # 9**9 'lol's once expanded
    f"      {b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi"))


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
        {"model": {"base": "DIR:m"}}, ("config.json", "row -", "field model.trust_remote_code")),
    "config: model path does not exist": ({}, {"model": {"base": "./no-such-model"}},
                                          ("no-such-model", "row -", "field model.base")),
    "config: model directory without weights": ({"m/config.json": "{}"}, {"model": {"base": "DIR:m"}},
                                                ("m", "row -", "field model.base")),
    "config: pickle-only model": ({"p/config.json": "{}", "p/pytorch_model.bin": b"\x80\x04"},
                                  {"model": {"base": "DIR:p"}}, ("p", "row -", "field model.base")),
    "config: unknown backend": ({}, {"backend": {"generator": "vlm"}}, ("round.yaml", "row -", "backend.generator")),

    # Round two. Hangs: refused before anything expands them.
    "config: alias bomb": (raw("backend:\n  llamafactory:\n    extra:\n" + BOMB), {},
                           ("round.yaml", "row -", "field backend.llamafactory.extra")),
    "config: recursive alias": (raw("backend: {llamafactory: {extra: &x {again: *x}}}\n"), {},
                                ("round.yaml", "row -", "field backend.llamafactory.extra.again")),
    "config: nested 5000 deep": (raw("lora: {target_modules: " + "[" * 5000 + "]" * 5000 + "}\n"), {},
                                 ("round.yaml", "row -", "nested more than 64 levels")),
    # Tracebacks.
    "config: model config.json is a JSON list": ({"m/config.json": "[1, 2]", "m/model.safetensors": b"x"},
                                                 {"model": {"base": "DIR:m"}},
                                                 ("config.json", "row -", "field model.base: must be a JSON object")),
    "config: model config.json is a directory": ({"m/config.json": DIR, "m/model.safetensors": b"x"},
                                                 {"model": {"base": "DIR:m"}},
                                                 ("config.json", "row -", "is a directory")),
    # Silent corruption.
    "csv duplicate column names": ({"l.csv": csv(GOOD).replace("id,question,options,answer",
                                                               "id,question,options,question", 1)},
                                   {}, ("l.csv", "row header", "field question: duplicate column")),
    "csv row with more fields than the header": ({"l.csv": csv(GOOD).replace("Question 2?", "Question 2?,extra")},
                                                 {}, ("l.csv", "row 3", "field data.labeled: 5 fields")),
    "csv row with fewer fields than the header": ({"l.csv": csv(GOOD).replace(",A\n", "\n", 1)},
                                                  {}, ("l.csv", "row 1", "field data.labeled: 3 fields")),
    "jsonl duplicate key": ({"l.jsonl": jsonl(GOOD[:1]) + jsonl(GOOD[1:2])[:-2] + ', "answer": "B"}\n'},
                            {"data": {"labeled": "l.jsonl"}}, ("l.jsonl", "row 2", "field answer: duplicate key")),
    "config: two lora blocks": (raw("lora: {rank: 8}\nmethod: {retrieval: false}\nlora: {alpha: 4}\n"), {},
                                ("round.yaml", "row -", "field lora: duplicate key at lines 3 and 5")),
    "config: a key twice in one block": (raw("method: {retrieval: false, n: 4, n: 2}\n"), {},
                                         ("round.yaml", "row -", "field method.n: duplicate key")),
    "number answer with two numbers": ({"l.csv": csv([{"question": "2+2?", "answer": "4 or 5"}])},
                                       {"data": {"task": "number"}}, ("l.csv", "row 1", "field answer")),
    "number answer overflowing to infinity": ({"l.csv": csv([{"question": "big?", "answer": "1e999"}])},
                                              {"data": {"task": "number"}},
                                              ("l.csv", "row 1", "field answer: answer '1e999' is not a finite")),
    "number answer dividing by zero": ({"l.csv": csv([{"question": "x?", "answer": "1/0"}])},
                                       {"data": {"task": "number"}}, ("l.csv", "row 1", "field answer")),
    # Accepted before, then failing mid-run.
    "config: infinite epochs": ({}, {"lora": {"epochs": float("inf")}}, ("round.yaml", "row -", "field lora.epochs")),
    "config: NaN learning rate": (raw("lora: {lr: .nan}\n"), {}, ("round.yaml", "row -", "field lora.lr")),
    "config: seed beyond numpy": ({}, {"method": {"seed": 2**64}}, ("round.yaml", "row -", "field method.seed")),
    "config: lora seed 2**32": ({}, {"lora": {"seed": 2**32}}, ("round.yaml", "row -", "field lora.seed")),
    "config: negative lora seed": ({}, {"lora": {"seed": -1}}, ("round.yaml", "row -", "field lora.seed")),
    "config: runs_dir is a file": ({"notes.txt": "x"}, {"runs_dir": "notes.txt"},
                                   ("round.yaml", "row -", "field runs_dir")),
    "config: runs_dir under a file": ({"notes.txt": "x"}, {"runs_dir": "notes.txt/runs"},
                                      ("round.yaml", "row -", "field runs_dir")),
    "config: round name with a trailing newline": ({}, {"name": "r1\n"}, ("round.yaml", "row -", "field name")),
    # Messages that misled or broke the one line.
    "csv header cell holding a newline": ({"l.csv": csv(GOOD).replace("question", '"ques\ntion"', 1)}, {},
                                          ("l.csv", "row header", "field question: missing column (found: id, "
                                                                  "ques\\ntion")),
    "csv header with undecodable bytes": ({"l.csv": b"id,qu\xe9stion,options,answer\n" + csv(GOOD).encode()
                                           .split(b"\n", 1)[1]}, {}, ("l.csv", "row header", "\\udce9")),
    "binary file": ({"l.csv": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"}, {},
                    ("l.csv", "row -", "field data.labeled: not UTF-8 text")),
    "UTF-16 csv": ({"l.csv": csv(GOOD).encode("utf-16")}, {}, ("l.csv", "row -", "field data.labeled: not UTF-8")),
    "labeled is a directory": ({"d.csv": DIR}, {"data": {"labeled": "d.csv"}},
                               ("d.csv", "row -", "field data.labeled: is a directory")),
    "labeled is a FIFO": ({"f.csv": FIFO}, {"data": {"labeled": "f.csv"}},
                          ("f.csv", "row -", "field data.labeled: is not a regular file")),
    "labeled is a symlink loop": ({"s.csv": LOOP}, {"data": {"labeled": "s.csv"}},
                                  ("s.csv", "row -", "field data.labeled: cannot be opened")),
    "config: YAML syntax error": (raw("lora: {rank: 8\nmethod: [\n"), {}, ("round.yaml", "row -", "line 4")),
    "jsonl integer question": ({"l.jsonl": jsonl([{"question": 12, "options": ["a", "b"], "answer": "A"}])},
                               {"data": {"labeled": "l.jsonl"}},
                               ("l.jsonl", "row 1", "field question: question must be text, not int")),
    # Judgment calls (README, "When a run fails").
    "labeled and unlabeled the same file": ({}, {"data": {"unlabeled": "l.csv"}},
                                            ("l.csv", "row -", "field data.unlabeled: holds the same records")),
    "labels that differ only in case": ({"l.csv": csv([{"question": "Up?", "answer": "Yes"}])},
                                        {"data": {"task": "label", "labels": ["Yes", "no", "yes"]}},
                                        ("round.yaml", "row -", "field data.labels")),
    "empty embedder directory, retrieval on": ({"e": DIR}, {"model": {"embedder": "DIR:e"},
                                                            "method": {"retrieval": True}},
                                               ("e", "row -", "field model.embedder")),
    "model path like a hub id, offline": ({}, {"model": {"base": "no-such-org/no-such-model"}},
                                          ("no-such-org/no-such-model", "row -", "field model.base: no such local")),
    "answer a number that is another option's text": (
        {"l.csv": csv(replace(1, options=json.dumps(["4", "3", "5"]), answer="3"))}, {},
        ("l.csv", "row 2", "field answer: answer '3' is ambiguous")),
    "answers counted from 0": ({"l.csv": csv(replace(0, answer="0"))}, {}, ("l.csv", "row 1", "counts from 0")),
    "unlabeled file is the labeled one without its answers": (
        {"u.csv": csv([{**r, "answer": ""} for r in GOOD])}, {},
        ("u.csv", "row -", "field data.unlabeled: 4 of its 4 questions are also in data.labeled")),
    "test split pointed at the labeled file": ({}, {"data": {"test": "l.csv"}},
                                               ("l.csv", "row -", "field data.test: 4 of its 4 questions")),
    "csv separated by semicolons": ({"l.csv": csv(GOOD).replace(",", ";")}, {},
                                    ("l.csv", "row header", "field data.labeled: the header is one column")),
    "jsonl with a 5000-digit number": ({"l.jsonl": jsonl(GOOD[:1]).replace('"answer": "A"', '"answer": ' + "7" * 5000)},
                                       {"data": {"labeled": "l.jsonl"}}, ("l.jsonl", "row 1", "not valid JSON")),
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _write_case(tmp_path: Path, files: dict, overrides: dict) -> Path:
    (tmp_path / "l.csv").write_text(csv(GOOD))
    (tmp_path / "u.csv").write_text(csv(UNLABELED))
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, pd.DataFrame):
            content.to_parquet(path, index=False)
        elif content == DIR:
            path.mkdir()
        elif content == FIFO:
            os.mkfifo(path)
        elif content == LOOP:
            path.symlink_to(path.name)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    path = tmp_path / "round.yaml"
    if "round.yaml" in files:
        return path
    cfg = _merge({"runs_dir": str(tmp_path / "runs"), "data": {"labeled": "l.csv", "unlabeled": "u.csv"},
                  "method": {"retrieval": False}}, overrides)
    for key, value in cfg.get("model", {}).items():  # "DIR:m": the directory m the case wrote
        if isinstance(value, str) and value.startswith("DIR:"):
            cfg["model"][key] = str(tmp_path / value[4:])
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, tmp_path, capsys, monkeypatch):
    files, overrides, (file_part, row_part, field_part) = CASES[case]
    config = _write_case(tmp_path, files, overrides)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(InputError) as err:
        prepare(load_config(config))
    assert time.perf_counter() - start < 10  # a loaded machine; each takes well under a second here
    message = str(err.value)
    assert file_part in message and row_part in message and field_part in message, message
    assert message.isprintable()  # one line, no raw control characters or bytes
    assert main(["round", "--config", str(config)]) == 2
    out = capsys.readouterr().err.strip().splitlines()
    assert len(out) == 1 and out[0] == f"semievol: error: {message}"
    assert not (tmp_path / "runs").exists()


def test_corpus_is_large_enough():
    assert len(CASES) >= 25


def test_alias_bomb_is_refused_within_a_deadline(tmp_path):
    """The bomb used to hang once the config was dumped, at once with --name. A fresh process, a deadline
    generous enough for a loaded machine (imports included), and the CLI's one line and exit code 2."""
    config = _write_case(tmp_path, raw("backend:\n  llamafactory:\n    extra:\n" + BOMB), {})
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "round", "--config", str(config), "--name", "x"],
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "field backend.llamafactory.extra" in proc.stderr
    assert not (tmp_path / "runs").exists()


def _records(split):
    return lambda ctx: [(r.question, r.answer) for r in ctx.splits[split].records]


# name: (files, config overrides, check on the prepared context: what the user meant)
VALID = {
    "jsonl strings holding U+2028 and NEL": (
        {"l.jsonl": "".join(json.dumps({**r, "question": f"Line\u2028two\x85{i}?"}, ensure_ascii=False) + "\n"
                            for i, r in enumerate(GOOD))}, {"data": {"labeled": "l.jsonl"}},
        lambda ctx: [r.question for r in ctx.splits["labeled"].records] == [f"Line\u2028two\x85{i}?"
                                                                            for i in range(4)]),
    "labels yes and no (YAML 1.1 booleans)": (
        {"l.csv": csv([{"question": "Up?", "answer": "yes"}, {"question": "Down?", "answer": "No"}]),
         "u.csv": csv([{"question": "Sideways?"}]),
         **raw("method: {retrieval: false}\n", "labeled: l.csv, unlabeled: u.csv, task: label, labels: [yes, no]")},
        {},
        lambda ctx: ctx.cfg.data.labels == ["yes", "no"]
        and _records("labeled")(ctx) == [("Up?", "yes"), ("Down?", "no")]),
    "name 2024-01-01 (a YAML 1.1 date)": (raw("method: {retrieval: false}\nname: 2024-01-01\n"), {},
                                          lambda ctx: ctx.cfg.name == "2024-01-01"
                                          and ctx.rd.root.name == "2024-01-01"),
    "name 1.10 and column 010 as typed": (
        {"l.csv": csv(GOOD).replace("question", "010", 1), "u.csv": csv(UNLABELED).replace("question", "010", 1),
         **raw("method: {retrieval: false}\nname: 1.10\n", "labeled: l.csv, unlabeled: u.csv, "
                                                         "columns: {question: 010}")}, {},
        lambda ctx: ctx.cfg.name == "1.10" and ctx.cfg.data.columns.question == "010"),
    "number answers: exponent, fraction, currency, percent": (
        {"l.csv": csv([{"question": f"q{i}?", "answer": a}
                       for i, a in enumerate(["1.5e3", "1/2", "-2.5E-1", "$1,200", "45%", " 7 "])]),
         "u.csv": csv([{"question": "x?"}])},
        {"data": {"task": "number"}},
        lambda ctx: [a for _, a in _records("labeled")(ctx)] == ["1500.0", "0.5", "-0.25", "1200.0", "45.0", "7.0"]),
    "csv quoted newlines and blank lines": (
        {"l.csv": csv(replace(1, question="Two\nlines?")).replace("\n", "\n\n", 2)}, {},
        lambda ctx: [q for q, _ in _records("labeled")(ctx)][:2] == ["Question 0?", "Two\nlines?"]),
    "YAML anchors, aliases and a merge key that is overridden": (
        raw("method: {retrieval: false}\nlora: {<<: {rank: 8, alpha: 16}, rank: 4, seed: &s 7}\n"
            "backend: {vllm: {max_lora_rank: *s}}\n"), {},
        lambda ctx: (ctx.cfg.lora.rank, ctx.cfg.lora.alpha, ctx.cfg.backend.vllm.max_lora_rank) == (4, 16, 7)),
    "largest seeds": ({}, {"method": {"seed": 2**32 - 1}, "lora": {"seed": 2**32 - 1}},
                      lambda ctx: (ctx.cfg.method.seed, ctx.cfg.lora.seed) == (2**32 - 1, 2**32 - 1)),
    "gold label in another case": (
        {"l.csv": csv([{"question": "Up?", "answer": "POSITIVE"}]), "u.csv": csv([{"question": "x?"}])},
        {"data": {"task": "label", "labels": ["positive", "negative"]}},
        lambda ctx: _records("labeled")(ctx) == [("Up?", "positive")]),
    "retrieval off: an empty embedder directory is not checked": ({"e": DIR}, {"model": {"embedder": "DIR:e"}},
                                                                  lambda ctx: True),
    "spreadsheet export: spaces after commas, trailing empty columns, an empty row": (
        {"l.csv": csv(GOOD).replace(",", ", ").replace("\n", ",,\n") + ",,,,,,\n"}, {},
        lambda ctx: _records("labeled")(ctx) == [(r["question"], r["answer"]) for r in GOOD]),
    "a .json file holding one array (pandas' to_json)": (
        {"l.json": pd.DataFrame(GOOD).assign(options=lambda d: d["options"].map(json.loads)).to_json(
            orient="records", indent=2)}, {"data": {"labeled": "l.json"}},
        lambda ctx: _records("labeled")(ctx) == [(r["question"], r["answer"]) for r in GOOD]),
    "answers as option text and as 1-based numbers": (
        {"l.csv": csv([{**r, "answer": a} for r, a in zip(GOOD, ["maybe", "(b)", "1", "No"])])}, {},
        lambda ctx: [a for _, a in _records("labeled")(ctx)] == ["C", "B", "A", "B"]
        and ctx.splits["labeled"].notes == ["answers given as option text mapped to letters: 2",
                                            "digit answers mapped to letters: 1"]),
}


@pytest.mark.parametrize("case", list(VALID))
def test_valid_input(case, tmp_path, monkeypatch):
    files, overrides, check = VALID[case]
    config = _write_case(tmp_path, files, overrides)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ctx = prepare(load_config(config))
    assert check(ctx)
    assert not (tmp_path / "runs").exists()

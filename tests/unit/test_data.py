import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from semievol_core import InputError, load_dataset, parse_config
from semievol_core.config import Columns
from semievol_core.data import load_splits

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
HEADER = "id,question,options,answer\n"
OPTS = '"[""x"", ""y"", ""z""]"'


def write(tmp_path, name, text: str | bytes):
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def expect(path, row, field, **kw):
    with pytest.raises(InputError) as e:
        load_dataset(path, **kw)
    err = e.value
    assert (err.file, err.row, err.field) == (str(path), row, field), str(err)
    assert str(path) in str(err) and (field or "-") in str(err)
    return err


def test_samples_load_with_fingerprints():
    fpb = load_dataset(SAMPLES / "fpb" / "labeled.csv", require_answers=True)
    assert len(fpb) == 64 and fpb.records[0].id == "1"  # no id column: rows are numbered
    assert set(r.answer for r in fpb.records) <= {"A", "B", "C"}
    assert fpb.fingerprint == load_dataset(SAMPLES / "fpb" / "labeled.csv").fingerprint
    arc = load_dataset(SAMPLES / "arc" / "test.csv", require_answers=True)
    assert arc.records[0].id and len(arc.fingerprint) == 64


def test_same_content_same_fingerprint_across_formats(tmp_path):
    csv = SAMPLES / "arc" / "labeled.csv"
    df = pd.read_csv(csv)
    df["options"] = df["options"].map(json.loads)
    df.to_parquet(tmp_path / "a.parquet")
    df.to_json(tmp_path / "a.jsonl", orient="records", lines=True)
    fps = {load_dataset(p).fingerprint for p in (csv, tmp_path / "a.parquet", tmp_path / "a.jsonl")}
    assert len(fps) == 1


def test_hf_dataset_from_disk_and_column_mapping(tmp_path):
    import datasets
    ds = datasets.Dataset.from_dict({"qid": ["q1", "q2"], "text": ["2+2?", "3*3?"], "gold": ["4", "9"],
                                     "topic": ["add", "mul"]})
    ds.save_to_disk(str(tmp_path / "ds"))
    cols = Columns(id="qid", question="text", answer="gold", options=None, category="topic")
    got = load_dataset(f"hf:{tmp_path / 'ds'}", task="number", columns=cols, require_answers=True)
    assert [(r.id, r.answer, r.category) for r in got.records] == [("q1", "4.0", "add"), ("q2", "9.0", "mul")]


def test_arc_digit_answers_are_mapped_and_reported(tmp_path):
    p = write(tmp_path, "u.csv", HEADER + f"a,Q1?,{OPTS},2\nb,Q2?,{OPTS},C\n")
    ds = load_dataset(p)
    assert [r.answer for r in ds.records] == ["B", "C"] and ds.notes == ["digit answers mapped to letters: 1"]


def test_missing_column(tmp_path):
    expect(write(tmp_path, "m.csv", "id,question,options\na,Q?,x\n"), 0, "answer", require_answers=True)


def test_empty_file(tmp_path):
    expect(write(tmp_path, "e.csv", ""), 0, None)


def test_header_only(tmp_path):
    expect(write(tmp_path, "h.csv", HEADER), 1, None)


def test_options_not_a_list(tmp_path):
    expect(write(tmp_path, "o.csv", HEADER + f"a,Q?,{OPTS},A\nb,Q2?,just text,A\n"), 2, "options")


def test_answer_outside_options(tmp_path):
    expect(write(tmp_path, "l.csv", HEADER + f"a,Q?,{OPTS},A\nb,Q2?,{OPTS},D\n"), 2, "answer")


def test_duplicate_ids(tmp_path):
    err = expect(write(tmp_path, "d.csv", HEADER + f"a,Q?,{OPTS},A\nb,Q?,{OPTS},A\na,Q3?,{OPTS},B\n"), 3, "id")
    assert "first at row 1" in str(err)


def test_empty_question(tmp_path):
    expect(write(tmp_path, "q.csv", HEADER + f"a,Q?,{OPTS},A\nb,  ,{OPTS},A\n"), 2, "question")


def test_undecodable_bytes(tmp_path):
    body = (HEADER + f"a,Q?,{OPTS},A\nb,Caf").encode() + b"\xe9 au lait?," + f"{OPTS},B\n".encode()
    expect(write(tmp_path, "b.csv", body), 2, "question")


def test_labeled_file_without_answers(tmp_path):
    expect(write(tmp_path, "n.csv", HEADER + f"a,Q?,{OPTS},A\nb,Q2?,{OPTS},\n"), 2, "answer",
           require_answers=True)
    # the same file is fine as unlabeled data
    assert load_dataset(tmp_path / "n.csv").records[1].answer is None


def test_jsonl_bad_line_and_non_numeric_gold(tmp_path):
    expect(write(tmp_path, "j.jsonl", '{"question": "1+1?", "answer": "2"}\n{"question": \n'), 2, None,
           task="number")
    expect(write(tmp_path, "k.jsonl", '{"question": "1+1?", "answer": "two"}\n'), 1, "answer", task="number")


def test_label_task_answer_outside_set(tmp_path):
    p = write(tmp_path, "s.csv", "question,answer\nGood news,positive\nBad news,awful\n")
    expect(p, 2, "answer", task="label", labels=["negative", "neutral", "positive"])


def test_config_typos_and_limits_are_errors():
    base = {"data": {"labeled": "l.csv", "unlabeled": "u.csv"}}
    with pytest.raises(InputError, match="method.thetta"):
        parse_config({**base, "method": {"thetta": 50}})
    with pytest.raises(InputError, match="method.theta"):
        parse_config({**base, "method": {"theta": 150}})
    with pytest.raises(InputError, match="method.n"):
        parse_config({**base, "method": {"n": 0}})
    with pytest.raises(InputError, match="name"):
        parse_config({**base, "name": "../escape"})


def test_nothing_written_when_validation_fails(tmp_path):
    from semievol_core import run_round
    bad = write(tmp_path, "bad.csv", HEADER + f"a,Q?,{OPTS},Q\n")
    shutil.copy(SAMPLES / "fpb" / "unlabeled.csv", tmp_path / "u.csv")
    cfg = parse_config({"runs_dir": str(tmp_path / "runs"), "data": {"labeled": str(bad),
                                                                     "unlabeled": str(tmp_path / "u.csv")}})
    with pytest.raises(InputError):
        run_round(cfg)
    assert not (tmp_path / "runs").exists()


def test_splits_subsample_is_seeded():
    raw = {"data": {"labeled": str(SAMPLES / "fpb" / "labeled.csv"),
                    "unlabeled": str(SAMPLES / "fpb" / "unlabeled.csv"), "limit_labeled": 10, "limit_unlabeled": 20}}
    cfg = parse_config(raw).data
    a, b = load_splits(cfg), load_splits(cfg)
    ids = [r.id for r in a["labeled"].records]
    assert ids == [r.id for r in b["labeled"].records]
    assert len(a["labeled"]) == 10 and len(a["unlabeled"]) == 20
    full = [r.id for r in load_splits(parse_config({"data": {**raw["data"], "limit_labeled": None}}).data)[
        "labeled"].records]
    assert ids != full[:10] and [i for i in full if i in ids] == ids  # a sample, kept in file order
    other = load_splits(parse_config({"data": {**raw["data"], "sample_seed": 1}}).data)
    assert [r.id for r in other["labeled"].records] != ids
    assert [r.id for r in other["unlabeled"].records] != [r.id for r in a["unlabeled"].records]

"""Inputs as users hand them over: answers written as option text or numbers, spreadsheet exports, JSON arrays,
splits that share their questions. Each either loads as meant or fails naming file, row and field."""
import json

import pytest

from semievol_core import InputError, load_dataset, parse_config
from semievol_core.data import load_splits

HEADER = "id,question,options,answer\n"


def opts(*texts):
    return '"' + json.dumps(list(texts)).replace('"', '""') + '"'


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def error(path, **kw) -> InputError:
    with pytest.raises(InputError) as e:
        load_dataset(path, **kw)
    return e.value


def test_answer_as_option_text_maps_to_its_letter(tmp_path):
    p = write(tmp_path, "t.csv", HEADER + f"a,Q?,{opts('red', 'green', 'blue')},Blue\nb,Q2?,{opts('x', 'y')},B\n")
    ds = load_dataset(p)
    assert [r.answer for r in ds.records] == ["C", "B"]
    assert ds.notes == ["answers given as option text mapped to letters: 1"]


def test_a_number_that_is_also_an_option_text_is_ambiguous(tmp_path):
    # '3' is option B's text and, read as a 1-based number, option C: a guess would corrupt the label.
    p = write(tmp_path, "t.csv", HEADER + f"a,Sides of a triangle?,{opts('4', '3', '5', '6')},3\n")
    err = error(p)
    assert (err.row, err.field) == (1, "answer") and "ambiguous" in str(err) and "'5'" in str(err)


def test_number_and_text_readings_that_agree_are_not_ambiguous(tmp_path):
    p = write(tmp_path, "t.csv", HEADER + f"a,Q?,{opts('1', '2', '3')},2\n")
    assert load_dataset(p).records[0].answer == "B"


def test_a_letter_is_a_letter_even_when_an_option_text_is_one(tmp_path):
    # ARC: 'Which element ...' with options such as 'O_{2}' and 'C'; the answer column holds letters.
    p = write(tmp_path, "t.csv", HEADER + f"a,Q?,{opts('C', 'H', 'O')},C\n")
    assert load_dataset(p).records[0].answer == "C"


def test_zero_based_answers_are_named(tmp_path):
    err = error(write(tmp_path, "t.csv", HEADER + f"a,Q?,{opts('x', 'y')},0\n"))
    assert err.field == "answer" and "counts from 0" in str(err)


@pytest.mark.parametrize("answer", ["②", "²", "1" * 5000])
def test_odd_digit_strings_are_input_errors(tmp_path, answer):
    err = error(write(tmp_path, "t.csv", HEADER + f"a,Q?,{opts('x', 'y')},{answer}\n"))
    assert (err.row, err.field) == (1, "answer")


def test_spreadsheet_export_loads(tmp_path):
    # Excel: spaces after the commas, trailing unnamed empty columns, empty rows.
    text = ('id, question, options, answer,,\n'
            f'a, Q1?, {opts("x", "y")}, A,,\n'
            ',,,,,\n'
            f'b, "Q2, with a comma?", {opts("x", "y")}, B,,\n')
    ds = load_dataset(write(tmp_path, "t.csv", text), require_answers=True)
    assert [(r.id, r.question, r.answer) for r in ds.records] == [("a", "Q1?", "A"), ("b", "Q2, with a comma?", "B")]


def test_semicolon_csv_gets_a_hint(tmp_path):
    err = error(write(tmp_path, "t.csv", "id;question;options;answer\na;Q?;[];A\n"))
    assert err.row == 0 and "commas" in str(err) and "';'" in str(err)


def test_json_array_file(tmp_path):
    rows = [{"id": "a", "question": "Q?", "options": ["x", "y"], "answer": "B"}]
    p = tmp_path / "t.json"
    p.write_text(json.dumps(rows, indent=2))
    assert [r.answer for r in load_dataset(p).records] == ["B"]
    p.write_text(json.dumps(rows + ["not an object"]))
    assert error(p).row == 2


@pytest.mark.parametrize("line", ['{"id": "a", "question": "q", "options": ' + "[" * 100_000,
                                  '{"id": "a", "question": "q", "options": ["x", "y"], "answer": ' + "1" * 5000 + "}"])
def test_absurd_json_is_an_input_error(tmp_path, line):
    err = error(write(tmp_path, "t.jsonl", line + "\n"))
    assert err.row == 1 and "not valid JSON" in str(err)


def test_absurd_options_cell_is_an_input_error(tmp_path):
    err = error(write(tmp_path, "t.csv", HEADER + 'a,Q?,"' + "[" * 100_000 + '",A\n'))
    assert (err.row, err.field) == (1, "options")


def _splits(tmp_path, labeled, unlabeled, test):
    cfg = parse_config({"data": {"labeled": str(write(tmp_path, "l.csv", labeled)),
                                 "unlabeled": str(write(tmp_path, "u.csv", unlabeled)),
                                 "test": str(write(tmp_path, "t.csv", test))}})
    return load_splits(cfg.data)


def _rows(qs, answers=True):
    return HEADER + "".join(f"{q},{q}?,{opts('x', 'y')},{'A' if answers else ''}\n" for q in qs)


def test_unlabeled_split_that_is_the_labeled_one_without_answers(tmp_path):
    with pytest.raises(InputError) as e:
        _splits(tmp_path, _rows("abcd"), _rows("abcd", answers=False), _rows("wxyz"))
    assert e.value.field == "data.unlabeled" and "4 of its 4 questions" in str(e.value)


def test_test_split_pointed_at_the_training_data(tmp_path):
    with pytest.raises(InputError) as e:
        _splits(tmp_path, _rows("abcd"), _rows("efgh", answers=False), _rows("abcz"))
    assert e.value.field == "data.test" and "labeled" in str(e.value)


def test_a_few_shared_questions_are_noted(tmp_path):
    # Published splits share a few (FPB's share 3 sentences): reported in the round's data notes, not refused.
    sp = _splits(tmp_path, _rows("abcd"), _rows("aefghi", answers=False), _rows("wxyz"))
    assert sp["unlabeled"].notes == ["1 of its questions also in the labeled split"] and not sp["test"].notes


def test_choice_task_needs_an_options_column():
    with pytest.raises(InputError) as e:
        parse_config({"data": {"labeled": "l.csv", "unlabeled": "u.csv", "columns": {"options": None}}})
    assert "columns.options" in str(e.value)


def test_data_paths_expand_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = parse_config({"data": {"labeled": "~/l.csv", "unlabeled": "hf:~/u"}})
    assert cfg.data.labeled == str(tmp_path / "l.csv") and cfg.data.unlabeled == "hf:~/u"


def test_hf_dataset_directory_beside_the_config(tmp_path):
    from semievol_core import load_config
    (tmp_path / "cfg" / "ds").mkdir(parents=True)
    path = tmp_path / "cfg" / "r.yaml"
    path.write_text("data: {labeled: l.csv, unlabeled: 'hf:ds:train', test: 'hf:org/name'}\n")
    data = load_config(path).data
    assert data.unlabeled == f"hf:{tmp_path / 'cfg' / 'ds'}:train" and data.test == "hf:org/name"
    assert data.labeled == str(tmp_path / "cfg" / "l.csv")

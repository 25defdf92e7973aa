"""The continuous evolution's watermark: which rows of the unlabeled source are new."""
from flows.evolve import arrivals
from semievol_core import load_dataset

HEADER = "question,options\n"


def rows(tmp_path, *questions):
    p = tmp_path / "u.csv"
    p.write_text(HEADER + "".join(f'{q},"[""x"", ""y""]"\n' for q in questions))
    return load_dataset(p)


def test_a_source_without_ids_is_followed_by_its_questions(tmp_path):
    first = arrivals(rows(tmp_path, "a?", "b?"), set())
    assert [r.question for r in first] == ["a?", "b?"] and all(r.id.startswith("q-") for r in first)
    taken = {r.id for r in first}
    # The file replaced by the next day's batch: row numbers 1 and 2 again, other questions.
    assert [r.question for r in arrivals(rows(tmp_path, "c?", "d?"), taken)] == ["c?", "d?"]
    # The file grown instead, with one question twice among the new rows: each taken once.
    again = arrivals(rows(tmp_path, "a?", "b?", "e?", "e?"), taken)
    assert [r.question for r in again] == ["e?"]
    assert again[0].id == arrivals(rows(tmp_path, "e?"), set())[0].id  # the same question, the same id


def test_a_source_with_ids_is_followed_by_its_ids(tmp_path):
    p = tmp_path / "u.csv"
    p.write_text('id,question,options\nr1,a?,"[""x"", ""y""]"\nr2,a?,"[""x"", ""y""]"\n')
    assert [r.id for r in arrivals(load_dataset(p), {"r1"})] == ["r2"]


def test_a_watermark_of_row_numbers_is_still_honoured(tmp_path):
    # Written by a version that followed row numbers: rows 1 and 2 were taken; row 3 is new.
    new = arrivals(rows(tmp_path, "a?", "b?", "c?"), {"1", "2"})
    assert [r.question for r in new] == ["c?"]


def test_questions_already_known_or_repeated_are_set_aside(tmp_path):
    from flows.evolve import unknown
    from semievol_core.data import question_key

    p = tmp_path / "u.csv"
    # A stream with ids repeats its questions under new ids; case and spacing do not make another question.
    p.write_text('id,question,options\nr1,Labeled?,"[""x"", ""y""]"\nr2,new?,"[""x"", ""y""]"\n'
                 'r3,"New? ","[""x"", ""y""]"\nr4,in test?,"[""x"", ""y""]"\nr5,new?,"[""x"", ""z""]"\n')
    new = load_dataset(p).records
    known = {question_key(r) for r in new if r.id in ("r1", "r4")}
    keep, skip = unknown(new, known)
    assert [r.id for r in keep] == ["r2", "r5"]  # other options: another question
    assert [r.id for r in skip] == ["r1", "r3", "r4"]
    assert unknown([], known) == ([], [])

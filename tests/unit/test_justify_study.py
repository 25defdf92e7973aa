"""benchmarks/justify.py's arithmetic on a hand-made round: five disagreements, one agreement, figures worked
out by hand."""
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.justify import majority_vote, merged, study  # noqa: E402

CONFIGS = [{"warm": False, "shots": 2}, {"warm": True, "shots": 0}, {"warm": False, "shots": 3},
           {"warm": True, "shots": 3}]


def test_majority_vote_breaks_ties_by_configuration_order():
    assert majority_vote(["C", "B", "B", "C"]) == "C"
    assert majority_vote([None, "A", "B", "B"]) == "B"
    assert majority_vote([None, None]) is None


def _rows():
    # id, candidates (configuration order), justified?, justified answer, gold
    return [("r1", ["C", "B", "C", "C"], True, "B", "C"),   # the warm 0-shot answer against three C's
            ("r2", ["A", "B", "C", "B"], True, "B", "B"),
            ("r3", ["C", "B", "C", "A"], True, "A", "A"),   # a candidate's answer, not the majority's
            ("r4", ["A", "B", "", "C"], True, "C", "C"),    # one configuration gave no answer
            ("r5", ["A", "C", "A", "C"], True, "B", "A"),   # none of the candidates said B
            ("r6", ["B", "B", "B", "B"], False, "B", "B")]  # agreed: not self-justified, not counted


def test_study_per_gold_class():
    rows = _rows()
    justified = pd.DataFrame({"id": [r[0] for r in rows], "candidate_answers": [r[1] for r in rows],
                              "justified": [r[2] for r in rows], "answer": [r[3] for r in rows]})
    got = study(justified, CONFIGS, {r[0]: r[4] for r in rows})
    assert got["justified_records"] == 5 and got["warm_0shot_config"] == 1
    assert got["justified_answers"] == {"A": 1, "B": 3, "C": 1}
    all_, c, a = (got["by_gold_class"][k] for k in ("all", "C", "A"))
    assert list(got["by_gold_class"]) == ["A", "B", "C", "all"]
    assert all_["n"] == 5 and all_["in_candidates"] == pytest.approx(4 / 5)
    assert all_["equals_warm_0shot"] == pytest.approx(2 / 5)  # r1 and r2
    # right: self-justify r2, r3, r4; the vote (C, B, C, A: a three-way tie goes to the first, A: tie) r1, r2, r5;
    # warm 0-shot (B, B, B, B, C) r2
    assert all_["accuracy"] == pytest.approx({"self_justify": 3 / 5, "majority_vote": 3 / 5, "warm_0shot": 1 / 5})
    assert all_["no_strict_majority"] == pytest.approx(4 / 5)  # only r1's C is more than half the answers
    assert c["n"] == 2 and c["accuracy"] == pytest.approx({"self_justify": 0.5, "majority_vote": 0.5,
                                                            "warm_0shot": 0.0})
    assert a["n"] == 2 and a["accuracy"]["self_justify"] == pytest.approx(0.5) and a["equals_warm_0shot"] == 0


def test_without_a_warm_0shot_configuration():
    rows = _rows()[:2]
    justified = pd.DataFrame({"id": [r[0] for r in rows], "candidate_answers": [r[1] for r in rows],
                              "justified": [True, True], "answer": [r[3] for r in rows]})
    got = study(justified, [{"warm": False, "shots": s} for s in range(4)], {r[0]: r[4] for r in rows})
    assert got["warm_0shot_config"] is None
    assert got["by_gold_class"]["all"]["equals_warm_0shot"] is None
    assert got["by_gold_class"]["all"]["accuracy"]["warm_0shot"] is None


def test_an_earlier_study_is_kept_unless_its_round_is_studied_again(tmp_path):
    earlier = tmp_path / "justify.json"
    assert merged(earlier, [{"round": "a", "v": 1}]) == [{"round": "a", "v": 1}]  # none yet
    earlier.write_text(json.dumps({"rounds": [{"round": "fpb", "v": 0}, {"round": "a", "v": 0}]}))
    assert merged(earlier, [{"round": "a", "v": 1}]) == [{"round": "fpb", "v": 0}, {"round": "a", "v": 1}]
    earlier.write_text("{not json")
    with pytest.raises(SystemExit, match="unreadable earlier results"):
        merged(earlier, [])

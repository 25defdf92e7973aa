"""The paired bootstrap (the round card's evolved-minus-warm line, the quality benchmark's differences), on
outcomes whose answer is known."""
import pandas as pd
import pytest

from semievol_core.evaluate import evolved_vs_warm, paired_difference, verdict


def test_identical_models_differ_by_nothing():
    d = paired_difference([1, 0, 1, 1, 0], [1, 0, 1, 1, 0])
    assert d["difference"] == 0 and d["ci95"] == [0, 0] and d["p_not_better"] == 1


def test_pairing_cancels_what_both_share():
    # a is right wherever b is, and on 2 more of 40 items: unpaired intervals of two 50% accuracies would overlap
    # widely; paired, the difference is never negative.
    b = [1, 0] * 20
    a = list(b)
    a[1] = a[3] = 1
    d = paired_difference(a, b, seed=1)
    assert d["difference"] == pytest.approx(0.05) and d["ci95"][0] >= 0 and d["n"] == 40
    assert 0 < d["p_not_better"] < 0.2  # resamples that miss both items tie


def test_a_worse_model_comes_out_behind():
    d = paired_difference([0] * 10, [1] * 10)
    assert d["difference"] == -1 and d["ci95"] == [-1, -1] and d["p_not_better"] == 1


def test_unpaired_inputs_are_refused():
    with pytest.raises(ValueError):
        paired_difference([1, 0], [1])


def test_evolved_vs_warm_pairs_the_same_test_items_from_the_predictions():
    rows = []
    for i in range(20):  # warm right on 10 items; evolved right on the same 10 and on 6 more
        gold = "A"
        rows.append({"model": "warm", "id": f"t{i:02d}", "answer": "A" if i < 10 else "B", "gold": gold})
        rows.append({"model": "evolved", "id": f"t{19 - i:02d}", "answer": "A" if 19 - i < 16 else None,
                     "gold": gold})
    d = evolved_vs_warm(pd.DataFrame(rows), "choice")
    assert d["difference"] == pytest.approx(0.3) and d["n"] == 20 and d["ci95"][0] > 0
    assert verdict(d).startswith("the unlabeled data made the model better")
    assert evolved_vs_warm(pd.DataFrame([r for r in rows if r["model"] == "warm"]), "choice") is None


def test_the_verdict_says_when_the_split_is_too_small_to_tell():
    d = paired_difference([1, 0, 1, 0], [0, 1, 1, 0])
    assert d["ci95"][0] < 0 < d["ci95"][1]
    assert verdict(d).startswith("no difference this test split can show: 4 items")


def test_the_verdict_when_both_are_right_on_the_same_items():
    d = paired_difference([1, 0, 1], [1, 0, 1])
    assert verdict(d).startswith("the two are right on exactly the same test items")

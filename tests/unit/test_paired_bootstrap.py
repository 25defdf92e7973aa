"""The quality benchmark's paired bootstrap, on outcomes whose answer is known."""
import pytest

from benchmarks.quality import paired_difference


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

"""benchmarks/recipe.py's bookkeeping: the seeded split of the labeled file and the recalls that tell a model
that learned the task from one that learned the label prior."""
import pandas as pd
import pytest

from benchmarks.recipe import recalls, recipe, split_labeled


def test_the_split_is_seeded_disjoint_and_complete(tmp_path):
    src = tmp_path / "labeled.csv"
    pd.DataFrame({"question": [f"q{i}" for i in range(10)], "answer": list("ABCABCABCA")}).to_csv(src, index=False)
    (a := tmp_path / "a").mkdir()
    (b := tmp_path / "b").mkdir()
    train, held, n_train, n_held = split_labeled(src, 0.2, 0, a)
    assert (n_train, n_held) == (8, 2)
    qt, qh = set(pd.read_csv(train)["question"]), set(pd.read_csv(held)["question"])
    assert not qt & qh and len(qt | qh) == 10
    assert split_labeled(src, 0.2, 0, b)[2:] == (8, 2) and set(pd.read_csv(b / "held_out.csv")["question"]) == qh
    assert set(pd.read_csv(split_labeled(src, 0.2, 1, b)[1])["question"]) != qh  # another seed, other rows


def test_a_model_that_answers_the_prior_has_a_macro_recall_of_one_over_the_classes():
    gold = list("AABBBC")
    prior = pd.DataFrame({"gold": gold, "answer": ["B"] * 6})
    assert recalls(prior) == {"per_class": {"A": 0.0, "B": 1.0, "C": 0.0}, "macro": pytest.approx(1 / 3)}
    mixed = pd.DataFrame({"gold": gold, "answer": ["A", None, "B", "C", "B", "C"]})
    assert recalls(mixed)["per_class"] == {"A": 0.5, "B": pytest.approx(2 / 3), "C": 1.0}


def test_recipes_are_lr_colon_epochs():
    assert recipe("1e-4:2") == (1e-4, 2.0)
    with pytest.raises(Exception, match="LR:EPOCHS"):
        recipe("1e-4")

import numpy as np
import pytest

from semievol_core.collaborate import Configuration, agreed_answer, config_space, draw_configs
from semievol_core.config import MethodParams
from semievol_core.select import select_mask


def test_draw_is_seeded_and_distinct():
    a = draw_configs(MethodParams(seed=3), warm_available=True)
    assert a == draw_configs(MethodParams(seed=3), warm_available=True)
    assert len(a) == 4 and len(set(a)) == 4
    draws = {tuple(draw_configs(MethodParams(seed=s), True)) for s in range(20)}
    assert len(draws) > 1  # the seed matters


def test_space_is_the_papers():
    space = set(config_space(3, True, True))
    assert space == {Configuration(w, s) for w in (True, False) for s in range(4)}
    seen = set()
    for seed in range(50):
        seen |= set(draw_configs(MethodParams(seed=seed), True))
    assert seen == space  # every configuration of the space can be drawn


def test_ablations_narrow_the_space():
    assert set(draw_configs(MethodParams(warmup=False), False)) <= {Configuration(False, s) for s in range(4)}
    assert all(c.shots == 0 for c in draw_configs(MethodParams(retrieval=False), True))
    one = draw_configs(MethodParams(collaboration=False), True)
    assert one == [Configuration(True, 3)]
    many = draw_configs(MethodParams(n=6, retrieval=False), True)  # space of 2: repeats after both are used
    assert len(many) == 6 and set(many[:2]) == {Configuration(True, 0), Configuration(False, 0)}


def test_agreement():
    assert agreed_answer(["A", "A", "A", "A"]) == "A"
    assert agreed_answer(["A", "A", "B", "A"]) is None
    assert agreed_answer(["A", None, "A", "A"]) is None  # an empty extraction is disagreement
    assert agreed_answer([None, None]) is None


def test_selection_keeps_the_theta_percentile():
    nll = np.array([0.9, 0.1, 0.5, 0.3, 0.7])
    tau, mask = select_mask(nll, 50)
    assert tau == np.percentile(nll, 50) == 0.5
    assert mask.tolist() == [False, True, True, True, False]
    tau, mask = select_mask(nll, 100)
    assert mask.all()
    tau, mask = select_mask(nll, 50, enabled=False)
    assert tau is None and mask.all()


def test_per_class_selection_keeps_theta_of_each_class():
    from semievol_core.select import select
    # class A: confident (low NLL), class B: unsure. The pool's median keeps only A; per class keeps half of each.
    nll = [0.1, 0.2, 0.3, 0.4, 2.0, 2.1, 2.2, 2.3]
    answers = ["A"] * 4 + ["B"] * 4
    agreed = [False] * 8
    tau, per_class, mask, gated = select(nll, answers, agreed, 50)
    assert tau == np.percentile(nll, 50) and per_class == {} and gated == 0
    assert mask.tolist() == [True] * 4 + [False] * 4  # the paper's rule, as select_mask gives it
    assert (tau, mask.tolist()) == (select_mask(nll, 50)[0], select_mask(nll, 50)[1].tolist())
    tau, per_class, mask, _ = select(nll, answers, agreed, 50, scope="class")
    assert tau is None and per_class == pytest.approx({"A": 0.25, "B": 2.15})
    assert mask.tolist() == [True, True, False, False, True, True, False, False]


def test_agreement_gate_keeps_agreed_records_whatever_their_nll():
    from semievol_core.select import select
    nll = [0.1, 0.2, 5.0, 6.0]
    agreed = [False, False, True, False]
    _, _, mask, gated = select(nll, ["A", "B", "C", "C"], agreed, 50, keep_agreed=True)
    assert mask.tolist() == [True, True, True, False] and gated == 1
    # with selection off every pseudo-label is kept and the gate adds nothing
    _, _, mask, gated = select(nll, ["A", "B", "C", "C"], agreed, 50, enabled=False, keep_agreed=True)
    assert mask.all() and gated == 0


def test_selection_options_default_to_the_paper():
    m = MethodParams()
    assert m.selection_scope == "pool" and m.keep_agreed is False

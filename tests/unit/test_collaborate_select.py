import numpy as np

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

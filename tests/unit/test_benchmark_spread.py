"""How the benchmarks store repeated timings: median, min, max and every run, each to four significant digits,
so that a ratio recomputed from the stored seconds agrees with the stored ratio at any time scale."""
from benchmarks.throughput import spread


def test_spread_orders_and_keeps_every_run():
    s = spread([3.0, 1.0, 2.0])
    assert s == {"median": 2.0, "min": 1.0, "max": 3.0, "runs": [3.0, 1.0, 2.0]}


def test_millisecond_timings_keep_their_relative_precision():
    # the tiny model's steps take a few ms: fixed three-decimal rounding turned 0.01234 into 0.012 (a 3% error)
    s = spread([0.0123456, 0.0612345])
    assert s["runs"] == [0.01235, 0.06123]
    ratio = s["runs"][1] / s["runs"][0]
    assert abs(ratio / (0.0612345 / 0.0123456) - 1) < 1.5e-3


def test_long_timings_are_not_padded_with_noise_digits():
    assert spread([397.123456])["median"] == 397.1

"""jaxpref.metrics.cumulative_regret_curve, regret_scaling and mean_total_regret against loops
and exact power laws."""

import math
import statistics

import numpy as np
import pytest

from jaxpref.metrics import cumulative_regret_curve, mean_total_regret, regret_scaling


def test_hand_case_by_loops():
    regrets = np.array([[1.0, 0.5, 0.25, 0.0], [2.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5]])
    out = cumulative_regret_curve(regrets, [2, 4])
    totals = [[sum(row[:k]) for row in regrets] for k in (2, 4)]  # R_s(K) by hand
    np.testing.assert_allclose(out["mean"], [statistics.mean(t) for t in totals], rtol=1e-15)
    np.testing.assert_allclose(
        out["se"], [statistics.stdev(t) / math.sqrt(3) for t in totals], rtol=1e-14
    )
    # two points: the fitted line passes through both, slope log(m₄/m₂)/log 2, m = (7/6, 2.25)
    assert out["slope"] == pytest.approx(math.log(2.25 / (7 / 6)) / math.log(2.0), rel=1e-12)


def test_sqrt_k_regret_has_slope_one_half():
    """r_k = c_s(√k − √(k − 1)) gives R_s(K) = c_s√K exactly: slope ½ at any checkpoints,
    mean mean(c)√K and standard error stdev(c)√K/√S."""
    c = np.array([0.5, 1.0, 3.0, 2.0])
    k = np.arange(1, 1025)
    regrets = c[:, None] * (np.sqrt(k) - np.sqrt(k - 1))[None]
    checkpoints = [16, 64, 256, 1024]
    out = cumulative_regret_curve(regrets, checkpoints)
    root = np.sqrt(checkpoints)
    np.testing.assert_allclose(out["mean"], statistics.mean(c) * root, rtol=1e-12)
    np.testing.assert_allclose(out["se"], statistics.stdev(c) * root / 2.0, rtol=1e-10)
    assert out["slope"] == pytest.approx(0.5, abs=1e-12)
    linear = cumulative_regret_curve(np.ones((2, 1024)), checkpoints)  # no learning: slope 1
    assert linear["slope"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    "regrets, checkpoints, match",
    [
        (np.ones((1, 8)), [2, 4], "regrets: expected shape"),
        (np.ones(8), [2, 4], "regrets"),
        (np.full((2, 8), np.nan), [2, 4], "regrets: contains"),
        (np.ones((2, 8)), [4], "checkpoints"),
        (np.ones((2, 8)), [2.0, 4.0], "checkpoints"),
        (np.ones((2, 8)), [0, 4], "checkpoints: must lie in"),
        (np.ones((2, 8)), [2, 9], "checkpoints: must lie in"),
    ],
)
def test_bad_arguments_are_named(regrets, checkpoints, match):
    with pytest.raises(ValueError, match=match):
        cumulative_regret_curve(regrets, checkpoints)


def test_regret_scaling_of_an_exact_power_law_and_by_loops():
    """Totals c·d^1.5 spread over K episodes and S runs (a different S per size): the means by
    loops, slope 1.5 exactly; `mean_total_regret` is the mean of the row sums."""
    sizes = [2, 4, 8]
    rng = np.random.default_rng(0)
    regrets = []
    for g, d in enumerate(sizes):
        runs = rng.uniform(0.5, 1.5, size=(g + 2, 6))  # S_g = g + 2 runs
        runs *= 3.0 * d**1.5 / runs.sum(1, keepdims=True)  # each run's total is 3 d^1.5
        regrets.append(runs)
    out = regret_scaling(sizes, regrets)
    np.testing.assert_allclose(out["regret"], [3.0 * d**1.5 for d in sizes], rtol=1e-12)
    assert out["slope"] == pytest.approx(1.5, abs=1e-12)
    hand = [[1.0, 2.0], [0.0, 3.0], [4.0, 4.0]]
    assert mean_total_regret(hand) == pytest.approx((3.0 + 3.0 + 8.0) / 3, rel=1e-15)
    with pytest.raises(ValueError, match="regrets: need one array per size"):
        regret_scaling(sizes, regrets[:2])
    with pytest.raises(ValueError, match="regrets: expected shape"):
        mean_total_regret(np.ones(4))

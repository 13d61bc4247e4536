"""What the runners share from jaxpref.experiments._report: seed statistics, stage timings and
rate shapes, against direct computations."""

import time

import numpy as np
import pytest

from jaxpref.experiments._report import rate_shape, seed_stats, stopwatch, text_table


def test_stopwatch_sets_or_adds_the_blocks_seconds():
    times = {}
    with stopwatch(times, "a"):
        time.sleep(0.02)
    with stopwatch(times, "a"):  # without add: replaced
        pass
    assert 0 <= times["a"] < 0.02
    for _ in range(3):
        with stopwatch(times, "b", add=True):
            time.sleep(0.01)
    assert times["b"] >= 0.03 and list(times) == ["a", "b"]


def test_rate_shape_passes_through_the_first_point_with_the_power():
    x = [2, 8, 32]
    np.testing.assert_allclose(rate_shape(x, 3.0, 0.5), [3.0, 6.0, 12.0])  # √4 = 2 per step
    np.testing.assert_allclose(rate_shape(x, 1.0, -1.0), [1.0, 0.25, 0.0625])


def test_seed_stats_over_the_leading_axis():
    runs = [[1.0, 2.0], [3.0, 6.0]]
    out = seed_stats(runs, keep_runs=True)
    np.testing.assert_allclose(out["mean"], [2.0, 4.0])
    np.testing.assert_allclose(out["std"], [1.0, 2.0])  # ddof = 0
    np.testing.assert_array_equal(out["runs"], runs)
    with pytest.raises(ValueError, match="runs: need at least one run"):
        seed_stats(np.zeros((0, 2)))


def test_text_table_pads_names_to_the_specs_width():
    """Names left-aligned above string columns, right-aligned above numbers, each value written
    with its column's spec (the table of robust_sail, written out by hand)."""
    cols = [("shift", "12s"), ("rho", "5.2f"), ("acc", "6.3f")]
    lines = text_table(cols, [("adversarial", 0.2, 0.95612), ("verbosity", 0.05, 1.0)])
    assert lines == [
        "shift          rho    acc",
        "adversarial   0.20  0.956",
        "verbosity     0.05  1.000",
    ]
    assert text_table([("K=1", "8.2f"), ("m", "s")], [(3.14159, "ab")], sep="  ") == [
        "     K=1  m",
        "    3.14  ab",
    ]
    with pytest.raises(ValueError, match="rows: each row needs 3 values"):
        text_table(cols, [("a", 1.0)])

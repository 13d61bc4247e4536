"""What the runners share from jaxpref.experiments._report: seed statistics, stage timings and
rate shapes, against direct computations."""

import re
import time

import numpy as np
import pytest

from jaxpref.experiments._report import (
    curve_lines,
    eval_points,
    figure,
    rate_shape,
    seed_curves,
    seed_stats,
    stopwatch,
    text_table,
)


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
    for spec in ("*^10s", "+8.3f", ",d"):  # a fill, a sign, grouping: the width would be misread
        with pytest.raises(ValueError, match=f"columns: spec '{re.escape(spec)}' of 'x'"):
            text_table([("x", spec)], [(1,)])


def test_seed_curves_mean_and_std_per_group_in_first_seen_order():
    runs = [
        {"arm": "b", "pts": [(0, 1.0), (4, 3.0)]},
        {"arm": "a", "pts": [(0, 2.0), (2, 2.0)]},
        {"arm": "b", "pts": [(0, 3.0), (4, 7.0)]},
    ]
    out = seed_curves(runs, "arm", lambda r: r["pts"])
    assert list(out) == ["b", "a"]
    assert out["b"] == ([0, 4], [2.0, 5.0], [1.0, 2.0])  # ddof = 0 over the two b runs
    assert out["a"] == ([0, 2], [2.0, 2.0], [0.0, 0.0])
    runs[2]["pts"] = [(0, 3.0), (5, 7.0)]
    with pytest.raises(ValueError, match="runs: the runs of arm 'b' differ in their x values"):
        seed_curves(runs, "arm", lambda r: r["pts"])


@pytest.mark.parametrize("errorbars", [True, False])
def test_curve_lines_draw_each_curve_with_its_label(errorbars):
    import matplotlib.pyplot as plt

    fig, ((ax,),) = figure(1, 1, (3, 2))
    curves = {"x": ([0, 4], [1.0, 2.0], [0.5, 0.25]), "y": ([0, 4], [3.0, 1.0], [0.0, 0.0])}
    curve_lines(ax, curves, ylabel="reward", errorbars=errorbars)
    lines = ax.get_lines()[:: 3 if errorbars else 1]  # an error bar adds two cap lines
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["x", "y"]
    np.testing.assert_array_equal(lines[0].get_xydata(), [[0, 1.0], [4, 2.0]])
    np.testing.assert_array_equal(lines[1].get_xydata(), [[0, 3.0], [4, 1.0]])
    if errorbars:  # the first bar spans mean ± std
        segments = ax.collections[0].get_segments()
        np.testing.assert_allclose(segments[0], [[0, 0.5], [0, 1.5]])
    assert ax.get_xlabel() == "labelled pairs" and ax.get_ylabel() == "reward"
    plt.close(fig)


def test_eval_points_in_step_order_with_the_last_row_of_a_step():
    history = [
        {"step": 2, "eval_score": 0.5},
        {"step": 1, "loss": 3.0},
        {"step": 0, "eval_score": 0.1},
        {"step": 2, "eval_score": 0.7},  # the final evaluation, at the last step again
    ]
    assert eval_points(history, "eval_score") == [(0, 0.1), (2, 0.7)]
    assert eval_points(history, "missing") == []

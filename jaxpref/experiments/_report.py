"""What several runners report alike: statistics over seeds, stage timings and metric-vs-budget
figures."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

import numpy as np


def seed_stats(runs, *, keep_runs: bool = False) -> dict:
    """``{"mean", "std"}`` (ddof=0) over the leading axis of ``runs`` (seeds × grid), plus
    the stacked ``"runs"`` with ``keep_runs``."""
    arr = np.asarray(runs)
    if arr.ndim < 1 or arr.shape[0] == 0:
        raise ValueError(f"runs: need at least one run along axis 0, got shape {arr.shape}")
    out = {"mean": arr.mean(0), "std": arr.std(0)}
    return out | {"runs": arr} if keep_runs else out


@contextlib.contextmanager
def stopwatch(times: dict, key: str, *, add: bool = False):
    """Write the wall-clock seconds the ``with`` block takes to ``times[key]`` (with ``add``,
    add them to what is there)."""
    t0 = time.perf_counter()
    yield
    elapsed = time.perf_counter() - t0
    times[key] = times.get(key, 0.0) + elapsed if add else elapsed


def figure(rows: int, cols: int, figsize):
    """(figure, (rows, cols) axes) on matplotlib's file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, cols, figsize=figsize, squeeze=False)


def save(fig, out_dir, name: str, *, dpi: int = 120) -> Path:
    """Lay out, write ``out_dir/name`` and close ``fig``; returns the path."""
    import matplotlib.pyplot as plt

    path = Path(out_dir) / name
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def rate_shape(x, y0: float, power: float) -> np.ndarray:
    """y0 · (x / x[0])^power: a rate with unknown constant, drawn through the first point."""
    x = np.asarray(x, dtype=float)
    return y0 * (x / x[0]) ** power


def budget_curves(ax, n, methods: dict, field: str, *, band: bool = True, seeds=None) -> None:
    """One line per method of ``methods[m][field]["mean"]`` against the budget n (log₂ axis):
    with ``band``, a ±std band; otherwise ±std/√seeds error bars (one standard error)."""
    n = np.asarray(n)
    for m, r in methods.items():
        mu, sd = np.asarray(r[field]["mean"], float), np.asarray(r[field]["std"], float)
        if band:
            ax.plot(n, mu, marker="o", ms=3, label=m)
            ax.fill_between(n, np.maximum(mu - sd, 1e-12), mu + sd, alpha=0.15)
        else:
            ax.errorbar(n, mu, yerr=sd / np.sqrt(seeds), marker="o", ms=3, capsize=2, label=m)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("budget n")
    ax.grid(alpha=0.3, which="both")


def text_table(columns, rows, *, sep: str = " ") -> list[str]:
    """Fixed-width text lines: a header of the column names, then one line per row of values.

    ``columns`` holds ``(name, spec)`` pairs, ``spec`` a format spec such as ``"12s"`` or
    ``"5.2f"``; each value is written ``f"{value:{spec}}"`` and each name is padded to the
    spec's width, left-aligned above string columns (a spec ending in ``s``) and right-aligned
    above numbers. Columns are joined by ``sep``. Specs are ``[align][0][width][.precision]
    [type]``; one with a fill character, a sign or a grouping option is refused (its width
    would be misread)."""
    if any(len(r) != len(columns) for r in rows):
        raise ValueError(f"rows: each row needs {len(columns)} values, one per column")
    head = []
    for name, spec in columns:
        parsed = re.fullmatch(r"[<>^]?0?(\d*)(\.\d+)?[a-zA-Z%]?", spec)
        if parsed is None:
            raise ValueError(
                f"columns: spec {spec!r} of {name!r} is not [align][0][width][.p][type]"
            )
        width = parsed.group(1)
        head.append(f"{name:{'<' if spec.endswith('s') else '>'}{width}s}")
    return [sep.join(head)] + [sep.join(f"{v:{s}}" for v, (_, s) in zip(r, columns)) for r in rows]


def seed_curves(runs, group: str, points) -> dict:
    """``{g: (xs, mean, std)}`` for each value g of ``run[group]`` over ``runs`` (in first-seen
    order): ``points(run)`` is a run's list of (x, y); the runs of one group must share their
    xs, and mean and std are ``seed_stats`` over those runs at each x."""
    out = {}
    for g in dict.fromkeys(r[group] for r in runs):
        curves = [points(r) for r in runs if r[group] == g]
        xs = [x for x, _ in curves[0]]
        if any([x for x, _ in c] != xs for c in curves):
            raise ValueError(f"runs: the runs of {group} {g!r} differ in their x values")
        stats = seed_stats([[y for _, y in c] for c in curves])
        out[g] = (xs, stats["mean"].tolist(), stats["std"].tolist())
    return out


def curve_lines(ax, curves: dict, *, ylabel: str, errorbars: bool = True) -> None:
    """One marked line per label of ``curves`` (``{label: (xs, mean, std)}``, as from
    ``seed_curves``) against the labelled pairs, with ±std error bars if ``errorbars``; a grid
    and a legend."""
    for label, (xs, ys, sd) in curves.items():
        if errorbars:
            ax.errorbar(xs, ys, yerr=sd, marker="o", capsize=3, label=label)
        else:
            ax.plot(xs, ys, marker="o", label=label)
    ax.set_xlabel("labelled pairs")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def eval_points(history, key: str) -> list[tuple[int, float]]:
    """``(step, row[key])`` of each row of a run's ``history`` that holds ``key``, in step
    order; a step logged twice (a final evaluation at the last step) keeps its last row."""
    by_step = {int(r["step"]): r[key] for r in history if key in r}
    return sorted(by_step.items())

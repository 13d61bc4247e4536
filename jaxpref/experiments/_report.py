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
    above numbers. Columns are joined by ``sep``."""
    if any(len(r) != len(columns) for r in rows):
        raise ValueError(f"rows: each row needs {len(columns)} values, one per column")
    head = []
    for name, spec in columns:
        width = re.match(r"[<>^]?0?(\d*)", spec).group(1)
        head.append(f"{name:{'<' if spec.endswith('s') else '>'}{width}s}")
    return [sep.join(head)] + [sep.join(f"{v:{s}}" for v, (_, s) in zip(r, columns)) for r in rows]

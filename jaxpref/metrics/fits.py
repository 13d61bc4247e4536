"""Fits used to compare measured curves with stated rates."""

from __future__ import annotations

import numpy as np

from jaxpref import _checks


def loglog_slope(x, y) -> tuple[float, float]:
    """Least-squares fit of log y = a + s·log x; returns (slope s, intercept a).

    Used to compare a measured error/regret curve with a rate n^s (e.g. s = −1/2).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    _checks.check_same_shape(x=x, y=y)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"x: need at least two points on a 1-D grid, got shape {x.shape}")
    if not (np.all(np.isfinite(x)) and np.all(x > 0)):
        raise ValueError("x: log-log fit needs finite, positive values")
    if not (np.all(np.isfinite(y)) and np.all(y > 0)):
        raise ValueError("y: log-log fit needs finite, positive values")
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return float(slope), float(intercept)

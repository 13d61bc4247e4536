"""Argument checks shared by the regularizer functions (run before any work)."""

from __future__ import annotations

from jaxpref import _checks


def probs(name, x):
    """Probabilities must lie in (0, 1]."""
    _checks.check_finite(name, x)
    _checks.check_in_range(name, x, 0.0, 1.0, closed="right")


def logps(name, x):
    """Log-probabilities must be finite and ≤ 0 (probabilities in (0, 1])."""
    _checks.check_logps(name, x)


def alpha(value, name="alpha"):
    _checks.check_in_range(name, value, 0.0, 1.0, closed="right")


def beta(value, name="beta"):
    _checks.check_positive(name, value)


def finite(**arrays):
    _checks.check_all_finite(**arrays)


def same_shape(**arrays):
    return _checks.check_same_shape(**arrays)


def vector(name, x):
    return _checks.check_ndim(name, x, 1)

"""Metrics: logit error and its bound (ADPO), cumulative regret curves, slope fits; alignment
metrics live in submodules."""

from jaxpref.metrics.fits import loglog_slope
from jaxpref.metrics.logit_error import (
    LogitErrors,
    design_bound,
    design_constants,
    logit_error_bound,
    logit_errors,
)
from jaxpref.metrics.regret import cumulative_regret_curve, mean_total_regret, regret_scaling

__all__ = [
    "LogitErrors",
    "cumulative_regret_curve",
    "design_bound",
    "design_constants",
    "logit_error_bound",
    "logit_errors",
    "loglog_slope",
    "mean_total_regret",
    "regret_scaling",
]

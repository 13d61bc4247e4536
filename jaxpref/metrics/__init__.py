"""Metrics: logit error and its bound (ADPO), slope fits; alignment metrics live in submodules."""

from jaxpref.metrics.fits import loglog_slope
from jaxpref.metrics.logit_error import (
    LogitErrors,
    design_bound,
    design_constants,
    logit_error_bound,
    logit_errors,
)

__all__ = [
    "LogitErrors",
    "design_bound",
    "design_constants",
    "logit_error_bound",
    "logit_errors",
    "loglog_slope",
]

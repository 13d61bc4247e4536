"""Metrics: logit error and its bound (ADPO), slope fits; alignment metrics live in submodules."""

from jaxpref.metrics.fits import loglog_slope

__all__ = ["loglog_slope"]

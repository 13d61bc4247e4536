"""Preference losses (one value per example) and maximum-likelihood fits."""

from jaxpref.losses.mle import MLEResult, dpo_hessian, fit_dpo_mle
from jaxpref.losses.preference import LOSS_TYPES, btl_nll, dpo_loss, plackett_luce_nll

__all__ = [
    "LOSS_TYPES",
    "MLEResult",
    "btl_nll",
    "dpo_hessian",
    "dpo_loss",
    "fit_dpo_mle",
    "plackett_luce_nll",
]

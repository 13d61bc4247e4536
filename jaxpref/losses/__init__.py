"""Preference losses (one value per example), maximum-likelihood fits and the policy-gradient
pieces of RLHF (shaped token rewards, GAE, PPO losses, leave-one-out baselines)."""

from jaxpref.losses.mle import MLEResult, dpo_hessian, fit_dpo_mle
from jaxpref.losses.policy_gradient import (
    gae_advantages,
    leave_one_out_advantages,
    ppo_policy_loss,
    ppo_value_loss,
    shaped_token_rewards,
)
from jaxpref.losses.preference import (
    LOSS_TYPES,
    btl_nll,
    dpo_loss,
    logistic_loss,
    plackett_luce_nll,
)

__all__ = [
    "LOSS_TYPES",
    "MLEResult",
    "btl_nll",
    "dpo_hessian",
    "dpo_loss",
    "fit_dpo_mle",
    "gae_advantages",
    "leave_one_out_advantages",
    "logistic_loss",
    "plackett_luce_nll",
    "ppo_policy_loss",
    "ppo_value_loss",
    "shaped_token_rewards",
]

"""Preference-matching regularizers, f-divergence penalties and closed-form RLHF optima.

Xiao et al., "On the Algorithmic Bias of Aligning Large Language Models with RLHF: Preference
Collapse and Matching Regularization", arXiv 2405.16455. Derivations: ``theory/pm_rlhf.md``.
"""

from jaxpref.regularizers.divergence import code_pm_squared_gap, pm_divergence
from jaxpref.regularizers.fdiv import (
    FDivergence,
    alpha_divergence,
    f_divergence,
    f_rlhf_pairwise_preference,
    f_rlhf_policy,
    forward_kl,
    jensen_shannon,
    reverse_kl,
)
from jaxpref.regularizers.links import (
    BUILTIN_LINKS,
    Link,
    arctan_link,
    check_link,
    exp_link,
    generalized_pl_policy,
    linear_link,
    link_pm_maximiser,
    link_pm_regularizer,
    make_link,
    sigmoid_link,
)
from jaxpref.regularizers.pm import (
    conditional_pm_regularizer,
    kl_regularizer,
    pm_ode_residual,
    pm_regularizer,
    pm_stationarity_constant,
    response_dependent_pm_regularizer,
    token_conditional_pm_penalty,
)
from jaxpref.regularizers.policies import (
    conditional_pm_policy,
    conditional_pm_shaped_reward,
    gibbs_policy,
    kl_rlhf_pairwise_preference,
    kl_rlhf_policy,
    pairwise_preference,
    pm_policy,
    preference_collapse_limit,
    reward_preference,
    tempered_preference,
)
from jaxpref.regularizers.solvers import (
    SolverState,
    exact_gradient_ascent,
    expected_objective,
    reinforce_loo,
    reinforce_loo_surrogate,
    run_solver,
)

__all__ = [
    "BUILTIN_LINKS", "FDivergence", "Link", "SolverState", "alpha_divergence", "arctan_link",
    "check_link", "code_pm_squared_gap", "conditional_pm_policy", "conditional_pm_regularizer",
    "conditional_pm_shaped_reward", "exact_gradient_ascent", "exp_link", "expected_objective",
    "f_divergence", "f_rlhf_pairwise_preference", "f_rlhf_policy", "forward_kl",
    "generalized_pl_policy", "gibbs_policy", "jensen_shannon", "kl_regularizer",
    "kl_rlhf_pairwise_preference", "kl_rlhf_policy", "linear_link", "link_pm_maximiser",
    "link_pm_regularizer", "make_link", "pairwise_preference", "pm_divergence", "pm_ode_residual",
    "pm_policy", "pm_regularizer", "pm_stationarity_constant", "preference_collapse_limit",
    "reinforce_loo",
    "reinforce_loo_surrogate", "response_dependent_pm_regularizer", "reverse_kl",
    "reward_preference", "run_solver", "sigmoid_link", "tempered_preference",
    "token_conditional_pm_penalty",
]

"""PbPO (Jia, arXiv 2511.12867): confidence sets of linear reward models, min-max policy
optimisation, exploration, and testbeds with a hidden θ*. See `theory/pbpo.md`."""

from jaxpref.pbpo.confidence import (
    RADII,
    ConfidenceState,
    confidence_init,
    confidence_update,
    ellipsoid_radius,
    gram_matrix,
    in_confidence_set,
    kappa_btl,
    likelihood_ratio_threshold,
    optimistic_value,
    pessimistic_value,
    radius_kappa,
)
from jaxpref.pbpo.envs import (
    PreferenceEnv,
    btl_label,
    dueling_bandit,
    optimal_value,
    policy_value,
    token_mdp,
)
from jaxpref.pbpo.exploration import enhancer_scores, optimistic_scores
from jaxpref.pbpo.likelihood_set import likelihood_set_value, sublevel_set_value
from jaxpref.pbpo.loop import METHODS, LoopConfig, LoopParams, loop_params, run_loop
from jaxpref.pbpo.minmax import (
    StackelbergState,
    deterministic_policy_features,
    follower_descent,
    minmax_finite,
    stackelberg_init,
    stackelberg_update,
)
from jaxpref.pbpo.reward import (
    btl_prob,
    fit_btl_mle,
    ridge_btl_nll,
    sequence_reward,
    token_reward,
    trajectory_features,
)

__all__ = [
    "METHODS",
    "RADII",
    "ConfidenceState",
    "LoopConfig",
    "LoopParams",
    "PreferenceEnv",
    "StackelbergState",
    "btl_label",
    "ridge_btl_nll",
    "btl_prob",
    "confidence_init",
    "confidence_update",
    "deterministic_policy_features",
    "dueling_bandit",
    "ellipsoid_radius",
    "enhancer_scores",
    "fit_btl_mle",
    "gram_matrix",
    "in_confidence_set",
    "kappa_btl",
    "likelihood_ratio_threshold",
    "likelihood_set_value",
    "loop_params",
    "follower_descent",
    "minmax_finite",
    "optimal_value",
    "optimistic_scores",
    "optimistic_value",
    "pessimistic_value",
    "policy_value",
    "radius_kappa",
    "run_loop",
    "sequence_reward",
    "stackelberg_init",
    "stackelberg_update",
    "sublevel_set_value",
    "token_mdp",
    "token_reward",
    "trajectory_features",
]

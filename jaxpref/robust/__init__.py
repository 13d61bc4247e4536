"""Oracle-robust online alignment (Li, Gaur & Aggarwal, arXiv 2602.20457) for log-linear policies.

See ``theory/robust_sail.md`` for the derivations ([Reconstruction] where the paper's text was not
available) and the tests that check each result.
"""

from jaxpref.robust.estimator import (
    PairSample,
    estimate_gradient,
    pair_gradient_estimate,
    robust_sail_gradient_estimate,
    sample_pairs,
)
from jaxpref.robust.objective import (
    PreferenceProblem,
    check_theta,
    expectation,
    pair_logits,
    pair_loss,
    preference_problem,
    robust_penalty,
    robust_sail_objective,
    sail_objective,
    sensitivity_excess,
    sensitivity_penalty,
    worst_case_pair_loss,
    worst_case_preference,
)
from jaxpref.robust.optim import (
    MoreauResult,
    ProximalPointState,
    ProxState,
    SubgradientState,
    moreau_envelope,
    moreau_gradient_norms,
    project_ball,
    projected_subgradient_init,
    projected_subgradient_update,
    prox_init,
    prox_update,
    proximal_point_init,
    proximal_point_update,
    smoothed_robust_objective,
    smoothness_bound,
)

__all__ = [
    "MoreauResult", "PairSample", "PreferenceProblem", "ProxState", "ProximalPointState",
    "SubgradientState", "check_theta", "estimate_gradient", "expectation", "moreau_envelope",
    "moreau_gradient_norms", "pair_gradient_estimate", "pair_logits", "pair_loss",
    "preference_problem", "project_ball", "projected_subgradient_init",
    "projected_subgradient_update", "prox_init", "prox_update", "proximal_point_init",
    "proximal_point_update", "robust_penalty", "robust_sail_gradient_estimate",
    "robust_sail_objective", "sail_objective", "sample_pairs", "sensitivity_excess",
    "sensitivity_penalty", "smoothed_robust_objective", "smoothness_bound",
    "worst_case_pair_loss", "worst_case_preference",
]

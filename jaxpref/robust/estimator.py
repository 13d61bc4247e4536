"""Unbiased stochastic (sub)gradients of the SAIL / robust-SAIL objective.

Responses are drawn from the current policy, so the gradient of E_{y,y'~π_θ} f_θ(y, y') has a
pathwise part and a score-function part (the likelihood-ratio identity):

    ∇_θ E_{y,y'~π_θ} f_θ
        = E_{y,y'~π_θ}[∇_θ f_θ(y, y') + (f_θ(y, y') − b)(∇ log π_θ(y) + ∇ log π_θ(y'))]

for any constant baseline b (E[∇ log π_θ] = 0).

References: Li, Gaur & Aggarwal, arXiv 2602.20457 (stochastic composite updates);
  Williams, "Simple statistical gradient-following algorithms", 1992 (score function);
  [Reconstruction, theory/robust_sail.md Eq. (R7)].
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from jaxpref import _checks
from jaxpref.policies import loglinear
from jaxpref.robust.objective import (
    PreferenceProblem,
    _robust_pair_value,
    check_theta,
    pair_logits,
)


class PairSample(NamedTuple):
    """Indices of sampled (x, y, y') triples."""

    context: Array  # (M,)  context index i ~ weights
    first: Array  # (M,)  y ~ π_θ(·|x_i)
    second: Array  # (M,)  y' ~ π_θ(·|x_i), independent of y


def sample_pairs(key: PRNGKeyArray, theta, problem: PreferenceProblem, num_samples: int):
    """Draw M triples x ~ weights, y, y' ~ π_θ(·|x) independently (policy-dependent sampling)."""
    k_ctx, k_y = jax.random.split(key)
    ctx = jax.random.categorical(k_ctx, jnp.log(problem.weights), shape=(num_samples,))
    keys = jax.random.split(k_y, num_samples)
    draw = lambda k, i: loglinear.sample(k, theta, problem.phi[i], shape=(2,))  # noqa: E731
    ys = jax.vmap(draw)(keys, ctx)
    return PairSample(ctx, ys[:, 0], ys[:, 1])


def _pair_value(theta, problem, rho, i, y, yp):
    h = pair_logits(theta, problem.phi[i], problem.ref_logp[i], problem.beta)[y, yp]
    return _robust_pair_value(h, problem.pref[i, y, yp], rho)  # Eq. (R4)


def _pair_gradient(theta, problem, rho, baseline, i, y, yp):
    f, pathwise = jax.value_and_grad(_pair_value)(theta, problem, rho, i, y, yp)
    phi = problem.phi[i]
    score = loglinear.score_function(theta, phi, y) + loglinear.score_function(theta, phi, yp)
    return pathwise + (f - baseline) * score  # Eq. (R7)


def pair_gradient_estimate(
    theta: Float[ArrayLike, " d"],
    problem: PreferenceProblem,
    rho,
    context: Int[ArrayLike, ""],
    first: Int[ArrayLike, ""],
    second: Int[ArrayLike, ""],
    baseline=0.0,
) -> Float[Array, " d"]:
    r"""One-sample estimator ĝ(θ; x, y, y') of ∇ of the robust SAIL objective.

    .. math:: \hat g = \nabla_\theta f_\theta + (f_\theta - b)\,(\nabla\log\pi_\theta(y|x)
              + \nabla\log\pi_\theta(y'|x)),\quad f_\theta = \ell(h_\theta; P^\circ)
              + |h_\theta|\min(\rho, q).

    With ρ = 0 it estimates ∇L_SAIL. At h = 0 the subgradient 0 of |h| is used. Its mean over
    x ~ weights, y, y' ~ π_θ equals the exact gradient wherever no pair with positive probability
    has h_θ = 0 (checked by enumeration in the tests).

    Args:
      theta: (d,). problem: `PreferenceProblem`. rho: ρ ≥ 0. context, first, second: indices.
      baseline: constant b subtracted in the score-function term (variance reduction).
    Returns: (d,) the estimate.

    References: Li, Gaur & Aggarwal, arXiv 2602.20457 [Reconstruction, theory Eq. (R7)].
    """
    check_theta(theta, problem)
    _checks.check_nonnegative("rho", rho)
    n, k, _ = problem.phi.shape
    for name, idx, size in (("context", context, n), ("first", first, k), ("second", second, k)):
        _checks.check_in_range(name, idx, 0, size - 1)  # JAX would clamp an index silently
    return _pair_gradient(theta, problem, rho, baseline, context, first, second)


def robust_sail_gradient_estimate(
    key: PRNGKeyArray,
    theta: Float[ArrayLike, " d"],
    problem: PreferenceProblem,
    rho,
    num_samples: int = 1,
    baseline=0.0,
) -> Float[Array, " d"]:
    """Mean of `pair_gradient_estimate` over M policy-sampled triples (unbiased for ∇L_rob).

    References: Li, Gaur & Aggarwal, arXiv 2602.20457 [Reconstruction, theory Eq. (R7)].
    """
    check_theta(theta, problem)
    _checks.check_nonnegative("rho", rho)
    num_samples = _checks.check_int_in("num_samples", num_samples, 1, 2**31 - 1)
    return estimate_gradient(key, theta, problem, rho, num_samples, baseline)


@functools.partial(jax.jit, static_argnames="num_samples")
def estimate_gradient(key, theta, problem, rho, num_samples: int, baseline=0.0):
    """Unchecked, jit-friendly form of `robust_sail_gradient_estimate` (for use inside scans)."""
    s = sample_pairs(key, theta, problem, num_samples)
    grads = jax.vmap(_pair_gradient, in_axes=(None, None, None, None, 0, 0, 0))(
        theta, problem, rho, baseline, s.context, s.first, s.second
    )
    return jnp.mean(grads, axis=0)

"""Pair loss, pointwise oracle uncertainty, and the SAIL / robust-SAIL objectives (exact).

A contextual preference problem over a finite response set: ``n`` contexts, each with ``K``
responses of features φ(x, y) ∈ R^d, reference log-probs log π_ref(y|x), and a nominal oracle
P°(y ≻ y'|x). The policy is log-linear, π_θ(y|x) ∝ exp(θᵀφ(x, y)), and responses are drawn from
the current policy, so the sampling distribution depends on θ (the SAIL single-level objective).

The paper's full text was not available: the decomposition implemented here is derived in
``theory/robust_sail.md`` (**[Reconstruction]**) and checked by brute force in
``tests/test_robust_objective.py``.

References: Li, Gaur & Aggarwal, "Oracle-Robust Online Alignment for Large Language Models",
  arXiv 2602.20457 (robust objective L_{W_ρ} = L_SAIL + λR); Ding et al., "SAIL: Self-Improving
  Efficient Online Alignment of Large Language Models", arXiv 2406.15567.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxpref import _checks
from jaxpref.losses.preference import logistic_loss
from jaxpref.policies import loglinear


class PreferenceProblem(NamedTuple):
    """A finite contextual preference problem (build it with `preference_problem`)."""

    phi: Array  # (n, K, d)  response features φ(x, y)
    ref_logp: Array  # (n, K)  log π_ref(y|x)
    pref: Array  # (n, K, K)  oracle P(y ≻ y'|x), entries in [0, 1]
    weights: Array  # (n,)  context distribution, sums to 1
    beta: Array  # ()  DPO temperature β > 0


def preference_problem(phi, ref_logp, pref, weights=None, beta=1.0) -> PreferenceProblem:
    """Validate and bundle a problem; ``weights=None`` means uniform contexts."""
    n, k, _ = _checks.check_ndim("phi", phi, 3)
    if _checks.shape_of("ref_logp", ref_logp) != (n, k):
        raise ValueError(f"ref_logp: expected shape {(n, k)}, got {np.shape(ref_logp)}")
    if _checks.shape_of("pref", pref) != (n, k, k):
        raise ValueError(f"pref: expected shape {(n, k, k)}, got {np.shape(pref)}")
    _checks.check_finite("phi", phi)
    _checks.check_finite("ref_logp", ref_logp)
    _checks.check_in_range("pref", pref, 0.0, 1.0)
    _checks.check_positive("beta", beta)
    phi = _checks.as_float("phi", phi)  # integer features would cast pref and weights to ints
    weights = jnp.full((n,), 1.0 / n, phi.dtype) if weights is None else _weights(weights, n)
    cast = lambda a: jnp.asarray(a, phi.dtype)  # noqa: E731
    return PreferenceProblem(phi, cast(ref_logp), cast(pref), cast(weights), cast(beta))


def _weights(weights, n):
    if _checks.shape_of("weights", weights) != (n,):
        raise ValueError(f"weights: expected shape {(n,)}, got {np.shape(weights)}")
    _checks.check_nonnegative("weights", weights)
    xp = _checks.array_namespace(weights)
    _checks.check_condition(
        "weights", ~(xp.sum(xp.asarray(weights)) > 0), "must have a positive sum"
    )
    return jnp.asarray(weights) / jnp.sum(jnp.asarray(weights))


def check_theta(theta, problem: PreferenceProblem) -> None:
    """theta is a finite (d,) vector matching the problem's feature dimension; the problem's
    values are valid too (it may have been built without `preference_problem`)."""
    (d,) = _checks.check_ndim("theta", theta, 1)
    if d != problem.phi.shape[-1]:
        raise ValueError(f"theta: expected shape ({problem.phi.shape[-1]},), got ({d},)")
    _checks.check_finite("theta", theta)
    _checks.check_finite("phi", problem.phi)
    _checks.check_finite("ref_logp", problem.ref_logp)
    _checks.check_in_range("pref", problem.pref, 0.0, 1.0)


def _check_pair_args(h, p_nominal, rho):
    _checks.check_finite("h", h)
    _checks.check_in_range("p_nominal", p_nominal, 0.0, 1.0)
    _checks.check_nonnegative("rho", rho)


# ----------------------------------------------------------------------------- pair level


def pair_loss(h: Float[ArrayLike, "..."], p: Float[ArrayLike, "..."]) -> Float[Array, "..."]:
    r"""Expected logistic loss of a pair under oracle probability p.

    .. math:: \ell(h; p) = -p\log\sigma(h) - (1-p)\log\sigma(-h) = \mathrm{softplus}(h) - p\,h.

    The second form shows that ℓ is affine in p with slope −h.

    Args:
      h: DPO logits, any shape.
      p: oracle probabilities P(y ≻ y'), broadcastable to ``h``.
    Returns: ℓ(h; p), the shape of ``h``.

    Example:
      >>> round(float(pair_loss(jnp.array(0.0), jnp.array(0.3))), 6)  # log 2 whatever p is
      0.693147

    References: Li, Gaur & Aggarwal, arXiv 2602.20457 (per-pair SAIL loss);
      Rafailov et al., arXiv 2305.18290, Eq. (7) for p ∈ {0, 1}.
    """
    return logistic_loss(h, p)  # Eq. (R1) of theory/robust_sail.md


def worst_case_preference(h, p_nominal, rho):
    r"""Maximiser of ℓ(h; p) over p ∈ [p₀ − ρ, p₀ + ρ] ∩ [0, 1]: p* = clip(p₀ − ρ·sign(h), 0, 1).

    ℓ is affine in p with slope −h, so the maximiser is the lower end for h > 0 and the upper
    end for h < 0 (any p for h = 0; we return p₀). Args broadcast; returns the broadcast shape.

    References: Li, Gaur & Aggarwal, arXiv 2602.20457 (pointwise uncertainty set)
      [Reconstruction, theory/robust_sail.md Eq. (R3)].
    """
    _check_pair_args(h, p_nominal, rho)
    return _worst_case_preference(h, p_nominal, rho)


def _worst_case_preference(h, p_nominal, rho):
    return jnp.clip(p_nominal - rho * jnp.sign(h), 0.0, 1.0)  # Eq. (R3)


def worst_case_pair_loss(h, p_nominal, rho):
    r"""max_{p ∈ [p₀−ρ, p₀+ρ] ∩ [0,1]} ℓ(h; p) = ℓ(h; p₀) + |h|·min(ρ, q(h, p₀)).

    q(h, p₀) = p₀ for h > 0 and 1 − p₀ for h < 0 is the room the clipping leaves; without
    clipping (ρ ≤ min(p₀, 1 − p₀)) the excess is ρ|h|.

    Args:
      h: DPO logits, any shape. p_nominal: P°(y ≻ y') in [0, 1]. rho: radius ρ ≥ 0.
    Returns: the worst-case loss, the broadcast shape.

    Example (equal to ``pair_loss(2, 0.8)``):
      >>> round(float(worst_case_pair_loss(jnp.array(2.0), jnp.array(0.9), 0.1)), 6)
      0.526928

    References: Li, Gaur & Aggarwal, arXiv 2602.20457 [Reconstruction, theory Eq. (R4)].
    """
    _check_pair_args(h, p_nominal, rho)
    return pair_loss(h, p_nominal) + _sensitivity_excess(h, p_nominal, rho)


def sensitivity_excess(h, p_nominal, rho):
    r"""Exact worst-case excess of one pair: |h|·min(ρ, p₀ if h > 0 else 1 − p₀).

    References: Li, Gaur & Aggarwal, arXiv 2602.20457 [Reconstruction, theory Eq. (R4)].
    """
    _check_pair_args(h, p_nominal, rho)
    return _sensitivity_excess(h, p_nominal, rho)


def _sensitivity_excess(h, p_nominal, rho):
    room = jnp.where(h > 0, p_nominal, 1.0 - p_nominal)
    return jnp.abs(h) * jnp.minimum(rho, room)  # Eq. (R4)


# ----------------------------------------------------------------------------- context level


def pair_logits(theta, phi, ref_logp, beta):
    """All K×K DPO logits of one context: h[y, y'] = β((φ_y − φ_y')ᵀθ − (b_y − b_y')).

    Args: theta (d,), phi (K, d), ref_logp (K,) = b, beta β. Returns: (K, K).

    References: Kveton et al., arXiv 2503.01076, Eq. (6); Rafailov et al., arXiv 2305.18290.
    """
    phi_diff = phi[:, None, :] - phi[None, :, :]
    ref_ratio = ref_logp[:, None] - ref_logp[None, :]
    return loglinear.dpo_logit(theta, phi_diff, ref_ratio, beta)


def _robust_pair_value(h, pref, rho):
    return pair_loss(h, pref) + _sensitivity_excess(h, pref, rho)  # Eq. (R4)


def _excess_pair_value(h, pref, rho):
    return _sensitivity_excess(h, pref, rho)  # Eq. (R4)


def _abs_pair_value(h, pref, rho):
    return jnp.abs(h)


def _context_expectation(theta, phi, ref_logp, pref, beta, rho, pair_value):
    pi = jnp.exp(loglinear.log_probs(theta, phi))
    f = pair_value(pair_logits(theta, phi, ref_logp, beta), pref, rho)
    return pi @ f @ pi  # Eq. (R2): E_{y,y'~π_θ(·|x)} f(x, y, y')


def expectation(theta, problem: PreferenceProblem, rho, pair_value=_robust_pair_value):
    """E_x E_{y,y'~π_θ} pair_value(h_θ, P°, ρ), exact (unchecked; jit-friendly)."""
    per_context = jax.vmap(_context_expectation, in_axes=(None, 0, 0, 0, None, None, None))
    values = per_context(
        theta, problem.phi, problem.ref_logp, problem.pref, problem.beta, rho, pair_value
    )
    return problem.weights @ values


_expectation = jax.jit(expectation, static_argnames="pair_value")


def sail_objective(theta: Float[ArrayLike, " d"], problem: PreferenceProblem) -> Float[Array, ""]:
    r"""SAIL objective with policy-dependent sampling, exact on a finite response set.

    .. math:: L_{\mathrm{SAIL}}(\theta; P) = \mathbb{E}_{x}\sum_{y,y'} \pi_\theta(y|x)
              \pi_\theta(y'|x)\, \ell(h_\theta(x,y,y'); P(y\succ y'|x)).

    Args:
      theta: (d,) policy parameters. problem: a `PreferenceProblem` (its ``pref`` is P).
    Returns: () the objective.

    References: Ding et al., arXiv 2406.15567 (SAIL); Li, Gaur & Aggarwal, arXiv 2602.20457
      [Reconstruction of the exact form, theory Eq. (R2)].
    """
    check_theta(theta, problem)
    return _expectation(theta, problem, 0.0)  # Eq. (R2)


def robust_penalty(
    theta: Float[ArrayLike, " d"], problem: PreferenceProblem, rho
) -> Float[Array, ""]:
    r"""Exact penalty ρR_ρ(θ) = E_x E_{y,y'~π_θ} |h_θ|·min(ρ, q(h_θ, P°)), q as in clipping.

    Equals ρ·`sensitivity_penalty` while no clipping binds (ρ ≤ min(P°, 1 − P°) on the support).

    References: Li, Gaur & Aggarwal, arXiv 2602.20457 [Reconstruction, theory Eq. (R5)].
    """
    check_theta(theta, problem)
    _checks.check_nonnegative("rho", rho)
    return _expectation(theta, problem, rho, _excess_pair_value)  # Eq. (R5), second term


def sensitivity_penalty(
    theta: Float[ArrayLike, " d"], problem: PreferenceProblem
) -> Float[Array, ""]:
    r"""R(θ) = E_x E_{y,y'~π_θ} |h_θ(x, y, y')| (the unclipped sensitivity penalty).

    References: Li, Gaur & Aggarwal, arXiv 2602.20457 (R(θ)) [Reconstruction, theory Eq. (R6)].
    """
    check_theta(theta, problem)
    return _expectation(theta, problem, 0.0, _abs_pair_value)  # Eq. (R6)


def robust_sail_objective(theta: Float[ArrayLike, " d"], problem: PreferenceProblem, rho):
    r"""Robust objective sup_{P ∈ U_ρ(P°)} L_SAIL(θ; P) in closed form: L_SAIL(θ; P°) + ρR_ρ(θ).

    U_ρ(P°) = {P : |P(y≻y'|x) − P°(y≻y'|x)| ≤ ρ, 0 ≤ P ≤ 1 for all (x, y, y')}. Because the
    sampling law π_θ does not depend on P and ℓ is affine in p, the sup is taken pair by pair.

    Args:
      theta: (d,). problem: `PreferenceProblem` with nominal oracle P° in ``pref``. rho: ρ ≥ 0.
    Returns: () the robust objective.

    References: Li, Gaur & Aggarwal, arXiv 2602.20457 (L_{W_ρ} = L_SAIL + λR)
      [Reconstruction, theory Eq. (R5)].
    """
    check_theta(theta, problem)
    _checks.check_nonnegative("rho", rho)
    return _expectation(theta, problem, rho)  # Eq. (R5)

"""f-divergence penalties and the optimum of f-divergence RLHF (Section 5.1, eq. (5.3)).

D_f(π ‖ π_ref) = Σ_y π_ref(y) f(π(y)/π_ref(y)) for convex f with f(1) = 0. Built in: reverse KL
(f = u log u, the KL of standard RLHF), forward KL (f = −log u), Jensen–Shannon and the
α-divergence family.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxpref import _checks
from jaxpref.regularizers import _validate
from jaxpref.regularizers.links import _bisect_increasing


class FDivergence(NamedTuple):
    """A convex f with f(1) = 0, its derivative and the inverse of the derivative."""

    name: str
    f: Callable[[Array], Array]  # u ↦ f(u), u > 0
    f_prime: Callable[[Array], Array]  # u ↦ f'(u), increasing
    f_prime_inv: Callable[[Array], Array]  # v ↦ (f')⁻¹(v) ≥ 0, +inf above the range of f'
    f_prime_sup: float = float("inf")  # sup of the range of f' ((f')⁻¹ is finite below it)


def _inf_above(v, vmax, value):
    return jnp.where(v < vmax, value, jnp.inf)


def _safe(x):
    """x where positive, 1 elsewhere (the caller masks those entries to +inf)."""
    return jnp.where(x > 0, x, 1.0)


reverse_kl = FDivergence(
    "reverse_kl", lambda u: u * jnp.log(u), lambda u: jnp.log(u) + 1.0, lambda v: jnp.exp(v - 1.0)
)
forward_kl = FDivergence(
    "forward_kl",
    lambda u: -jnp.log(u),
    lambda u: -1.0 / u,
    lambda v: _inf_above(v, 0.0, 1.0 / _safe(-v)),
    0.0,
)
jensen_shannon = FDivergence(
    "jensen_shannon",
    lambda u: u * jnp.log(u) - (1.0 + u) * jnp.log(0.5 * (1.0 + u)),
    lambda u: jnp.log(2.0 * u / (1.0 + u)),
    lambda v: _inf_above(v, jnp.log(2.0), jnp.exp(v) / _safe(2.0 - jnp.exp(v))),
    float(np.log(2.0)),
)


def alpha_divergence(a: float) -> FDivergence:
    r"""α-divergence, :math:`f(u) = (u^a - a u - (1-a))/(a(a-1))`, for a ∈ (0, 1)."""
    _checks.check_in_range("a", a, 0.0, 1.0, closed="neither")
    vmax = 1.0 / (1.0 - a)
    return FDivergence(
        f"alpha_{a:g}",
        lambda u: (u**a - a * u - (1.0 - a)) / (a * (a - 1.0)),
        lambda u: (u ** (a - 1.0) - 1.0) / (a - 1.0),
        lambda v: _inf_above(v, vmax, _safe(1.0 + (a - 1.0) * v) ** (1.0 / (a - 1.0))),
        vmax,
    )


def f_divergence(
    probs: Float[ArrayLike, " K"], ref_probs: Float[ArrayLike, " K"], divergence: FDivergence
) -> Float[Array, ""]:
    r""":math:`D_f(\pi\|\pi_{\rm ref}) = \sum_y \pi_{\rm ref}(y) f(\pi(y)/\pi_{\rm ref}(y))`.

    Args:
      probs, ref_probs: (K,) distributions with entries in (0, 1]. divergence: an ``FDivergence``.
    Returns:
      () the divergence.

    References: Xiao et al., arXiv 2405.16455, Section 5.1 (footnote 10); Rényi (1961).
    """
    _validate.same_shape(probs=probs, ref_probs=ref_probs)
    _validate.probs("probs", probs)
    _validate.probs("ref_probs", ref_probs)
    return jnp.sum(ref_probs * divergence.f(probs / ref_probs))  # Sec. 5.1, footnote 10


def f_rlhf_policy(
    rewards: Float[ArrayLike, " K"],
    ref_probs: Float[ArrayLike, " K"],
    beta,
    divergence: FDivergence,
    iters: int = 200,
) -> Float[Array, " K"]:
    r"""Exact maximiser of :math:`\sum_k \pi_k r_k - \beta D_f(\pi\|\pi_{\rm ref})` on the simplex.

    KKT: π_k = π_ref,k (f')⁻¹((r_k + λ)/β), with λ set by bisection so Σπ = 1 (bracketed by
    λ = βf'(1) − max r and βf'(1) − min r, where every ratio is ≤ 1, resp. ≥ 1).
    For reverse KL this is Proposition 5.1. Eq. (5.3) of the paper drops λ, which is exact only
    when (f')⁻¹ is exponential (the KL case); ``f_rlhf_pairwise_preference`` is eq. (5.3).

    Args:
      rewards: (K,) r. ref_probs: (K,) π_ref in (0, 1]. beta: β > 0. divergence: f.
    Returns:
      (K,) probabilities.

    References: Xiao et al., arXiv 2405.16455, Section 5.1; Wang et al., arXiv 2309.16240.
    """
    _validate.same_shape(rewards=rewards, ref_probs=ref_probs)
    _validate.finite(rewards=rewards)
    _validate.probs("ref_probs", ref_probs)
    _validate.beta(beta)
    return _f_rlhf_policy(rewards, ref_probs, beta, divergence, iters)


@jax.jit(static_argnames=("divergence", "iters"))
def _f_rlhf_policy(rewards, ref_probs, beta, divergence, iters):
    h = divergence.f_prime_inv
    v1 = divergence.f_prime(jnp.ones((), rewards.dtype))
    ratio = lambda lam: h((rewards + lam) / beta)  # noqa: E731
    mass = lambda lam: jnp.sum(ref_probs * ratio(lam))  # noqa: E731
    lo, hi = beta * v1 - jnp.max(rewards), beta * v1 - jnp.min(rewards)
    lam = _bisect_increasing(mass, 1.0, lo, hi, iters)
    p = ref_probs * ratio(lam)  # Sec. 5.1, KKT of max Σπr − βD_f: π = π_ref (f')⁻¹((r+λ)/β)
    return p / jnp.sum(p)


def f_rlhf_pairwise_preference(
    p_ref: Float[ArrayLike, "..."],
    reward_1: Float[ArrayLike, "..."],
    reward_2: Float[ArrayLike, "..."],
    beta,
    divergence: FDivergence,
) -> Float[Array, "..."]:
    r"""Eq. (5.3) verbatim: p_ref·p^f_reward renormalised over the pair.

    .. math:: p^f_{\rm reward}(y_1) = \frac{(f')^{-1}(r_1/\beta)}
              {(f')^{-1}(r_1/\beta)+(f')^{-1}(r_2/\beta)}

    Eq. (5.3) is defined only while r/β stays below the supremum of f′'s range (e.g.
    r/β < log 2 for Jensen–Shannon, r/β < 0 for forward KL): outside it (f')⁻¹ has no value and
    this raises ``ValueError`` (checked on concrete inputs).

    Args:
      p_ref: p_ref(y₁) ∈ [0, 1]. reward_1, reward_2: rewards with r/β < ``f_prime_sup``.
      beta: β > 0. divergence: f.
    Returns:
      p^f_rlhf(y₁), broadcast shape.

    References: Xiao et al., arXiv 2405.16455, eq. (5.3).
    """
    _validate.finite(p_ref=p_ref, reward_1=reward_1, reward_2=reward_2)
    _checks.check_in_range("p_ref", p_ref, 0.0, 1.0)
    _validate.beta(beta)
    for name, r in (("reward_1", reward_1), ("reward_2", reward_2)):
        xp = _checks.array_namespace(r, beta)
        outside = xp.any(xp.asarray(r) / beta >= divergence.f_prime_sup)
        problem = (
            f"eq. (5.3) needs r/β < {divergence.f_prime_sup:.4g} (the range of f′ for "
            f"{divergence.name})"
        )
        _checks.check_condition(name, outside, problem)
    h1 = divergence.f_prime_inv(jnp.asarray(reward_1) / beta)
    h2 = divergence.f_prime_inv(jnp.asarray(reward_2) / beta)
    q = h1 / (h1 + h2)
    num = p_ref * q
    return num / (num + (1.0 - p_ref) * (1.0 - q))  # Eq. (5.3)

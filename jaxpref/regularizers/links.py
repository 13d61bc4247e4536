"""Generalised links g for the PL model and the PM regularizer of Theorem 3.

A generalised PL model prices response y at g(r(x, y)) for a positive increasing g:
P(y | y₁..y_k) = g(r(y)) / Σ_j g(r(y_j)). Theorem 3 of Xiao et al. gives the regularizer
R(π) = −g⁻¹(π) + C₁ + (G(g⁻¹(π)) + C₂)/π with G = ∫g. Its maximiser is π_k = g(r_k + c) with
one shift c (derivation in ``theory/pm_rlhf.md``): that equals g(r)/Σ g(r) for every
exponential link g = c·e^{ar} (c, a > 0; g⁻¹(Sπ) = g⁻¹(π) + log(S)/a) or when Σ_j g(r_j) = 1,
and in general only after scaling π by S = Σ_j g(r_j) inside R, which
``link_pm_regularizer(..., scale=S)`` provides.
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


class Link(NamedTuple):
    """A positive increasing link g with its inverse and antiderivative G = ∫g."""

    name: str
    g: Callable[[Array], Array]  # r ↦ g(r) > 0, increasing
    g_inv: Callable[[Array], Array]  # p ↦ g⁻¹(p) on the range of g
    G: Callable[[Array], Array]  # r ↦ ∫ g(r) dr (any antiderivative)
    lo: float  # left end of the reward range on which the link is checked
    hi: float  # right end


def _cot(p):
    return jnp.cos(p) / jnp.sin(p)


exp_link = Link("exp", jnp.exp, jnp.log, jnp.exp, -10.0, 10.0)
sigmoid_link = Link(
    "sigmoid", jax.nn.sigmoid, lambda p: jnp.log(p) - jnp.log1p(-p), jax.nn.softplus, -10.0, 10.0
)
linear_link = Link("linear", lambda r: r, lambda p: p, lambda r: 0.5 * r * r, 1e-3, 10.0)
arctan_link = Link(
    "arctan",
    lambda r: 0.5 * jnp.pi + jnp.arctan(r),
    lambda p: -_cot(p),
    lambda r: r * jnp.arctan(r) - 0.5 * jnp.log1p(r * r) + 0.5 * jnp.pi * r,
    -10.0,
    10.0,
)
BUILTIN_LINKS = {link.name: link for link in (exp_link, sigmoid_link, linear_link, arctan_link)}


def check_link(link: Link, num: int = 257) -> Link:
    """Raise ``ValueError`` unless g is positive and strictly increasing on [lo, hi]."""
    grid = np.linspace(link.lo, link.hi, num)
    with jax.ensure_compile_time_eval():  # concrete even when called under a caller's jit
        vals = np.asarray(link.g(jnp.asarray(grid)), dtype=np.float64)
    if not np.all(np.isfinite(vals)) or not np.all(vals > 0):
        raise ValueError(f"link: g ({link.name}) must be finite and > 0 on [{link.lo}, {link.hi}]")
    if not np.all(np.diff(vals) > 0):
        raise ValueError(f"link: g ({link.name}) is not increasing on [{link.lo}, {link.hi}]")
    return link


def make_link(name, g, g_inv, G, lo=-10.0, hi=10.0) -> Link:
    """A user link, checked positive and increasing on [lo, hi] before use."""
    return check_link(Link(name, g, g_inv, G, float(lo), float(hi)))


def link_pm_regularizer(
    probs: Float[ArrayLike, "..."], link: Link, c1=0.0, c2=0.0, scale=1.0
) -> Float[Array, "..."]:
    r"""Theorem 3: :math:`R(\pi) = -g^{-1}(s\pi) + C_1 + (G(g^{-1}(s\pi))/s + C_2)/\pi`.

    With ``scale`` s = 1 this is eq. (3.14) verbatim. Its maximiser of E_π[r + R(π)] is
    π_k = g(r_k + c)/s for the shift c that normalises; with s = Σ_j g(r_j) that is the
    generalised PL policy g(r)/Σ g(r). For an exponential link g = c·e^{ar} every s gives the
    same maximiser (so eq. (3.14) verbatim is PM for those links, not only for exp).

    Args:
      probs: π ∈ (0, 1] with s·π in the range of g. link: a checked ``Link``.
      c1, c2: the constants C₁, C₂. scale: s > 0.
    Returns:
      R(π), same shape as ``probs``.

    References: Xiao et al., arXiv 2405.16455, Theorem 3, eq. (3.14).
    """
    _validate.probs("probs", probs)
    _validate.beta(scale, "scale")
    check_link(link)
    u = link.g_inv(scale * jnp.asarray(probs))
    return -u + c1 + (link.G(u) / scale + c2) / probs  # Eq. (3.14)


def generalized_pl_policy(rewards: Float[ArrayLike, " K"], link: Link) -> Float[Array, " K"]:
    r"""The generalised PL policy :math:`\pi_k = g(r_k)/\sum_j g(r_j)` (Section 3.4), as probs.

    For the exp link this is a max-shifted softmax (rewards [89, 0] overflow e^r in float32);
    for other links g(r) is evaluated as is and a non-finite or zero normaliser raises.

    References: Xiao et al., arXiv 2405.16455, Section 3.4.
    """
    _validate.vector("rewards", rewards)
    _validate.finite(rewards=rewards)
    check_link(link)
    rewards = jnp.asarray(rewards)
    if link is exp_link:
        return _softmax(rewards)  # Sec. 3.4 with g = exp: the PL model, stabilised
    w = link.g(rewards)
    total = jnp.sum(w)
    bad_total = ~(jnp.isfinite(total) & (total > 0))
    problem = f"Σ g(r) is not finite and > 0 for the {link.name} link (overflow or underflow)"
    _checks.check_condition("rewards", bad_total, problem)
    return w / total  # Sec. 3.4, generalised PL model


_softmax = jax.jit(jax.nn.softmax)


def link_pm_maximiser(
    rewards: Float[ArrayLike, " K"], link: Link, scale=1.0, iters: int = 200
) -> Float[Array, " K"]:
    r"""Exact maximiser of E_π[r + R(π)] for R = ``link_pm_regularizer(·, link, scale=s)``.

    First-order condition (πR)'(π) = −g⁻¹(sπ) + C₁ gives π_k = g(r_k + c)/s, with c found by
    bisection so that Σ_k π_k = 1 (the objective is strictly concave since (πR)'' < 0). The
    bracket is exact: at c = g⁻¹(s/K) − max r every term is ≤ 1/K, at g⁻¹(s/K) − min r every
    term is ≥ 1/K. A solution exists iff s/K lies in the range of g (and, for a link defined on
    part of the line only, every r_k + c lies in its domain); otherwise ``ValueError``.

    Args:
      rewards: (K,) r. link: a ``Link``. scale: s > 0. iters: bisection steps.
    Returns:
      (K,) probabilities (non-negative, summing to 1).
    Raises:
      ValueError: when no interior maximiser exists (checked on concrete inputs; under a
        caller's ``jit`` the result is NaN there instead).

    References: Xiao et al., arXiv 2405.16455, Theorem 3 and Appendix B.1.
    """
    _validate.vector("rewards", rewards)
    _validate.finite(rewards=rewards)
    _validate.beta(scale, "scale")
    check_link(link)
    rewards = jnp.asarray(rewards)
    probs = _link_pm_maximiser(rewards, link, jnp.asarray(scale, rewards.dtype), iters)
    _checks.check_condition(
        "rewards",
        ~jnp.all(jnp.isfinite(probs)),
        f"no maximiser of E_π[r + R(π)] for the {link.name} link with this scale: "
        f"Σ_k g(r_k + c)/s = 1 has no solution with every g(r_k + c) > 0 (s/K, K = "
        f"{probs.size}, must lie in the range of g)",
    )
    return probs


@jax.jit(static_argnames=("link", "iters"))
def _link_pm_maximiser(rewards, link, scale, iters):
    mass = lambda c: jnp.sum(link.g(rewards + c)) / scale  # noqa: E731
    u = link.g_inv(scale / rewards.size)  # NaN/inf when s/K is outside the range of g
    c = _bisect_increasing(mass, 1.0, u - jnp.max(rewards), u - jnp.min(rewards), iters)
    p = link.g(rewards + c) / scale  # App. B.1 first-order condition: g⁻¹(sπ_k) = r_k + c
    ok = jnp.isfinite(u) & jnp.all(p >= 0) & (jnp.abs(jnp.sum(p) - 1) < 1e-4)
    return jnp.where(ok, p, jnp.nan)


def _bisect_increasing(fn, target, lo, hi, iters):
    """Root of an increasing scalar fn(c) = target on [lo, hi] by bisection (jit-friendly)."""

    def step(bounds, _):
        a, b = bounds
        m = 0.5 * (a + b)
        below = fn(m) < target
        return (jnp.where(below, m, a), jnp.where(below, b, m)), None

    (a, b), _ = jax.lax.scan(step, (jnp.asarray(lo), jnp.asarray(hi)), None, length=iters)
    return 0.5 * (a + b)

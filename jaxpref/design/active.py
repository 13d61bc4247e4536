"""Active selection of preference pairs for log-linear DPO: ADPO, ADPO+ and the baselines of
Kveton et al. (arXiv 2503.01076, §4 and §6): uniform, APO and certainty (PMC).

Every rule returns the selected pair indices in selection order; a prefix of length n' < n is
what the same rule selects with budget n' (all rules are sequential), so one run serves a
whole budget grid.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from jaxpref import _checks, linalg
from jaxpref.design.greedy import (
    DOptimalState,
    doptimal_add,
    doptimal_init,
    doptimal_update,
    greedy_doptimal,
)
from jaxpref.losses.mle import dpo_hessian, dpo_mle_newton
from jaxpref.policies.loglinear import dpo_logit

_MLE_ITERS = 50


class ActiveResult(NamedTuple):
    indices: Array  # (n,)  selected pairs in selection order
    theta_hat: Array  # (d,)  the estimate θ̂ that scored the last pick
    kappa: Array | None = None  # ()  ADPO+ only: the empirical κ of Assumption 4 along its run


def design_vectors(
    theta_hat: Float[ArrayLike, " d"],
    phi_diff: Float[ArrayLike, "N d"],
    ref_logratio: Float[ArrayLike, " N"],
    *,
    beta=1.0,
    alpha=0.0,
    precision: Float[ArrayLike, "d d"] | None = None,
) -> Float[Array, "N d"]:
    r"""ADPO design vectors v_i = β √U_i φ_i.

    Without the stabiliser (α = 0) U_i = μ_i(θ̂)(1 − μ_i(θ̂)), the Fisher weight of Lemma 1.
    With it (App. B, Eq. 13) U_i = μ(z_i)(1 − μ(z_i)), z_i = max{|β(φ_iᵀθ̂ − b_i)| −
    α √(φ_iᵀ Σ̂ φ_i), 0}, Σ̂ = ``precision``⁻¹ the covariance of θ̂ (the regularised Hessian's
    inverse; a reconstruction: the paper does not spell Σ̂ out). μ(z)(1 − μ(z)) is even in z,
    so α = 0 (or ``precision=None``) gives the plain weights.

    References: Kveton et al., arXiv 2503.01076, §4 (design vector) and App. B, Eq. (13).
    """
    z = jnp.abs(dpo_logit(theta_hat, phi_diff, ref_logratio, beta))
    if precision is not None:
        width = jnp.sqrt(linalg.mahalanobis_sq(precision, phi_diff))  # √(φᵀΣ̂φ), Σ̂ = precision⁻¹
        z = jnp.maximum(z - alpha * width, 0.0)  # Eq. (13)
    mu = jax.nn.sigmoid(z)
    return (beta * jnp.sqrt(mu * (1 - mu)))[:, None] * phi_diff


def _refit(phi, labels, b, selected, beta, gamma):
    """θ̂ on the labels queried so far and its regularised Hessian (the precision of θ̂)."""
    w = selected.astype(phi.dtype)
    theta = dpo_mle_newton(phi, labels, b, w, beta, gamma, _MLE_ITERS).theta
    precision = dpo_hessian(theta, phi, beta=beta, ref_logratio=b, weights=w)
    return theta, precision + gamma * jnp.eye(phi.shape[1], dtype=phi.dtype)


def _is_refit_time(t):
    """t = 1, 2, 4, 8, … (the doubling schedule of ADPO's experiments)."""
    return (t & (t - 1)) == 0


@partial(jax.jit, static_argnames=("n", "num_candidates"))
def _adpo(key, phi, labels, b, beta, gamma, alpha, n, num_candidates):
    N, d = phi.shape
    state = doptimal_init(jnp.zeros_like(phi), gamma=gamma, max_picks=n)  # low-rank H⁻¹ if n < d
    theta = jnp.zeros(d, phi.dtype)
    carry = (state, theta, jnp.eye(d, dtype=phi.dtype) * gamma, jnp.zeros_like(phi), key)

    def step(carry, t):
        state, theta, precision, V, key = carry

        def refit(_):
            th, prec = _refit(phi, labels, b, state.selected, beta, gamma)
            V = design_vectors(th, phi, b, beta=beta, alpha=alpha, precision=prec)
            # new design vectors: re-score every candidate once (O(N·d²), or O(N·d·t) on the
            # low-rank H⁻¹), log₂ n times
            return th, prec, V, linalg.inverse_quad_form(state.H_inv, V)

        theta, precision, V, scores = jax.lax.cond(
            _is_refit_time(t), refit, lambda _: (theta, precision, V, state.scores), None
        )
        state = state._replace(scores=scores)
        if num_candidates is None:
            state, i = doptimal_update(state, V)  # O(N·d): rank-one score update (doptimal_add)
        else:
            key, sub = jax.random.split(key)
            state, i = _subset_step(sub, state, V, num_candidates)
        return (state, theta, precision, V, key), (i, theta)

    _, (indices, thetas) = jax.lax.scan(step, carry, jnp.arange(1, n + 1))
    return ActiveResult(indices, thetas[-1])


def _subset_step(key, state: DOptimalState, V, m):
    """Greedy pick among m unselected candidates drawn uniformly (ADPO's practical variant).
    All N scores are kept current by the rank-one update (O(N·d) per pick), so the subset's
    scores are read, not recomputed (which would cost O(m·d²))."""
    u = jnp.where(state.selected, jnp.inf, jax.random.uniform(key, state.selected.shape))
    idx = jax.lax.top_k(-u, m)[1]
    i = idx[jnp.argmax(state.scores[idx])]
    state = doptimal_add(state, V, V[i])
    return state._replace(selected=state.selected.at[i].set(True)), i


def _check_pairs(phi_diff, labels, ref_logratio, n, beta, gamma):
    N, _ = _checks.check_ndim("phi_diff", phi_diff, 2)
    for name, x in (("labels", labels), ("ref_logratio", ref_logratio)):
        if _checks.shape_of(name, x) != (N,):
            raise ValueError(
                f"{name}: expected shape ({N},) to match phi_diff, got {_checks.shape_of(name, x)}"
            )
        _checks.check_finite(name, x)
    _checks.check_finite("phi_diff", phi_diff)
    _checks.check_in_range("labels", labels, 0.0, 1.0)
    _checks.check_int_in("n", n, 1, N)
    _checks.check_positive("beta", beta)
    _checks.check_positive("gamma", gamma)
    dt = jnp.asarray(phi_diff).dtype
    return (
        jnp.asarray(phi_diff),
        jnp.asarray(labels, dt),
        jnp.asarray(ref_logratio, dt),
        jnp.asarray(beta, dt),
        jnp.asarray(gamma, dt),
    )


def adpo(
    key: PRNGKeyArray,
    phi_diff: Float[ArrayLike, "N d"],
    labels: Float[ArrayLike, " N"],
    ref_logratio: Float[ArrayLike, " N"],
    n: int,
    *,
    beta=1.0,
    gamma=1.0,
    alpha=0.0,
    num_candidates: int | None = None,
) -> ActiveResult:
    r"""ADPO (online feedback): greedy D-optimal selection with θ̂ re-fitted on queried labels.

    For t = 1..n: if t is a power of two, re-fit θ̂_{t−1} = argmin L_DPO(θ; S_{t−1}) + (γ/2)‖θ‖²
    on the labels queried so far; score candidates by v_iᵀH⁻¹v_i with v_i = β√U_i φ_i
    (``design_vectors``); pick the best unselected i, "query" s_i, H ← H + v_i v_iᵀ.

    ``labels`` play the oracle: only the entries of already-selected pairs ever enter a fit.
    Between re-fits all N scores are kept current in O(N·d) per pick (``greedy.py``); a re-fit
    re-scores all candidates against the current H⁻¹ (O(N·d²), log₂ n times). With n < d the
    inverse is kept in its low-rank form (``linalg.LowRankInverse``: n × d memory, O(d·t) per
    pick and O(N·d·t) per re-score, instead of d × d and O(d²), O(N·d²)).

    Args:
      key: PRNG key for the random candidate subsets (unused when ``num_candidates`` is None).
      phi_diff, labels, ref_logratio: (N, d), (N,), (N,) the pool; see ``fit_dpo_mle``.
      n: budget, 1 ≤ n ≤ N.
      beta, gamma: > 0; γ is both the ridge of the fit and H_0 = γI.
      alpha: ≥ 0, the UCB stabiliser of App. B (α = 3 in the paper's §6; 0 disables it).
      num_candidates: if set (the paper uses 256), score only that many unselected candidates
        drawn uniformly afresh at each step; needs num_candidates ≤ N − n + 1.

    Returns: ``ActiveResult(indices (n,), theta_hat (d,))``.

    References: Kveton et al., "Active Learning for Direct Preference Optimization",
      arXiv 2503.01076, Algorithm 1 (ADPO), §6 (doubling re-fits, 256 candidates), App. B.
    """
    phi, s, b, beta, gamma = _check_pairs(phi_diff, labels, ref_logratio, n, beta, gamma)
    _checks.check_nonnegative("alpha", alpha)
    if num_candidates is not None:
        _checks.check_int_in("num_candidates", num_candidates, 1, phi.shape[0] - n + 1)
    return _adpo(key, phi, s, b, beta, gamma, jnp.asarray(alpha, phi.dtype), n, num_candidates)


def adpo_plus(
    phi_diff: Float[ArrayLike, "N d"],
    labels: Float[ArrayLike, " N"],
    ref_logratio: Float[ArrayLike, " N"],
    n: int,
    *,
    beta=1.0,
    gamma=1.0,
    alpha=0.0,
) -> ActiveResult:
    r"""ADPO+ (logged feedback): θ̂ is fitted once on all N labels, then greedy D-optimal
    selection of the design vectors v_i = β√U_i(θ̂) φ_i. This is ADPO's only difference.

    Returns: ``ActiveResult(indices (n,), theta_hat (d,), kappa ())``; ``kappa`` is the
    empirical κ of Assumption 4 along this greedy run (``DOptimalResult.kappa``: max over the
    n picks of max_i s_i / s_{I_t}), the κ that Theorem 4's design bound needs.

    References: Kveton et al., arXiv 2503.01076, Algorithm 2 (ADPO+), Assumption 4.
    """
    phi, s, b, beta, gamma = _check_pairs(phi_diff, labels, ref_logratio, n, beta, gamma)
    _checks.check_nonnegative("alpha", alpha)
    theta, precision = _refit(phi, s, b, jnp.ones(phi.shape[0], bool), beta, gamma)
    V = design_vectors(theta, phi, b, beta=beta, alpha=alpha, precision=precision)
    res = greedy_doptimal(V, n, gamma=gamma)
    return ActiveResult(res.indices, theta, res.kappa)


def apo(phi_diff: Float[ArrayLike, "N d"], n: int, *, gamma=1.0) -> ActiveResult:
    r"""Practical APO: greedy on ‖φ_i‖_{H_t⁻¹} with the unweighted Gram matrix
    H_t = γI + Σ φφᵀ (no μ(1 − μ) weights, no β), as described in ADPO's App. C.

    References: Das, Chakraborty, Pacchiano & Chowdhury, "Active Preference Optimization for
      Sample Efficient RLHF", arXiv 2402.10500; Kveton et al., arXiv 2503.01076, App. C.
    """
    _checks.check_ndim("phi_diff", phi_diff, 2)
    res = greedy_doptimal(phi_diff, n, gamma=gamma)
    return ActiveResult(res.indices, jnp.zeros(phi_diff.shape[1], jnp.asarray(phi_diff).dtype))


@partial(jax.jit, static_argnames=("n",))
def _certainty(phi, labels, b, beta, gamma, n):
    N, d = phi.shape

    def step(carry, t):
        selected, theta = carry
        theta = jax.lax.cond(
            _is_refit_time(t),
            lambda _: _refit(phi, labels, b, selected, beta, gamma)[0],
            lambda _: theta,
            None,
        )
        margin = jnp.abs(dpo_logit(theta, phi, b, beta))  # |r̂(x, y₁) − r̂(x, y₂)|
        i = jnp.argmax(jnp.where(selected, -jnp.inf, margin))
        return (selected.at[i].set(True), theta), (i, theta)

    init = (jnp.zeros(N, bool), jnp.zeros(d, phi.dtype))
    _, (indices, thetas) = jax.lax.scan(step, init, jnp.arange(1, n + 1))
    return ActiveResult(indices, thetas[-1])


def certainty(
    phi_diff: Float[ArrayLike, "N d"],
    labels: Float[ArrayLike, " N"],
    ref_logratio: Float[ArrayLike, " N"],
    n: int,
    *,
    beta=1.0,
    gamma=1.0,
) -> ActiveResult:
    r"""Certainty / PMC: pick the unselected pair with the largest implicit-reward gap
    |r̂(x, y₁) − r̂(x, y₂)| = |β(φ_iᵀθ̂ − b_i)|, θ̂ re-fitted on queried labels on ADPO's doubling
    schedule.

    References: Muldrew, Hayes, Zhang & Barber, "Active Preference Learning for Large Language
      Models", arXiv 2402.08114 (the CERTAINTY acquisition); Kveton et al., arXiv 2503.01076, §6.
    """
    phi, s, b, beta, gamma = _check_pairs(phi_diff, labels, ref_logratio, n, beta, gamma)
    return _certainty(phi, s, b, beta, gamma, n)


def uniform(key: PRNGKeyArray, num_pairs: int, n: int) -> ActiveResult:
    """Uniform selection without replacement: the first n of a random permutation."""
    _checks.check_int_in("n", n, 1, num_pairs)
    return ActiveResult(jax.random.permutation(key, num_pairs)[:n], jnp.zeros(0))


METHODS = ("ADPO", "ADPO+", "APO", "certainty", "uniform")
"""The selection rules of Kveton et al.'s §6 comparison, by the paper's names (``select``)."""

DETERMINISTIC = ("ADPO+", "APO", "certainty")
"""The rules of ``METHODS`` that ignore ``select``'s key (the same picks on a fixed pool)."""


def uses_key(method: str, num_candidates: int | None = None) -> bool:
    """Whether ``select(method, key, ..., num_candidates=...)`` depends on ``key``: uniform
    always; ADPO only through its candidate subsets (``num_candidates`` set); the rules of
    ``DETERMINISTIC`` never."""
    if method not in METHODS:
        raise ValueError(f"method: must be one of {METHODS}, got {method!r}")
    return method == "uniform" or (method == "ADPO" and num_candidates is not None)


def select(
    method: str,
    key: PRNGKeyArray,
    phi_diff: Float[ArrayLike, "N d"],
    labels: Float[ArrayLike, " N"],
    ref_logratio: Float[ArrayLike, " N"],
    n: int,
    *,
    beta=1.0,
    gamma=1.0,
    alpha=0.0,
    num_candidates: int | None = None,
) -> ActiveResult:
    r"""Run the selection rule named ``method`` (one of ``METHODS``) with budget n.

    One signature for the five rules of the paper's §6 comparison, so that a protocol loops
    over names: ``"ADPO"`` (``adpo``: online feedback, ``key`` draws the candidate subsets),
    ``"ADPO+"`` (``adpo_plus``: logged feedback), ``"APO"`` (``apo``: unweighted Gram matrix,
    ignores labels, β and α), ``"certainty"`` (``certainty``: PMC's largest implicit-reward gap)
    and ``"uniform"`` (``uniform``: ``key``'s permutation). Arguments a rule does not use are
    ignored; the others are checked by that rule.

    Returns: that rule's ``ActiveResult`` (indices in selection order; only ADPO+ sets
    ``kappa``).

    References: Kveton et al., "Active Learning for Direct Preference Optimization",
      arXiv 2503.01076, §6 (the compared methods); the rules' own docstrings.
    """
    if method not in METHODS:
        raise ValueError(f"method: unknown {method!r}; known: {METHODS}")
    kw = dict(beta=beta, gamma=gamma)
    if method == "ADPO":
        return adpo(
            key, phi_diff, labels, ref_logratio, n, alpha=alpha, num_candidates=num_candidates, **kw
        )
    if method == "ADPO+":
        return adpo_plus(phi_diff, labels, ref_logratio, n, alpha=alpha, **kw)
    if method == "APO":
        return apo(phi_diff, n, gamma=gamma)
    if method == "certainty":
        return certainty(phi_diff, labels, ref_logratio, n, **kw)
    return uniform(key, _checks.check_ndim("phi_diff", phi_diff, 2)[0], n)


@partial(jax.jit, static_argnames=("max_iters",))
def _prefix_fits(order, budgets, phi, labels, b, beta, gamma, max_iters):
    ranks = jnp.arange(1, order.size + 1, dtype=order.dtype)
    position = jnp.zeros(phi.shape[0], order.dtype).at[order].set(ranks)

    def one(n):
        w = ((position > 0) & (position <= n)).astype(phi.dtype)
        return dpo_mle_newton(phi, labels, b, w, beta, gamma, max_iters).theta

    return jax.vmap(one)(budgets)


def prefix_fits(
    order: Int[ArrayLike, " n"],
    budgets,
    phi_diff: Float[ArrayLike, "N d"],
    labels: Float[ArrayLike, " N"],
    ref_logratio: Float[ArrayLike, " N"],
    *,
    beta=1.0,
    gamma=1.0,
    max_iters: int = _MLE_ITERS,
) -> Float[Array, "G d"]:
    r"""θ̂_n = argmin_θ L_DPO(θ; {order[:n]}) + (γ/2)‖θ‖² for every budget n in ``budgets``.

    Every rule of this module is sequential (its first n' picks are what it selects with budget
    n' < n), so one run of budget max(budgets) and this one vmapped Newton fit give the whole
    curve θ̂_n of the paper's §6 figures (the DPO MLE of Eq. (4) with the ridge of Theorem 3).

    Args:
      order: (m,) distinct pair indices in selection order (a rule's ``indices``).
      budgets: (G,) prefix lengths, each in [1, m].
      phi_diff, labels, ref_logratio: (N, d), (N,), (N,) the pool; see ``fit_dpo_mle``.
      beta, gamma: > 0.
      max_iters: Newton iteration cap per fit.

    Returns: (G, d) the estimates, one row per budget.

    References: Kveton et al., arXiv 2503.01076, Eq. (4) (DPO MLE), §6 (θ̂_n on each budget).
    """
    phi, s, b, beta, gamma = _check_pairs(phi_diff, labels, ref_logratio, 1, beta, gamma)
    (m,) = _checks.check_ndim("order", order, 1)
    xp = _checks.array_namespace(order)
    order_sorted = xp.sort(xp.asarray(order))
    if not xp.issubdtype(order_sorted.dtype, xp.integer):
        raise ValueError(f"order: expected integer pair indices, got dtype {order_sorted.dtype}")
    outside = (order_sorted[0] < 0) | (order_sorted[-1] >= phi.shape[0]) if m else False
    _checks.check_condition("order", outside, f"indices must lie in [0, {phi.shape[0]})")
    repeated = xp.any(order_sorted[1:] == order_sorted[:-1])
    _checks.check_condition("order", repeated, "indices must be distinct (a selection order)")
    order = jnp.asarray(order)
    (_,) = _checks.check_ndim("budgets", budgets, 1)
    budgets = np.asarray(budgets)
    if budgets.size == 0 or budgets.min() < 1 or budgets.max() > m:
        raise ValueError(f"budgets: each must be in [1, {m}] (the length of order), got {budgets}")
    _checks.check_int_in("max_iters", max_iters, 1, 10_000)
    return _prefix_fits(order, jnp.asarray(budgets, order.dtype), phi, s, b, beta, gamma, max_iters)

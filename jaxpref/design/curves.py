"""Metric-vs-budget curves of a selection order: ADPO §6's protocol after the picks.

Kveton et al. (arXiv 2503.01076, §6) compare selection rules by what the DPO MLE on each rule's
first n picks achieves, for every n of a budget grid: the maximum logit error against θ* (§6.1,
Eq. 8) and the accuracy, margin and negative log-likelihood over all N pairs (§6.2). Every rule
of ``jaxpref.design`` is sequential, so one run at the largest budget (``select``) and one call of
``budget_curve`` on its indices give the whole curve; ``compare_methods`` does both for every rule
and seed of such a comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from jaxpref import _checks
from jaxpref.design.active import _MLE_ITERS, METHODS, prefix_fits, select, uses_key
from jaxpref.metrics.logit_error import LogitErrors, logit_errors
from jaxpref.metrics.preference_fit import PairFitMetrics, pair_fit_metrics


class BudgetCurve(NamedTuple):
    thetas: Array  # (G, d)  θ̂_n, the ridge DPO MLE on the first n picks, one row per budget
    errors: LogitErrors  # fields (G,)  max / mean logit error and error rate against θ*
    fit: PairFitMetrics  # fields (G,)  accuracy, margin and NLL of θ̂_n over all N pairs


@jax.jit
def _scores(thetas, theta_star, phi, b, beta):
    def one(theta):
        err = logit_errors(theta, theta_star, phi, b, beta=beta)
        return err, pair_fit_metrics(theta, phi, b, beta=beta)

    return jax.vmap(one)(thetas)


def budget_curve(
    order: Int[ArrayLike, " n"],
    budgets,
    phi_diff: Float[ArrayLike, "N d"],
    labels: Float[ArrayLike, " N"],
    ref_logratio: Float[ArrayLike, " N"],
    theta_star: Float[ArrayLike, " d"],
    *,
    beta=1.0,
    gamma=1.0,
    max_iters: int = _MLE_ITERS,
) -> BudgetCurve:
    r"""θ̂_n on every prefix order[:n], n in ``budgets``, scored over all N pairs.

    .. math:: \hat\theta_n = \arg\min_\theta \sum_{i \in \mathrm{order}[:n]}
              \ell(\beta(\phi_i^\top\theta - b_i); s_i) + \tfrac{\gamma}{2}\|\theta\|^2

    (``prefix_fits``, the DPO MLE of Eq. (4) with Theorem 3's ridge), then for each θ̂_n the
    logit errors against θ*: E(θ̂_n, θ*) = max_i |β φ_iᵀ(θ̂_n − θ*)| (Eq. 8), its mean and the
    sign-flip rate (``metrics.logit_errors``, §6.1), and the accuracy, margin and NLL of
    h_i = β(φ_iᵀθ̂_n − b_i) over all N pairs (``metrics.preference_fit.pair_fit_metrics``, §6.2).

    ``fit`` reads every row as winner first (φ_i = φ(x_i, y_w) − φ(x_i, y_l), b_i likewise), as
    §6.2's logged pairs are (labels all 1); on a pool whose labels are not all 1 it measures
    agreement with the first response, not with the labels (``errors`` needs no orientation).

    Args:
      order: (m,) distinct pair indices in selection order (a rule's ``indices``).
      budgets: (G,) prefix lengths, each in [1, m].
      phi_diff, labels, ref_logratio: (N, d), (N,), (N,) the pool (see ``fit_dpo_mle``).
      theta_star: (d,) the target θ* of the logit errors (e.g. the MLE on all N labels).
      beta, gamma: > 0, the DPO temperature and the ridge of every fit.
      max_iters: Newton iteration cap per fit.

    Returns: ``BudgetCurve(thetas (G, d), errors, fit)``, each metric field of shape (G,).

    Example:
      >>> import numpy as np
      >>> rng = np.random.default_rng(0)
      >>> phi, b = rng.normal(size=(8, 2)), np.zeros(8)
      >>> c = budget_curve(np.arange(8), [4, 8], phi, np.ones(8), b, np.zeros(2))
      >>> c.thetas.shape, c.errors.max.shape, c.fit.accuracy.shape
      ((2, 2), (2,), (2,))

    References: Kveton et al., "Active Learning for Direct Preference Optimization",
      arXiv 2503.01076, Eq. (4) and (8), §6.1 (max logit error, error rate vs n) and §6.2
      (accuracy, margin, NLL vs n).
    """
    _, d = _checks.check_ndim("phi_diff", phi_diff, 2)
    if _checks.shape_of("theta_star", theta_star) != (d,):
        raise ValueError(
            f"theta_star: expected shape ({d},) to match phi_diff, "
            f"got {_checks.shape_of('theta_star', theta_star)}"
        )
    _checks.check_finite("theta_star", theta_star)
    kw = dict(beta=beta, gamma=gamma, max_iters=max_iters)
    thetas = prefix_fits(order, budgets, phi_diff, labels, ref_logratio, **kw)
    dt = thetas.dtype
    phi, b, star = (jnp.asarray(x, dt) for x in (phi_diff, ref_logratio, theta_star))
    errors, fit = _scores(thetas, star, phi, b, beta)
    return BudgetCurve(thetas, errors, fit)


class MethodCurves(NamedTuple):
    indices: Array  # (S, n)  each run's picks in selection order, one row per key
    kappa: Array | None  # (S,)  ADPO+'s empirical κ of each run (None for the other rules)
    curve: BudgetCurve  # fields (S, G, ...)  each run's ``budget_curve``


def compare_methods(
    keys: Sequence[PRNGKeyArray],
    phi_diff: Float[ArrayLike, "N d"],
    labels: Float[ArrayLike, " N"],
    ref_logratio: Float[ArrayLike, " N"],
    budgets,
    theta_star: Float[ArrayLike, " d"],
    *,
    methods: Sequence[str] = METHODS,
    beta=1.0,
    gamma=1.0,
    alpha=0.0,
    num_candidates: int | None = None,
    max_iters: int = _MLE_ITERS,
) -> dict[str, MethodCurves]:
    r"""ADPO §6's comparison on one pool: every rule of ``methods`` once per key, each run's picks
    at the largest budget (``select``) and its curve over ``budgets`` (``budget_curve``).

    The rules that ignore the key (``uses_key``: ADPO+, APO, certainty, and ADPO without
    candidate subsets) run once on a fixed pool, and that run stands for every key (the picks
    and curves a rerun would give); ADPO with subsets and uniform run once per key. A protocol
    whose pool changes with the seed (§6.1 draws labels and θ* per seed) calls this once per
    pool with that seed's key.

    Args:
      keys: (S,) PRNG keys, one per run (e.g. ``[jax.random.key(s) for s in range(S)]``).
      phi_diff, labels, ref_logratio: (N, d), (N,), (N,) the pool (see ``select``).
      budgets: (G,) the budget grid; every rule selects max(budgets) pairs.
      theta_star: (d,) the target of the logit errors (see ``budget_curve``).
      methods: names from ``METHODS``.
      beta, gamma, alpha, num_candidates: as in ``select`` (γ is also every fit's ridge).
      max_iters: Newton iteration cap per fit.

    Returns: ``{method: MethodCurves}``, each field stacked over the S keys in key order.

    Example:
      >>> import jax, numpy as np
      >>> rng = np.random.default_rng(0)
      >>> phi, b = rng.normal(size=(8, 2)), np.zeros(8)
      >>> keys = [jax.random.key(0), jax.random.key(1)]
      >>> out = compare_methods(keys, phi, np.ones(8), b, [2, 4], np.zeros(2), methods=["APO"])
      >>> out["APO"].indices.shape, out["APO"].curve.errors.max.shape
      ((2, 4), (2, 2))

    References: Kveton et al., "Active Learning for Direct Preference Optimization",
      arXiv 2503.01076, §6.1 and §6.2 (every method and seed, metrics against n).
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not len(methods):
        raise ValueError(f"methods: need names from {METHODS}, got {list(methods)}")
    if not len(keys):
        raise ValueError("keys: need at least one PRNG key")
    grid = np.asarray(budgets)
    if grid.ndim != 1 or grid.size == 0:
        raise ValueError(f"budgets: need a non-empty 1-D grid, got shape {grid.shape}")
    n, kw = int(grid.max()), dict(beta=beta, gamma=gamma)
    rule, fit = dict(alpha=alpha, num_candidates=num_candidates), kw | dict(max_iters=max_iters)
    out = {}
    for method in methods:
        runs = []
        for key in keys:
            if runs and not uses_key(method, num_candidates):
                runs.append(runs[0])
                continue
            res = select(method, key, phi_diff, labels, ref_logratio, n, **kw, **rule)
            c = budget_curve(
                res.indices, budgets, phi_diff, labels, ref_logratio, theta_star, **fit
            )
            runs.append(MethodCurves(res.indices, res.kappa, c))
        out[method] = jax.tree.map(lambda *xs: jnp.stack(xs), *runs)
    return out


__all__ = ["BudgetCurve", "MethodCurves", "budget_curve", "compare_methods"]

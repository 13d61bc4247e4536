"""How well a log-linear DPO policy orders logged preference pairs: the metrics of ADPO §6.2."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from jaxpref import _checks
from jaxpref.losses.preference import logistic_loss
from jaxpref.policies.loglinear import dpo_logit


class PairFitMetrics(NamedTuple):
    accuracy: Array  # ()  fraction of pairs with h_i > 0 (the winner's log-ratio is larger)
    margin: Array  # ()  mean_i h_i
    nll: Array  # ()  mean_i −log σ(h_i)


def pair_fit_metrics(
    theta: Float[ArrayLike, " d"],
    phi_diff: Float[ArrayLike, "N d"],
    ref_logratio: Float[ArrayLike, " N"],
    *,
    beta=1.0,
) -> PairFitMetrics:
    r"""Accuracy, margin and negative log-likelihood of θ over pairs (winner first).

    With h_i = β(φ_iᵀθ − b_i) = β[log(π/π₀)(y_{i,w} | x_i) − log(π/π₀)(y_{i,l} | x_i)] for the
    log-linear policy π(y | x; θ) ∝ exp(φ(x, y)ᵀθ):

    .. math:: \mathrm{acc} = \tfrac1N \sum_i 1\{h_i > 0\},\quad
              \mathrm{margin} = \tfrac1N \sum_i h_i,\quad
              \mathrm{NLL} = -\tfrac1N \sum_i \log \sigma(h_i)

    Args:
      theta: (d,) policy parameters.
      phi_diff: (N, d) φ(x_i, y_{i,w}) − φ(x_i, y_{i,l}), the winner's features first.
      ref_logratio: (N,) b_i = log π₀(y_{i,w} | x_i) − log π₀(y_{i,l} | x_i).
      beta: > 0, the DPO temperature.
    Returns: ``PairFitMetrics(accuracy, margin, nll)``, scalars.

    References: Kveton et al., "Active Learning for Direct Preference Optimization",
      arXiv 2503.01076, §6.2 (accuracy, margin and negative log-likelihood over all N pairs).
    """
    N, d = _checks.check_ndim("phi_diff", phi_diff, 2)
    if _checks.shape_of("theta", theta) != (d,):
        raise ValueError(f"theta: expected shape ({d},) to match phi_diff, got {jnp.shape(theta)}")
    if _checks.shape_of("ref_logratio", ref_logratio) != (N,):
        raise ValueError(
            f"ref_logratio: expected shape ({N},) to match phi_diff, got {jnp.shape(ref_logratio)}"
        )
    _checks.check_positive("beta", beta)
    h = dpo_logit(theta, phi_diff, ref_logratio, beta)  # Eq. (6): μ_i = σ(h_i)
    return PairFitMetrics(
        jnp.mean((h > 0).astype(h.dtype)), jnp.mean(h), jnp.mean(logistic_loss(h, 1.0))
    )

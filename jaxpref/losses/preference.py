"""DPO-family, Bradley–Terry and Plackett–Luce losses, one value per example.

Losses take log-probabilities or rewards (arrays), never a model: the same function serves a
log-linear toy and a sharded LLM (whose ``sequence_logps`` produce the inputs).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from jaxpref import _checks

LOSS_TYPES = ("sigmoid", "hinge", "ipo", "robust")


def dpo_loss(
    policy_chosen_logps: Float[Array, " B"],
    policy_rejected_logps: Float[Array, " B"],
    ref_chosen_logps: Float[Array, " B"],
    ref_rejected_logps: Float[Array, " B"],
    *,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> Float[Array, " B"]:
    r"""Per-example DPO loss of the chosen-over-rejected margin.

    With m = (log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l)) and ε the label
    smoothing (the assumed probability that a label is flipped):

    - ``sigmoid`` (Rafailov et al. 2023, Eq. 7; ε > 0 is the "conservative DPO" mixture):
      −(1 − ε) log σ(βm) − ε log σ(−βm).
    - ``hinge`` (SLiC-HF, Zhao et al. 2023, Eq. 2 with δ = 1/β): max(0, 1 − βm).
    - ``ipo`` (Azar et al. 2023, Eq. 17): (m − 1/(2β))².
    - ``robust`` (Chowdhury et al. 2024, Eq. 8, unbiased under flips with rate ε < 1/2):
      [(1 − ε)(−log σ(βm)) − ε(−log σ(−βm))] / (1 − 2ε).

    Args:
      policy_chosen_logps, policy_rejected_logps: (B,) summed log-probs under the policy.
      ref_chosen_logps, ref_rejected_logps: (B,) summed log-probs under the reference.
      beta: > 0, the KL-regularisation strength.
      loss_type: one of ``LOSS_TYPES``.
      label_smoothing: ε in [0, 1/2) for ``sigmoid``/``robust``; must be 0 for the others.

    Returns:
      (B,) losses; finite with finite gradients for margins up to ±1e4.

    Example:
      >>> z = jnp.zeros(1)
      >>> dpo_loss(z, z, z, z, beta=0.1)  # zero margin: log 2
      Array([0.6931472], dtype=float32)

    References:
      Rafailov et al., "Direct Preference Optimization", arXiv 2305.18290, Eq. (7).
      Zhao et al., "SLiC-HF: Sequence Likelihood Calibration with Human Feedback", arXiv 2305.10425.
      Azar et al., "A General Theoretical Paradigm to Understand Learning from Human
        Preferences" (IPO), arXiv 2310.12036, Eq. (17).
      Chowdhury, Kini & Natarajan, "Provably Robust DPO: Aligning Language Models with Noisy
        Feedback", arXiv 2403.00409, Eq. (8).
    """
    _checks.check_same_shape(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    _checks.check_positive("beta", beta)
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type: must be one of {LOSS_TYPES}, got {loss_type!r}")
    if loss_type in ("hinge", "ipo"):
        if label_smoothing != 0.0:
            raise ValueError(f"label_smoothing: must be 0 for loss_type={loss_type!r}")
    else:
        _checks.check_in_range("label_smoothing", label_smoothing, 0.0, 0.5, closed="left")
    for name, x in (
        ("policy_chosen_logps", policy_chosen_logps),
        ("policy_rejected_logps", policy_rejected_logps),
        ("ref_chosen_logps", ref_chosen_logps),
        ("ref_rejected_logps", ref_rejected_logps),
    ):
        _checks.check_finite(name, x)
    margin = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
    return _LOSSES[loss_type](margin, beta, label_smoothing)


def _sigmoid(m, beta, eps):
    return -(1 - eps) * jax.nn.log_sigmoid(beta * m) - eps * jax.nn.log_sigmoid(
        -beta * m
    )  # Eq. (7)


def _hinge(m, beta, eps):
    return jax.nn.relu(1.0 - beta * m)


def _ipo(m, beta, eps):
    return (m - 1.0 / (2.0 * beta)) ** 2  # Eq. (17), IPO


def _robust(m, beta, eps):
    pos, neg = -jax.nn.log_sigmoid(beta * m), -jax.nn.log_sigmoid(-beta * m)
    return ((1 - eps) * pos - eps * neg) / (1 - 2 * eps)  # Eq. (8), rDPO


_LOSSES = {"sigmoid": _sigmoid, "hinge": _hinge, "ipo": _ipo, "robust": _robust}


def btl_nll(
    rewards_1: Float[Array, " B"],
    rewards_2: Float[Array, " B"],
    labels: Float[Array, " B"] | None = None,
) -> Float[Array, " B"]:
    r"""Bradley–Terry negative log-likelihood of observed preferences.

    P(y₁ ≻ y₂) = σ(r₁ − r₂); with s = 1 when y₁ was preferred (soft s ∈ [0, 1] allowed):
    −[s log σ(r₁ − r₂) + (1 − s) log σ(r₂ − r₁)]. Without ``labels``, y₁ is the preferred one.

    References: Bradley & Terry, "Rank Analysis of Incomplete Block Designs", Biometrika 1952.
    """
    _checks.check_same_shape(rewards_1=rewards_1, rewards_2=rewards_2)
    _checks.check_finite("rewards_1", rewards_1)
    _checks.check_finite("rewards_2", rewards_2)
    delta = rewards_1 - rewards_2
    if labels is None:
        return -jax.nn.log_sigmoid(delta)
    _checks.check_same_shape(rewards_1=rewards_1, labels=labels)
    _checks.check_finite("labels", labels)
    _checks.check_in_range("labels", labels, 0.0, 1.0)
    return -(labels * jax.nn.log_sigmoid(delta) + (1 - labels) * jax.nn.log_sigmoid(-delta))


def plackett_luce_nll(
    scores: Float[Array, "... K"], ranking: Int[Array, "... K"] | None = None
) -> Float[Array, "..."]:
    r"""Plackett–Luce negative log-likelihood of a full ranking.

    P(ranking) = Π_k exp(s_{ρ_k}) / Σ_{j≥k} exp(s_{ρ_j}), with ρ the ranking (best first).
    Without ``ranking`` the scores are taken to be listed best first. For K = 2 this is
    ``btl_nll``.

    Args:
      scores: (..., K) rewards of the K responses.
      ranking: (..., K) a permutation of 0..K−1 per row, best first.

    References: Plackett, "The Analysis of Permutations", JRSS C 1975; Luce, "Individual Choice
      Behavior", 1959. Rafailov et al., arXiv 2305.18290, Eq. (18) (the PL form of DPO).
    """
    _checks.check_finite("scores", scores)
    shape = _checks.shape_of("scores", scores)
    if len(shape) < 1 or shape[-1] < 2:
        raise ValueError(f"scores: need at least 2 responses on the last axis, got shape {shape}")
    if ranking is not None:
        if _checks.shape_of("ranking", ranking) != shape:
            raise ValueError(
                f"ranking: shape {_checks.shape_of('ranking', ranking)} must equal "
                f"scores shape {shape}"
            )
        if _checks.is_concrete(ranking):
            import numpy as np

            r = np.sort(np.asarray(ranking), axis=-1)
            if not np.array_equal(r, np.broadcast_to(np.arange(shape[-1]), r.shape)):
                raise ValueError("ranking: each row must be a permutation of 0..K-1")
        scores = jnp.take_along_axis(scores, ranking, axis=-1)
    # log Σ_{j≥k} exp(s_j): reverse cumulative logsumexp.
    tail_lse = jnp.flip(jax.lax.cumlogsumexp(jnp.flip(scores, -1), axis=scores.ndim - 1), -1)
    return jnp.sum(tail_lse - scores, axis=-1)

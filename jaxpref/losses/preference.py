"""DPO-family, Bradley–Terry and Plackett–Luce losses, one value per example.

Losses take log-probabilities or rewards (arrays), never a model: the same function serves a
log-linear toy and a sharded LLM (whose ``sequence_logps`` produce the inputs).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Real

from jaxpref import _checks

LOSS_TYPES = (
    "sigmoid",
    "hinge",
    "ipo",
    "robust",
    "exo_pair",
    "nca_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
)
SMOOTHED = ("sigmoid", "robust", "aot", "aot_unpaired")  # ε in [0, 1/2) allowed
BATCHWISE = ("aot", "aot_unpaired")  # sort over the batch: each value depends on the others


def logistic_loss(
    logits: Float[ArrayLike, "..."], labels: Float[ArrayLike, "..."]
) -> Float[Array, "..."]:
    r"""The logistic (Bernoulli) negative log-likelihood on logits: the one primitive that every
    Bradley–Terry / DPO-sigmoid likelihood in jaxpref is written with.

    .. math:: \ell(h; p) = -p\log\sigma(h) - (1 - p)\log\sigma(-h)
              = p\,\mathrm{softplus}(-h) + (1 - p)\,\mathrm{softplus}(h)
              = \mathrm{softplus}(h) - p\,h,

    the NLL of an outcome o ~ Bernoulli(σ(h)) with (soft) label p = P(o = 1) ∈ [0, 1]. Under
    Bradley–Terry, P(y₁ ≻ y₂) = σ(r₁ − r₂) and h = r₁ − r₂; under DPO, h = β(ρ_w − ρ_l).
    Computed as the sum of two non-negative softplus terms, so it neither overflows for large
    |h| nor loses the small tail e^{−|h|} to cancellation; its derivative is σ(h) − p in h and
    −h in p (ℓ is affine in p). No argument checks (it runs inside jitted solvers); the entry
    points built on it (``btl_nll``, ``dpo_loss``, ``fit_dpo_mle``, ``pbpo.ridge_btl_nll``,
    ``robust.pair_loss``, ``metrics.pair_fit_metrics``) check their own inputs.

    Args:
      logits: h, any shape.
      labels: p, broadcastable to ``logits``.
    Returns: ℓ(h; p), the broadcast shape.

    Example:
      >>> round(float(logistic_loss(jnp.array(0.0), jnp.array(0.3))), 6)  # log 2 whatever p is
      0.693147

    References: Bradley & Terry, Biometrika 1952 (the BTL likelihood); Rafailov et al.,
      arXiv 2305.18290, Eq. (7); Kveton et al., arXiv 2503.01076, Eq. (7).
    """
    return labels * jax.nn.softplus(-logits) + (1 - labels) * jax.nn.softplus(logits)


def dpo_loss(
    policy_chosen_logps: Float[ArrayLike, " B"],
    policy_rejected_logps: Float[ArrayLike, " B"],
    ref_chosen_logps: Float[ArrayLike, " B"],
    ref_rejected_logps: Float[ArrayLike, " B"],
    *,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    discopop_tau: float = 0.05,
    chosen_lengths: Real[ArrayLike, " B"] | None = None,
    rejected_lengths: Real[ArrayLike, " B"] | None = None,
    valid: Bool[ArrayLike, " B"] | None = None,
) -> Float[Array, " B"]:
    r"""Per-example DPO-family loss of a chosen-over-rejected pair.

    With the log-ratios ρ_w = log π(y_w) − log π_ref(y_w), ρ_l = log π(y_l) − log π_ref(y_l), the
    margin m = ρ_w − ρ_l, σ the logistic function and ε the label smoothing:

    - ``sigmoid`` (Rafailov et al. 2023, Eq. 7; ε > 0 is the "conservative DPO" mixture):
      −(1 − ε) log σ(βm) − ε log σ(−βm).
    - ``hinge`` (SLiC-HF, Zhao et al. 2023, Eq. 2 with δ = 1/β): max(0, 1 − βm).
    - ``ipo`` (Azar et al. 2023, Eq. 17): (m − 1/(2β))². With ``chosen_lengths`` /
      ``rejected_lengths`` given, ρ_w and ρ_l are divided by the response lengths first
      (TRL's length-normalised IPO; the paper's IPO is unnormalised).
    - ``robust`` (Chowdhury et al. 2024, Eq. 8, unbiased under flips with rate ε < 1/2):
      [(1 − ε)(−log σ(βm)) − ε(−log σ(−βm))] / (1 − 2ε).
    - ``exo_pair`` (Ji et al. 2024, EXO-pref with K = 2): KL(q ‖ p) between q = (σ(βm), σ(−βm))
      and the smoothed label p = (1 − ε, ε); needs ε in (0, 1).
    - ``nca_pair`` (Chen et al. 2024, NCA for pairwise data):
      −log σ(βρ_w) − ½ log σ(−βρ_w) − ½ log σ(−βρ_l).
    - ``sppo_hard`` (Wu et al. 2024, Eq. 4.7 with hard win probabilities 1 / 0 and η = 1/β):
      (ρ_w − 1/(2β))² + (ρ_l + 1/(2β))².
    - ``aot`` (Melnyk et al. 2024, AOT paired): the sigmoid loss (with ε) of
      sort(log π(y_w) − log π(y_l))_i − sort(log π_ref(y_w) − log π_ref(y_l))_i, the sorts taken
      over the batch; ``aot_unpaired``: of sort(ρ_w)_i − sort(ρ_l)_i.
    - ``apo_zero`` (D'Oosterlinck et al. 2024, Eq. 7): 1 − σ(βρ_w) + σ(βρ_l).
    - ``apo_down`` (D'Oosterlinck et al. 2024, Eq. 8): σ(βρ_w) + 1 − σ(βm).
    - ``discopop`` (Lu et al. 2024, DiscoPOP, Eq. 5): with z = βm and w = σ(z/τ),
      (1 − w)(−log σ(z)) + w·e^{−z}.

    Args:
      policy_chosen_logps, policy_rejected_logps: (B,) summed log-probs under the policy.
      ref_chosen_logps, ref_rejected_logps: (B,) summed log-probs under the reference.
      beta: > 0, the KL-regularisation strength.
      loss_type: one of ``LOSS_TYPES``.
      label_smoothing: ε; in [0, 1/2) for ``sigmoid``/``robust``/``aot``/``aot_unpaired``, in
        (0, 1) for ``exo_pair``, 0 for the others.
      discopop_tau: τ > 0 of ``discopop``.
      chosen_lengths, rejected_lengths: (B,) response token counts (length-normalised IPO).
      valid: (B,) rows that are real pairs (``aot`` sorts only these; the others get loss 0).

    Returns:
      (B,) losses; finite with finite gradients for margins up to ±1e4 (``discopop``'s
      exponential branch is weighted by σ(z/τ) and is finite wherever that weight is not 0).

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
      Ji et al., "Towards Efficient Exact Optimization of Language Model Alignment" (EXO),
        arXiv 2402.00856.
      Chen et al., "Noise Contrastive Alignment of Language Models with Explicit Rewards" (NCA),
        arXiv 2402.05369.
      Wu et al., "Self-Play Preference Optimization for Language Model Alignment" (SPPO),
        arXiv 2405.00675, Eq. (4.7).
      Melnyk et al., "Distributional Preference Alignment of LLMs via Optimal Transport" (AOT),
        arXiv 2406.05882.
      D'Oosterlinck et al., "Anchored Preference Optimization and Contrastive Revisions" (APO),
        arXiv 2408.06266, Eqs. (7)-(8).
      Lu et al., "Discovering Preference Optimization Algorithms with and for Large Language
        Models" (DiscoPOP), arXiv 2406.08414, Eq. (5).
    """
    _checks.check_same_shape(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    _check_options(beta, loss_type, label_smoothing, discopop_tau)
    for name, x in (
        ("policy_chosen_logps", policy_chosen_logps),
        ("policy_rejected_logps", policy_rejected_logps),
        ("ref_chosen_logps", ref_chosen_logps),
        ("ref_rejected_logps", ref_rejected_logps),
    ):
        _checks.check_finite(name, x)
    rho_w = policy_chosen_logps - ref_chosen_logps
    rho_l = policy_rejected_logps - ref_rejected_logps
    if (chosen_lengths is None) != (rejected_lengths is None):
        raise ValueError("chosen_lengths, rejected_lengths: give both or neither")
    if chosen_lengths is not None:
        if loss_type != "ipo":
            raise ValueError(
                f"chosen_lengths: length normalisation is for 'ipo', not {loss_type!r}"
            )
        _checks.check_same_shape(policy_chosen_logps=rho_w, chosen_lengths=chosen_lengths)
        _checks.check_same_shape(policy_chosen_logps=rho_w, rejected_lengths=rejected_lengths)
        rho_w = rho_w / jnp.maximum(chosen_lengths, 1)
        rho_l = rho_l / jnp.maximum(rejected_lengths, 1)
    if loss_type in BATCHWISE:
        return _aot(
            policy_chosen_logps,
            policy_rejected_logps,
            ref_chosen_logps,
            ref_rejected_logps,
            rho_w,
            rho_l,
            beta,
            label_smoothing,
            loss_type,
            valid,
        )
    args = (rho_w, rho_l, beta, label_smoothing, discopop_tau)
    return _LOSSES[loss_type](*args)


def _check_options(beta, loss_type, label_smoothing, discopop_tau):
    _checks.check_positive("beta", beta)
    _checks.check_positive("discopop_tau", discopop_tau)
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type: must be one of {', '.join(LOSS_TYPES)}; got {loss_type!r}")
    if loss_type == "exo_pair":
        _checks.check_in_range("label_smoothing", label_smoothing, 0.0, 1.0, closed="neither")
    elif loss_type in SMOOTHED:
        _checks.check_in_range("label_smoothing", label_smoothing, 0.0, 0.5, closed="left")
    elif label_smoothing != 0.0:
        raise ValueError(f"label_smoothing: must be 0 for loss_type={loss_type!r}")


def _smoothed_sigmoid(z, eps):
    return logistic_loss(z, 1 - eps)  # −(1 − ε) log σ(z) − ε log σ(−z)


def _sigmoid(rho_w, rho_l, beta, eps, tau):
    return _smoothed_sigmoid(beta * (rho_w - rho_l), eps)  # Eq. (7)


def _hinge(rho_w, rho_l, beta, eps, tau):
    return jax.nn.relu(1.0 - beta * (rho_w - rho_l))


def _ipo(rho_w, rho_l, beta, eps, tau):
    return (rho_w - rho_l - 1.0 / (2.0 * beta)) ** 2  # Eq. (17), IPO


def _robust(rho_w, rho_l, beta, eps, tau):
    z = beta * (rho_w - rho_l)
    pos, neg = -jax.nn.log_sigmoid(z), -jax.nn.log_sigmoid(-z)
    return ((1 - eps) * pos - eps * neg) / (1 - 2 * eps)  # Eq. (8), rDPO


def _exo_pair(rho_w, rho_l, beta, eps, tau):
    z = beta * (rho_w - rho_l)
    log_qw, log_ql = jax.nn.log_sigmoid(z), jax.nn.log_sigmoid(-z)
    kl_w = jnp.exp(log_qw) * (log_qw - jnp.log1p(-eps))  # KL(q ‖ (1 − ε, ε)), EXO-pref, K = 2
    return kl_w + jnp.exp(log_ql) * (log_ql - jnp.log(eps))


def _nca_pair(rho_w, rho_l, beta, eps, tau):
    r_w, r_l = beta * rho_w, beta * rho_l
    return (
        -jax.nn.log_sigmoid(r_w) - 0.5 * jax.nn.log_sigmoid(-r_w) - 0.5 * jax.nn.log_sigmoid(-r_l)
    )


def _sppo_hard(rho_w, rho_l, beta, eps, tau):
    half = 0.5 / beta  # η (P − 1/2) with η = 1/β and P = 1 (winner) or 0 (loser), Eq. (4.7)
    return (rho_w - half) ** 2 + (rho_l + half) ** 2


def _apo_zero(rho_w, rho_l, beta, eps, tau):
    return 1 - jax.nn.sigmoid(beta * rho_w) + jax.nn.sigmoid(beta * rho_l)  # APO Eq. (7)


def _apo_down(rho_w, rho_l, beta, eps, tau):
    return jax.nn.sigmoid(beta * rho_w) + 1 - jax.nn.sigmoid(beta * (rho_w - rho_l))  # Eq. (8)


def _discopop(rho_w, rho_l, beta, eps, tau):
    z = beta * (rho_w - rho_l)
    w = jax.nn.sigmoid(z / tau)  # DiscoPOP Eq. (5): log-ratio modulated blend
    exp_part = jnp.exp(-jnp.where(w > 0, z, 0.0))  # e^{-z}; zero weight where it would overflow
    return (1 - w) * -jax.nn.log_sigmoid(z) + w * exp_part


def _aot(pc, pr, rc, rr, rho_w, rho_l, beta, eps, loss_type, valid):
    if loss_type == "aot":
        a, b = pc - pr, rc - rr
    else:
        a, b = rho_w, rho_l
    if valid is not None:
        _checks.check_same_shape(policy_chosen_logps=pc, valid=valid)
        big = jnp.asarray(jnp.finfo(a.dtype).max / 4, a.dtype)  # padding sorts last, on both
        a, b = jnp.where(valid, a, big), jnp.where(valid, b, big)
    delta = jnp.sort(a) - jnp.sort(b)  # quantile matching (AOT)
    loss = _smoothed_sigmoid(beta * delta, eps)
    return loss if valid is None else jnp.where(valid, loss, 0.0)


_LOSSES = {
    "sigmoid": _sigmoid,
    "hinge": _hinge,
    "ipo": _ipo,
    "robust": _robust,
    "exo_pair": _exo_pair,
    "nca_pair": _nca_pair,
    "sppo_hard": _sppo_hard,
    "apo_zero": _apo_zero,
    "apo_down": _apo_down,
    "discopop": _discopop,
}


def btl_nll(
    rewards_1: Float[ArrayLike, " B"],
    rewards_2: Float[ArrayLike, " B"],
    labels: Float[ArrayLike, " B"] | None = None,
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
        return logistic_loss(delta, 1.0)
    _checks.check_same_shape(rewards_1=rewards_1, labels=labels)
    _checks.check_finite("labels", labels)
    _checks.check_in_range("labels", labels, 0.0, 1.0)
    return logistic_loss(delta, labels)


def plackett_luce_nll(
    scores: Float[ArrayLike, "... K"], ranking: Int[ArrayLike, "... K"] | None = None
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
        xp = _checks.array_namespace(ranking)
        ranks = xp.broadcast_to(xp.arange(shape[-1]), shape)
        not_perm = xp.any(xp.sort(xp.asarray(ranking), axis=-1) != ranks)
        _checks.check_condition("ranking", not_perm, "each row must be a permutation of 0..K-1")
        scores = jnp.take_along_axis(scores, ranking, axis=-1)
    # log Σ_{j≥k} exp(s_j): reverse cumulative logsumexp.
    tail_lse = jnp.flip(jax.lax.cumlogsumexp(jnp.flip(scores, -1), axis=scores.ndim - 1), -1)
    return jnp.sum(tail_lse - scores, axis=-1)

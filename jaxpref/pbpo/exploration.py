"""Exploration rules of PbPO: the reward-agnostic enhancer and a reward-aware optimistic rule.

Responses of one context are given by their trajectory features phi (Y, d); a reference policy
by its probabilities over the same Y responses.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from jaxpref import _checks, linalg
from jaxpref.pbpo import confidence


def _check_responses(gram, phi, ref_probs):
    (y, d) = _checks.check_ndim("phi", phi, 2)
    linalg.check_psd("gram", gram)
    if _checks.shape_of("gram", gram) != (d, d):
        raise ValueError(f"gram: expected shape ({d}, {d}) to match phi, got {jnp.shape(gram)}")
    if _checks.shape_of("ref_probs", ref_probs) != (y,):
        raise ValueError(
            f"ref_probs: expected shape ({y},) to match phi, got {jnp.shape(ref_probs)}"
        )
    _checks.check_finite("phi", phi)
    _checks.check_nonnegative("ref_probs", ref_probs)


def enhancer_scores_unchecked(gram, phi, ref_probs):
    """`enhancer_scores` without argument checks (for use inside jit/scan)."""
    diff = phi[:, None, :] - phi[None, :, :]  # (Y0, Y1, d): φ(τ⁰) − φ(τ¹)
    return ref_probs @ linalg.mahalanobis_sq(gram, diff)  # Eq. (enhancer)


def enhancer_scores(
    gram: Float[ArrayLike, "d d"], phi: Float[ArrayLike, "Y d"], ref_probs: Float[ArrayLike, " Y"]
) -> Float[Array, " Y"]:
    """Reward-agnostic exploration score of each response y as τ¹ against τ⁰ ~ π_ref:

    s(y) = E_{τ⁰ ~ π_ref} ‖φ(τ⁰) − φ(y)‖²_{Σ_k⁻¹};  the enhancer π̂_k puts its mass on argmax_y s(y)
    (a linear objective in π̂, so a deterministic maximiser exists).

    Args:
      gram: (d, d) Σ_k.  phi: (Y, d) response features.  ref_probs: (Y,) π_ref(·|x).

    Returns:
      (Y,) scores.

    References: Zhan et al., "Provable reward-agnostic preference-based RL", arXiv 2305.18505,
      Alg. 1 (exploration policy); Jia, arXiv 2511.12867, π̂_k in Fig. 1 / Alg. 1 [summary].
    """
    _check_responses(gram, phi, ref_probs)
    return enhancer_scores_unchecked(gram, jnp.asarray(phi), jnp.asarray(ref_probs))


def optimistic_scores_unchecked(theta_hat, gram, radius, phi, ref_probs):
    """`optimistic_scores` without argument checks (for use inside jit/scan)."""
    delta = phi - (ref_probs @ phi)[None, :]  # φ(y) − E_{π_ref} φ
    # Eq. (reward-aware)
    return confidence.optimistic_value_unchecked(theta_hat, gram, radius, delta)


def optimistic_scores(theta_hat, gram, radius, phi, ref_probs) -> Float[Array, " Y"]:
    """Reward-aware exploration score: max_{θ ∈ C_k} ⟨θ, φ(y) − E_{π_ref} φ⟩ (optimism in C_k).

    = ⟨θ̂, φ(y) − φ̄_ref⟩ + β ‖φ(y) − φ̄_ref‖_{Σ⁻¹}. **[Reconstruction]** of PbPO's reward-aware
    exploration as the optimistic index of logistic/dueling bandits.

    References: Faury et al., arXiv 2002.07530, Eq. (8); Saha (2021), MaxInP/CoLSTIM optimism.
    """
    _check_responses(gram, phi, ref_probs)
    _checks.check_nonnegative("radius", radius)
    return optimistic_scores_unchecked(
        theta_hat, gram, radius, jnp.asarray(phi), jnp.asarray(ref_probs)
    )


__all__ = [
    "enhancer_scores",
    "enhancer_scores_unchecked",
    "optimistic_scores",
    "optimistic_scores_unchecked",
]

"""Linear reward models and the Bradley–Terry–Luce (BTL) likelihood of PbPO.

Sequence level r_θ(τ) = ⟨θ, φ(τ)⟩; token level r_θ(τ) = Σ_{h≤H} ⟨θ, φ(s_h, a_h)⟩, which is the
sequence-level model with trajectory feature φ(τ) = Σ_h φ(s_h, a_h). A preference pair is
represented by Δφ = φ(τ¹) − φ(τ⁰) and a label o = 1{τ¹ ≻ τ⁰}, with P(o = 1) = σ(⟨θ, Δφ⟩).

The regularised BTL maximum-likelihood fits here (`fit_btl_mle`, `btl_newton`) are
``jaxpref.losses``' ridge logistic MLE with β = 1 and b = 0: one Newton solver for both.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from jaxpref import _checks
from jaxpref.losses.mle import dpo_hessian, dpo_mle_newton, fit_dpo_mle
from jaxpref.losses.preference import logistic_loss


def sequence_reward(
    theta: Float[ArrayLike, " d"], phi: Float[ArrayLike, "... d"]
) -> Float[Array, "..."]:
    """Sequence-level linear reward r_θ(τ) = ⟨θ, φ(τ)⟩.

    Args:
      theta: (d,) reward parameter.
      phi: (..., d) trajectory features φ(τ).

    Returns:
      (...,) rewards.

    Example:
      >>> sequence_reward(jnp.array([1.0, 2.0]), jnp.array([[1.0, 1.0]])).tolist()
      [3.0]

    References: Jia, arXiv 2511.12867, sequence-level reward model (Assumption 1) [summary].
    """
    return phi @ theta  # r_θ(τ) = ⟨θ, φ(τ)⟩


def trajectory_features(phi_tokens: Float[ArrayLike, "... H d"]) -> Float[Array, "... d"]:
    """φ(τ) = Σ_{h=1}^H φ(s_h, a_h): the token-level model as a sequence-level one.

    References: Jia, arXiv 2511.12867, token-level reward model (Theorems 3-4) [summary].
    """
    return jnp.sum(phi_tokens, axis=-2)  # φ(τ) = Σ_h φ(s_h, a_h)


def token_reward(
    theta: Float[ArrayLike, " d"], phi_tokens: Float[ArrayLike, "... H d"]
) -> Float[Array, "..."]:
    """Token-level linear reward r_θ(τ) = Σ_{h=1}^H ⟨θ, φ(s_h, a_h)⟩.

    Args:
      theta: (d,) reward parameter.
      phi_tokens: (..., H, d) per-step features φ(s_h, a_h).

    Returns:
      (...,) trajectory rewards (= ⟨θ, trajectory_features(phi_tokens)⟩).

    References: Jia, arXiv 2511.12867, token-level reward model (Theorems 3-4) [summary].
    """
    return jnp.sum(phi_tokens @ theta, axis=-1)  # r_θ(τ) = Σ_h ⟨θ, φ(s_h, a_h)⟩


def btl_prob(
    theta: Float[ArrayLike, " d"], delta_phi: Float[ArrayLike, "... d"]
) -> Float[Array, "..."]:
    """BTL preference probability P(τ¹ ≻ τ⁰) = σ(⟨θ, φ(τ¹) − φ(τ⁰)⟩).

    References: Bradley & Terry (1952); Jia, arXiv 2511.12867 (BTL oracle) [summary].
    """
    return jax.nn.sigmoid(delta_phi @ theta)  # σ(⟨θ, Δφ⟩)


def ridge_btl_nll(theta, delta_phi, labels, lam, weights=None) -> Float[Array, ""]:
    """Ridge-regularised BTL negative log-likelihood (the objective of θ̂_k).

    ℓ_λ(θ) = −Σ_j w_j [o_j log σ(z_j) + (1 − o_j) log σ(−z_j)] + (λ/2)‖θ‖²,  z_j = ⟨θ, Δφ_j⟩.

    Args:
      theta: (d,); delta_phi: (N, d); labels: (N,) in {0, 1}; lam: λ ≥ 0;
      weights: (N,) optional (0 masks a pair out).

    Returns:
      () scalar.

    References: Zhu, Jordan & Jiao, "Principled RLHF from pairwise or K-wise comparisons",
      arXiv 2301.11270, Eq. (2) (MLE), with a ridge term as in Faury et al. arXiv 2002.07530.
    """
    z = delta_phi @ theta
    w = jnp.ones_like(z) if weights is None else weights
    return jnp.sum(w * logistic_loss(z, labels)) + 0.5 * lam * jnp.dot(theta, theta)  # ℓ_λ(θ)


def btl_hessian(theta, delta_phi, lam, weights=None) -> Float[Array, "d d"]:
    """∇²ℓ_λ(θ) = Σ_j w_j σ'(z_j) Δφ_j Δφ_jᵀ + λI (positive definite for λ > 0): ADPO's
    Lemma 1 Hessian with β = 1 and b = 0, plus the ridge."""
    d = delta_phi.shape[-1]
    return dpo_hessian(theta, delta_phi, weights=weights) + lam * jnp.eye(d, dtype=delta_phi.dtype)


def btl_newton(theta0, delta_phi, labels, lam, weights=None, num_steps: int = 25):
    """θ̂ = argmin ℓ_λ by at most ``num_steps`` full Newton steps from ``theta0`` (jittable; no
    argument checks): ``losses.mle.dpo_mle_newton`` with β = 1, b = 0, γ = λ, warm-started and
    undamped, stopping early once the Newton decrement reaches working precision. Each PbPO
    update adds one pair to a fit already at its optimum, where the full step is accepted
    anyway; the backtracking loop would cost 2.4x the update time under ``vmap`` (CPU time,
    loaded machine, 2026-12-01). For a one-off checked fit use :func:`fit_btl_mle` (damped)."""
    w = jnp.ones_like(labels) if weights is None else weights
    b = jnp.zeros_like(labels)
    return dpo_mle_newton(delta_phi, labels, b, w, 1.0, lam, num_steps, theta0, damped=False).theta


def fit_btl_mle(delta_phi, labels, *, lam=1.0, weights=None, max_iters: int = 50):
    """Regularised BTL maximum likelihood θ̂ = argmin_θ ℓ_λ(θ).

    ℓ_λ is ADPO's log-linear DPO loss with β = 1 and b = 0 (ridge logistic regression on
    feature differences), so this is :func:`jaxpref.losses.fit_dpo_mle` with γ = λ (damped
    Newton run to machine precision).

    Args:
      delta_phi: (N, d) feature differences φ(τ¹) − φ(τ⁰).
      labels: (N,) in {0, 1}, 1 when τ¹ is preferred.
      lam: ridge λ > 0.
      weights: optional (N,) non-negative pair weights.
      max_iters: Newton iteration cap.

    Returns:
      (theta_hat (d,), hessian (d, d) = ∇²ℓ_λ(θ̂)).

    References: Zhu, Jordan & Jiao, arXiv 2301.11270, Eq. (2); Faury et al., "Improved
      optimistic algorithms for logistic bandits", arXiv 2002.07530, Eq. (6) (regularised MLE).
    """
    (n, d) = _checks.check_ndim("delta_phi", delta_phi, 2)
    if _checks.check_ndim("labels", labels, 1) != (n,):
        raise ValueError(f"labels: expected shape ({n},) to match delta_phi, got {labels.shape}")
    _checks.check_finite("delta_phi", delta_phi)
    _checks.check_binary("labels", labels)
    _checks.check_positive("lam", lam)
    fit = fit_dpo_mle(delta_phi, labels, gamma=lam, weights=weights, max_iters=max_iters)
    return fit.theta, fit.hessian + lam * jnp.eye(d, dtype=fit.theta.dtype)


__all__ = [
    "btl_hessian",
    "btl_newton",
    "ridge_btl_nll",
    "btl_prob",
    "fit_btl_mle",
    "sequence_reward",
    "token_reward",
    "trajectory_features",
]

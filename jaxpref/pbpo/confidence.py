"""Confidence sets for linear BTL reward models: the MLE ellipsoid and the likelihood-ratio set.

C_k = {θ : ‖θ − θ̂_k‖_{Σ_k} ≤ β_k(δ)},  Σ_k = λI + Σ_{j≤k} Δφ_j Δφ_jᵀ, and the pessimistic and
optimistic values of a linear functional over it in closed form. See `theory/pbpo.md` §2–3.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxpref import _checks, linalg
from jaxpref.pbpo import reward


class ConfidenceState(NamedTuple):
    """The data and statistics behind C_k (a fixed-capacity buffer so that it scans)."""

    delta_phi: Array  # (N, d) Δφ_j = φ(τ_j¹) − φ(τ_j⁰), rows ≥ count are zero
    labels: Array  # (N,)   o_j ∈ {0, 1}
    weights: Array  # (N,)   1 for stored pairs, 0 for empty slots
    count: Array  # ()     k, the number of stored pairs
    gram: Array  # (d, d) Σ_k = λI + Σ_j Δφ_j Δφ_jᵀ
    theta_hat: Array  # (d,)   regularised BTL MLE θ̂_k
    lam: Array  # ()     ridge λ


def kappa_btl(bound_theta, bound_delta_phi):
    """κ = sup_{|z| ≤ B·L} 1/σ'(z) = 2 + e^{BL} + e^{−BL} for ‖θ‖ ≤ B, ‖Δφ‖ ≤ L.

    References: Faury et al., "Improved optimistic algorithms for logistic bandits",
      arXiv 2002.07530, Assumption 2 (κ); Zhu, Jordan & Jiao, arXiv 2301.11270, γ = 1/κ.
    """
    z = bound_theta * bound_delta_phi
    return 2.0 + jnp.exp(z) + jnp.exp(-z)  # 1/σ'(BL)


RADII = {"certified": None, "local": 4.0, "heuristic": 1.0}
"""Named choices of κ in β_k(δ):

certified: κ = `kappa_btl(B, L)` = 1/min σ′ over |z| ≤ BL — the radius of §3, covers θ* w.p.
  ≥ 1 − δ (the default everywhere).
local: κ = 4 = 1/max σ′ (σ′ ≤ 1/4): the smallest κ a bound of this form can have, exact when
  the logits between θ̂ and θ* are near 0; not a certificate (measured coverage 100 % in the
  setting of `tests/test_pbpo_confidence.py`, B = 1 and B = 4).
heuristic: κ = 1, which drops the σ′ ≤ 1/4 factor: measured coverage 57–66 % against a nominal
  80–95 % (same tests); kept only to reproduce earlier runs."""


def radius_kappa(radius: str, bound_theta=1.0, bound_delta_phi=1.0):
    """κ of the named radius (``RADII``): `kappa_btl(B, L)` for "certified", else the constant."""
    if radius not in RADII:
        raise ValueError(f"radius: must be one of {tuple(RADII)}, got {radius!r}")
    k = RADII[radius]
    return kappa_btl(bound_theta, bound_delta_phi) if k is None else k


def radius_unchecked(delta, d, k, lam, bound_theta, bound_delta_phi, kappa):
    info = d * jnp.log1p(k * bound_delta_phi**2 / (d * lam))  # ≥ log det Σ_k − d log λ
    noise = 0.5 * jnp.sqrt(2.0 * jnp.log(1.0 / delta) + info)  # σ = 1/2 sub-Gaussian labels
    return kappa * (noise + jnp.sqrt(lam) * bound_theta)  # Eq. (β_k)


def ellipsoid_radius(delta, *, d, k, lam, bound_theta, bound_delta_phi, kappa=None):
    """Radius β_k(δ) of the MLE confidence ellipsoid C_k (holds for all k w.p. ≥ 1 − δ).

    β_k(δ) = κ ( ½ √(2 log(1/δ) + d log(1 + k L² / (d λ))) + √λ B ),

    with B ≥ ‖θ*‖, L ≥ ‖Δφ‖ and κ = `kappa_btl(B, L)` unless given. **[Reconstruction]**: the
    PbPO text is unavailable; this is the self-normalised (Abbasi-Yadkori et al. 2011, Thm 1)
    bound for the regularised MLE of Faury et al. (2020) with Bernoulli noise (σ = ½).

    Args:
      delta: confidence level δ ∈ (0, 1).
      d: dimension; k: number of pairs (≥ 0); lam: λ > 0; bound_theta: B > 0;
      bound_delta_phi: L > 0; kappa: optional κ ≥ 1.

    Returns:
      () radius (float; jittable in k and δ).

    References: Faury et al., arXiv 2002.07530, Thm 1 / Lemma 8; Zhu, Jordan & Jiao,
      arXiv 2301.11270, Lemma 3.1; Abbasi-Yadkori, Pál & Szepesvári (2011), Thm 1.
    """
    _checks.check_in_range("delta", delta, 0.0, 1.0, closed="neither")
    _checks.check_int_in("d", d, 1, 10**9)
    _checks.check_nonnegative("k", k)
    for name, v in (
        ("lam", lam),
        ("bound_theta", bound_theta),
        ("bound_delta_phi", bound_delta_phi),
    ):
        _checks.check_positive(name, v)
    if kappa is None:
        kappa = kappa_btl(bound_theta, bound_delta_phi)
    _checks.check_in_range("kappa", kappa, 1.0, np.inf)
    return radius_unchecked(delta, d, k, lam, bound_theta, bound_delta_phi, kappa)


def likelihood_ratio_threshold(radius):
    """ζ = β²/2: the likelihood-ratio set {ℓ_λ(θ) − ℓ_λ(θ̂) ≤ ζ} contains θ* whenever C_k does.

    Because ∇²ℓ_λ ⪯ Σ_k (σ' ≤ 1/4 < 1), ℓ_λ(θ) − ℓ_λ(θ̂) ≤ ½‖θ − θ̂‖²_{Σ_k}. **[Reconstruction]**.

    References: Zhan et al., "Provable offline preference-based RL", arXiv 2305.14816, Eq. (3)
      (likelihood-ratio confidence set).
    """
    _checks.check_nonnegative("radius", radius)
    return 0.5 * radius**2  # ζ = β²/2


def gram_matrix(delta_phi: Float[ArrayLike, "N d"], lam, weights=None) -> Float[Array, "d d"]:
    """Σ = λI + Σ_j w_j Δφ_j Δφ_jᵀ (the design/Gram matrix of the comparisons).

    References: Zhan et al., "Provable reward-agnostic preference-based RL", arXiv 2305.18505,
      Σ̂ in the exploration objective; Jia, arXiv 2511.12867, Σ̂_k [summary].
    """
    _checks.check_ndim("delta_phi", delta_phi, 2)
    _checks.check_finite("delta_phi", delta_phi)
    _checks.check_positive("lam", lam)
    return linalg.ridge_gram(jnp.asarray(delta_phi), lam, weights)  # λI + Σ ΔφΔφᵀ


def _check_set(theta_hat, gram, radius, vec, vec_name):
    (d,) = _checks.check_ndim("theta_hat", theta_hat, 1)
    linalg.check_psd("gram", gram)
    if np.shape(gram) != (d, d):
        raise ValueError(
            f"gram: expected shape ({d}, {d}) to match theta_hat, got {np.shape(gram)}"
        )
    shape = _checks.shape_of(vec_name, vec)
    if len(shape) < 1 or shape[-1] != d:
        raise ValueError(f"{vec_name}: last axis must have size d={d}, got shape {shape}")
    _checks.check_finite("theta_hat", theta_hat)
    _checks.check_finite(vec_name, vec)
    _checks.check_nonnegative("radius", radius)


def width_unchecked(gram, delta_phi):
    """‖Δφ‖_{Σ⁻¹}, with gradient 0 (a subgradient) instead of NaN at Δφ = 0."""
    q = linalg.mahalanobis_sq(gram, delta_phi)
    positive = q > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, q, 1.0)), 0.0)  # ‖Δφ‖_{Σ⁻¹}


@jax.jit
def pessimistic_value_unchecked(theta_hat, gram, radius, delta_phi):
    return delta_phi @ theta_hat - radius * width_unchecked(gram, delta_phi)


@jax.jit
def optimistic_value_unchecked(theta_hat, gram, radius, delta_phi):
    return delta_phi @ theta_hat + radius * width_unchecked(gram, delta_phi)


def pessimistic_value(theta_hat, gram, radius, delta_phi):
    """min_{θ ∈ C} ⟨θ, Δφ⟩ = ⟨θ̂, Δφ⟩ − β ‖Δφ‖_{Σ⁻¹} over C = {‖θ − θ̂‖_Σ ≤ β}.

    (Cauchy–Schwarz in the Σ inner product; the minimiser is θ̂ − β Σ⁻¹Δφ/‖Δφ‖_{Σ⁻¹}.)

    Args:
      theta_hat: (d,) centre θ̂.  gram: (d, d) positive-definite Σ.  radius: β ≥ 0.
      delta_phi: (..., d) directions Δφ (e.g. E_π φ − E_{π_ref} φ).

    Returns:
      (...,) pessimistic values.

    Example:
      >>> float(pessimistic_value(jnp.zeros(2), jnp.eye(2), 1.0, jnp.array([3.0, 4.0])))
      -5.0

    References: Zhan et al., arXiv 2305.14816, Eq. (4) (pessimistic policy objective);
      Jia, arXiv 2511.12867, min-max step [summary].
    """
    _check_set(theta_hat, gram, radius, delta_phi, "delta_phi")
    return pessimistic_value_unchecked(theta_hat, gram, radius, delta_phi)  # Eq. (pess)


def optimistic_value(theta_hat, gram, radius, delta_phi):
    """max_{θ ∈ C} ⟨θ, Δφ⟩ = ⟨θ̂, Δφ⟩ + β ‖Δφ‖_{Σ⁻¹} (see `pessimistic_value`).

    References: Faury et al., arXiv 2002.07530, Eq. (8) (optimistic index); Saha, "Optimal
      algorithms for stochastic contextual preference bandits", NeurIPS 2021.
    """
    _check_set(theta_hat, gram, radius, delta_phi, "delta_phi")
    return optimistic_value_unchecked(theta_hat, gram, radius, delta_phi)  # Eq. (opt)


def in_confidence_set(theta, theta_hat, gram, radius):
    """1{‖θ − θ̂‖_Σ ≤ β} (no inverse: ‖x‖²_Σ = xᵀΣx). Batched over leading axes of theta."""
    _check_set(theta_hat, gram, radius, theta, "theta")
    theta = jnp.asarray(theta)
    diff = theta - jnp.broadcast_to(theta_hat, theta.shape)
    return linalg.quad_form(gram, diff) <= radius**2  # θ ∈ C_k


def confidence_init(capacity: int, d: int, lam, dtype=jnp.float32) -> ConfidenceState:
    """Empty C_0: Σ_0 = λI, θ̂_0 = 0, room for ``capacity`` pairs."""
    _checks.check_int_in("capacity", capacity, 1, 10**8)
    _checks.check_int_in("d", d, 1, 10**6)
    _checks.check_positive("lam", lam)
    z = jnp.zeros((capacity,), dtype)
    return ConfidenceState(
        jnp.zeros((capacity, d), dtype),
        z,
        z,
        jnp.zeros((), jnp.int32),
        lam * jnp.eye(d, dtype=dtype),
        jnp.zeros((d,), dtype),
        jnp.asarray(lam, dtype),
    )


def confidence_update(state: ConfidenceState, delta_phi, label, num_newton: int = 3):
    """Add one labelled pair: Σ_{k+1} = Σ_k + ΔφΔφᵀ, θ̂_{k+1} by warm-started Newton.

    Jittable and scannable (``num_newton`` static). A full buffer is refused by the value-check
    convention of :mod:`jaxpref._checks` (at once for a host count, in the graph under
    ``jit``/``scan``); the returned state then keeps the old Σ, θ̂ and count (also with the
    checks off), so Σ always agrees with the stored data.
    """
    k = state.count
    capacity = state.delta_phi.shape[0]
    full = _checks.array_namespace(k).asarray(k) >= capacity
    _checks.check_condition(
        "state", full, f"the buffer is full (capacity {capacity}); nothing was added"
    )
    dp = jnp.asarray(delta_phi, state.gram.dtype)
    X = state.delta_phi.at[k].set(dp)
    o = state.labels.at[k].set(jnp.asarray(label, state.labels.dtype))
    w = state.weights.at[k].set(1.0)
    gram = linalg.symmetrize(state.gram + jnp.outer(dp, dp))  # Σ_{k+1}
    theta = reward.btl_newton(state.theta_hat, X, o, state.lam, w, num_newton)
    new = ConfidenceState(X, o, w, k + 1, gram, theta, state.lam)
    room = k < capacity  # traced case: a full buffer keeps the old state
    return jax.tree.map(lambda a, b: jnp.where(room, a, b), new, state)


__all__ = [
    "RADII",
    "ConfidenceState",
    "confidence_init",
    "confidence_update",
    "ellipsoid_radius",
    "gram_matrix",
    "in_confidence_set",
    "kappa_btl",
    "likelihood_ratio_threshold",
    "optimistic_value",
    "pessimistic_value",
    "radius_kappa",
]

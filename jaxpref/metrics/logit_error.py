"""Logit-error metrics of log-linear DPO and the explicit bound of ADPO's Theorems 3 × 4."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxpref import _checks


class LogitErrors(NamedTuple):
    max: Array  # ()  E(θ̂, θ*) = max_i |β φ_iᵀ(θ̂ − θ*)|
    mean: Array  # ()  mean_i |β φ_iᵀ(θ̂ − θ*)|
    error_rate: Array  # ()  fraction of pairs with sign(φ_iᵀθ̂ − b_i) ≠ sign(φ_iᵀθ* − b_i)


def logit_errors(
    theta_hat: Float[ArrayLike, " d"],
    theta_star: Float[ArrayLike, " d"],
    phi_diff: Float[ArrayLike, "N d"],
    ref_logratio: Float[ArrayLike, " N"],
    *,
    beta=1.0,
) -> LogitErrors:
    r"""Maximum and mean logit error and the error rate over all N pairs.

    E(θ, θ*) = max_i |β log(π(y_i1|x_i;θ)/π(y_i2|x_i;θ)) − β log(π(y_i1|x_i;θ*)/π(y_i2|x_i;θ*))|
             = max_i |β φ_iᵀ(θ − θ*)|                         (log-linear; the biases b_i cancel)

    max_i |μ_i(θ) − μ_i(θ*)| ≤ E/4, so E bounds the error of every preference probability.

    References: Kveton et al., "Active Learning for Direct Preference Optimization",
      arXiv 2503.01076, §3 (Eq. 8, maximum logit error) and §6.1 (error rate).
    """
    diff = beta * (phi_diff @ (theta_hat - theta_star))  # Eq. (8)
    flip = jnp.sign(phi_diff @ theta_hat - ref_logratio) != jnp.sign(
        phi_diff @ theta_star - ref_logratio
    )
    return LogitErrors(
        jnp.max(jnp.abs(diff)), jnp.mean(jnp.abs(diff)), jnp.mean(flip.astype(diff.dtype))
    )


def design_constants(beta) -> tuple[float, float]:
    r"""(c_min, c_max) of Assumption 3: c_min ≤ β² μ(h)(1 − μ(h)) ≤ c_max for |h| ≤ 2β.

    c_max = β²/4. Under Assumption 2 (‖φ_i‖ ≤ 1, |b_i| ≤ 1, ‖θ‖ ≤ 1) the logit argument lies in
    [−2β, 2β], and μ(1 − μ) is smallest at its ends: c_min = β² σ(2β) σ(−2β).

    Correction: the paper states c_min = β² μ(−4β) via μ(1 − μ) ≥ μ² ≥ μ(−4β). The second step
    fails (β = 1: μ(−2)² ≈ 0.0142 < μ(−4) ≈ 0.0180), and for β below β₀ ≈ 0.3047 (the root of
    μ(−4β) = σ(2β)σ(−2β)) the stated value exceeds the true minimum (β = 0.1: μ(−0.4) ≈ 0.401 >
    σ(0.2)σ(−0.2) ≈ 0.248), so it is not a lower bound there. We use the exact minimum.

    References: Kveton et al., arXiv 2503.01076, Assumption 3 (corrected; see theory/adpo.md).
    """
    _checks.check_positive("beta", beta)
    beta = float(beta)
    sig = jax.nn.sigmoid
    c_min = beta**2 * float(sig(2 * beta)) * float(sig(-2 * beta))
    return c_min, beta**2 / 4


def _check_budget(n, d, gamma, kappa) -> np.ndarray:
    n = np.asarray(n, dtype=np.float64)
    if not np.all(np.isfinite(n)) or np.any(n < 1):
        raise ValueError(f"n: budgets must be finite and >= 1, got {n}")
    _checks.check_int_in("d", d, 1, 10**9)
    _checks.check_positive("gamma", gamma)
    _checks.check_in_range("kappa", kappa, 1.0, np.inf, closed="left")
    return n


def design_bound(n, d: int, *, beta=1.0, gamma=1.0, kappa=1.0) -> np.ndarray | np.float64:
    r"""Theorem 4 (re-derived): max_i φ_iᵀΣ_n⁻¹φ_i after n greedy D-optimal picks (NumPy, float64).

      φ_iᵀ Σ_n⁻¹ φ_i ≤ c_max² κ d log(1 + c_max n/(γd)) / (c_min² γ log(1 + c_max/γ) n)

    for every pair i of the pool, with Σ_n = γI + Σ_{t≤n} β²μ_t(θ*)(1 − μ_t(θ*)) φ_tφ_tᵀ and
    (c_min, c_max) = ``design_constants(beta)``. Derivation (``theory/adpo.md`` §5): the design
    matrix is H_n = γI + Σ_t v_tv_tᵀ, v_t = √w_t φ_t with plug-in weights w_t ∈ [c_min, c_max]
    (Assumptions 2–3 at θ̂ and at θ*), so Σ_n ⪰ (c_min/c_max) H_n; φ_iᵀH_n⁻¹φ_i ≤ v_iᵀH_n⁻¹v_i/c_min;
    v_iᵀH_n⁻¹v_i ≤ v_iᵀH_{t−1}⁻¹v_i ≤ κ x_t with x_t = v_{I_t}ᵀH_{t−1}⁻¹v_{I_t} (Assumption 4),
    averaged over t; and the elliptical potential lemma, x ≤ (c_max/γ) log(1 + x)/log(1 + c_max/γ)
    for x ≤ c_max/γ and Σ_t log(1 + x_t) = log det H_n/γ^d ≤ d log(1 + c_max n/(γd)).

    **Correction**: the paper states c_max³ … /(c_min γ …), which is of degree +1 in
    (c_min, c_max, γ) where Σ_n⁻¹ is of degree −1, and fails on real instances (n = d = 1, φ = 1,
    β = 1, γ = 0.1: stated 1.49, actual ≥ 1/(γ + c_max) = 2.86).

    Args:
      n: budget(s), any shape, ≥ 1.  d: feature dimension.
      beta, gamma: > 0.  kappa: ≥ 1, Assumption 4 (e.g. ``DOptimalResult.kappa``).

    Returns: the bound for each n (same shape as n).

    Example:
      >>> round(float(design_bound(1, 1, beta=1.0, gamma=0.1)), 2)
      56.7

    References: Kveton et al., arXiv 2503.01076, Theorem 4 and Assumptions 2–4 (corrected);
      Abbasi-Yadkori, Pál & Szepesvári (2011), Lemma 11 (elliptical potential).
    """
    n = _check_budget(n, d, gamma, kappa)
    c_min, c_max = design_constants(beta)
    return (
        c_max**2
        * kappa
        * d
        * np.log1p(c_max * n / (gamma * d))
        / (c_min**2 * gamma * np.log1p(c_max / gamma) * n)
    )  # Thm 4 (corrected)


def logit_error_bound(
    n, d: int, *, beta=1.0, gamma=1.0, delta=0.05, kappa=1.0
) -> np.ndarray | np.float64:
    r"""The explicit high-probability bound on E(θ̂_n, θ*) from Theorems 3 and 4 (NumPy, float64).

    E ≤ β max_i ‖φ_i‖_{Σ_n⁻¹} ‖θ̂_n − θ*‖_{Σ_n}, with (Σ_n = γI + ∇²L(θ*; S_n))

      Thm 3:  ‖θ̂_n − θ*‖_{Σ_n} ≤ √((β² d / c_min) log((1 + c_min n/γ)/δ)) + 2√γ
      Thm 4:  φ_iᵀ Σ_n⁻¹ φ_i ≤ ``design_bound(n, d, beta=β, gamma=γ, kappa=κ)``  (re-derived)

    with c_min = β²σ(2β)σ(−2β) (corrected) and c_max = β²/4. The factor β in front is the logit
    scale of E; the paper states Theorem 2 at β = 1 where it is invisible. Valid under
    Assumptions 2–4 (‖φ_i‖ ≤ 1, |b_i| ≤ 1, θ̂ and θ* in the unit ball).

    Args:
      n: budget(s), any shape, ≥ 1.
      d: feature dimension.
      beta, gamma: > 0. delta: failure probability in (0, 1). kappa: ≥ 1, Assumption 4.

    Returns: the bound for each n (same shape as n).

    References: Kveton et al., arXiv 2503.01076, Theorems 2, 3 and 4 (Theorem 4 corrected).
    """
    n = _check_budget(n, d, gamma, kappa)
    _checks.check_in_range("delta", delta, 0.0, 1.0, closed="neither")
    c_min, _ = design_constants(beta)
    thm3 = np.sqrt(beta**2 * d / c_min * np.log((1 + c_min * n / gamma) / delta)) + 2 * np.sqrt(
        gamma
    )
    thm4 = design_bound(n, d, beta=beta, gamma=gamma, kappa=kappa)
    return beta * np.sqrt(thm4) * thm3  # Thm 2: E ≤ β ‖φ‖_{Σ⁻¹} ‖θ̂ − θ*‖_Σ

"""Logit-error metrics of log-linear DPO and the explicit bound of ADPO's Theorems 3 × 4."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jaxpref import _checks


class LogitErrors(NamedTuple):
    max: Array  # ()  E(θ̂, θ*) = max_i |β φ_iᵀ(θ̂ − θ*)|
    mean: Array  # ()  mean_i |β φ_iᵀ(θ̂ − θ*)|
    error_rate: Array  # ()  fraction of pairs with sign(φ_iᵀθ̂ − b_i) ≠ sign(φ_iᵀθ* − b_i)


def logit_errors(
    theta_hat: Float[Array, " d"],
    theta_star: Float[Array, " d"],
    phi_diff: Float[Array, "N d"],
    ref_logratio: Float[Array, " N"],
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
    fails (β = 1: μ(−2)² ≈ 0.0142 < μ(−4) ≈ 0.0180), and for β ≲ 0.27 the stated value exceeds
    the true minimum (β = 0.1: μ(−0.4) ≈ 0.401 > σ(0.2)σ(−0.2) ≈ 0.248), so it is not a lower
    bound there. We use the exact minimum.

    References: Kveton et al., arXiv 2503.01076, Assumption 3 (corrected; see theory/adpo.md).
    """
    _checks.check_positive("beta", beta)
    beta = float(beta)
    sig = jax.nn.sigmoid
    c_min = beta**2 * float(sig(2 * beta)) * float(sig(-2 * beta))
    return c_min, beta**2 / 4


def logit_error_bound(n, d: int, *, beta=1.0, gamma=1.0, delta=0.05, kappa=1.0) -> np.ndarray:
    r"""The explicit high-probability bound on E(θ̂_n, θ*) from Theorems 3 and 4 (NumPy, float64).

    E ≤ β max_i ‖φ_i‖_{Σ_n⁻¹} ‖θ̂_n − θ*‖_{Σ_n}, with (Σ_n = γI + ∇²L(θ*; S_n))

      Thm 3:  ‖θ̂_n − θ*‖_{Σ_n} ≤ √((β² d / c_min) log((1 + c_min n/γ)/δ)) + 2√γ
      Thm 4:  φ_iᵀ Σ_n⁻¹ φ_i ≤ c_max³ log(1 + c_max n/(γd)) κ d / (c_min γ log(1 + c_max/γ) n)

    with c_min = β²σ(2β)σ(−2β) (corrected) and c_max = β²/4. The factor β in front is the logit
    scale of E; the paper states Theorem 2 at β = 1 where it is invisible.

    Args:
      n: budget(s), any shape, ≥ 1.
      d: feature dimension.
      beta, gamma: > 0. delta: failure probability in (0, 1). kappa: ≥ 1, Assumption 4.

    Returns: the bound for each n (same shape as n).

    References: Kveton et al., arXiv 2503.01076, Theorems 2, 3 and 4.
    """
    n = np.asarray(n, dtype=np.float64)
    if not np.all(np.isfinite(n)) or np.any(n < 1):
        raise ValueError(f"n: budgets must be finite and >= 1, got {n}")
    _checks.check_int_in("d", d, 1, 10**9)
    _checks.check_positive("gamma", gamma)
    _checks.check_in_range("delta", delta, 0.0, 1.0, closed="neither")
    _checks.check_in_range("kappa", kappa, 1.0, np.inf, closed="left")
    c_min, c_max = design_constants(beta)
    thm3 = np.sqrt(beta**2 * d / c_min * np.log((1 + c_min * n / gamma) / delta)) + 2 * np.sqrt(
        gamma
    )
    thm4 = (
        c_max**3
        * np.log(1 + c_max * n / (gamma * d))
        * kappa
        * d
        / (c_min * gamma * np.log(1 + c_max / gamma) * n)
    )
    return beta * np.sqrt(thm4) * thm3

"""Extreme values of a linear functional over a likelihood-ratio (sublevel) confidence set.

C^LR_k = {θ : ℓ_λ(θ) − ℓ_λ(θ̂) ≤ ζ} has no closed-form support function, so the inner problem
min_{θ ∈ C} ⟨θ, v⟩ of the min-max step is solved numerically through its Lagrangian dual:
for a multiplier μ > 0, θ(μ) = argmin ⟨θ, v⟩ + μ ℓ(θ) (Newton), and μ is projected onto the
active constraint ℓ(θ(μ)) − ℓ(θ̂) = ζ by bisection on the sign of the dual gradient. On an
ellipsoid (quadratic ℓ) this returns the closed form of `pessimistic_value`.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from jaxpref import _checks, linalg
from jaxpref.pbpo import reward


def _argmin_lagrangian(loss_fn, theta_hat, v, mu, num_newton):
    def step(_, th):
        g = v / mu + jax.grad(loss_fn)(th)  # ∇(⟨θ, v⟩/μ + ℓ(θ))
        return th - linalg.psd_solve(jax.hessian(loss_fn)(th), g)

    return jax.lax.fori_loop(0, num_newton, step, theta_hat)


@partial(jax.jit, static_argnums=(0, 4, 5))
def _dual_bisection(loss_fn, theta_hat, zeta, v, num_bisect, num_newton):
    level = loss_fn(theta_hat) + zeta
    dt = theta_hat.dtype

    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        th = _argmin_lagrangian(loss_fn, theta_hat, v, jnp.exp(mid), num_newton)
        feasible = loss_fn(th) <= level  # sign of the dual gradient ℓ(θ(μ)) − ℓ̂ − ζ (NaN → not)
        return jnp.where(feasible, lo, mid), jnp.where(feasible, mid, hi)

    lo, hi = jax.lax.fori_loop(0, num_bisect, body, (jnp.asarray(-20.0, dt), jnp.asarray(20.0, dt)))
    th = _argmin_lagrangian(loss_fn, theta_hat, v, jnp.exp(hi), num_newton)
    return jnp.dot(th, v), th


def sublevel_set_value(
    loss_fn,
    theta_hat,
    zeta,
    direction,
    *,
    maximize=False,
    num_bisect: int = 60,
    num_newton: int = 20,
):
    """min (or max) of ⟨θ, v⟩ over {θ : ℓ(θ) − ℓ(θ̂) ≤ ζ} for a strictly convex C² loss ℓ.

    Lagrangian dual: θ(μ) = argmin_θ ⟨θ, ±v⟩ + μ ℓ(θ); the optimal μ* ≥ 0 makes the constraint
    active, ℓ(θ(μ*)) = ℓ(θ̂) + ζ. μ is found by bisection on log μ ∈ [−20, 20] (the projection of
    the dual iterate onto the active constraint), θ(μ) by Newton from θ̂. The returned θ is
    always feasible (the upper end of the bracket).

    Args:
      loss_fn: θ ↦ ℓ(θ), strictly convex with minimiser θ̂ (a JAX-traceable, hashable callable).
      theta_hat: (d,) minimiser of ℓ.  zeta: level ζ ≥ 0.  direction: (d,) v.
      maximize: return the maximum instead of the minimum.

    Returns:
      (value (), theta (d,)): the extreme value and the θ attaining it.

    References: Zhan et al., "Provable offline preference-based RL", arXiv 2305.14816, Eq. (3)
      (likelihood-ratio set); Boyd & Vandenberghe, Convex Optimization, §5.2 (Lagrange dual).
    """
    (d,) = _checks.check_ndim("theta_hat", theta_hat, 1)
    if _checks.shape_of("direction", direction) != (d,):
        raise ValueError(f"direction: expected shape ({d},), got {jnp.shape(direction)}")
    _checks.check_nonnegative("zeta", zeta)
    theta_hat = jnp.asarray(theta_hat)
    sign = -1.0 if maximize else 1.0
    v = sign * jnp.asarray(direction, theta_hat.dtype)
    value, theta = _dual_bisection(
        loss_fn, theta_hat, jnp.asarray(zeta, theta_hat.dtype), v, num_bisect, num_newton
    )
    return sign * value, theta  # Eq. (LR inner problem)


class BTLLoss:
    """ℓ_λ(θ) on a fixed data set as a hashable callable (so the solver compiles once per data)."""

    def __init__(self, delta_phi, labels, lam, weights=None):
        self.args = (delta_phi, labels, lam, weights)

    def __call__(self, theta):
        return reward.btl_nll(theta, *self.args)


def likelihood_set_value(
    theta_hat, delta_phi, labels, lam, zeta, direction, *, weights=None, maximize=False
):
    """min (max) of ⟨θ, v⟩ over C^LR = {θ : ℓ_λ(θ) − ℓ_λ(θ̂) ≤ ζ}, ℓ_λ the regularised BTL NLL.

    Args:
      theta_hat: (d,) regularised MLE.  delta_phi: (N, d); labels: (N,) the data of ℓ_λ.
      lam: λ > 0.  zeta: ζ ≥ 0 (e.g. `likelihood_ratio_threshold(β)`).  direction: (d,) v.

    Returns:
      (value, theta) as in `sublevel_set_value`.

    References: Zhan et al., arXiv 2305.14816, Eq. (3); Jia, arXiv 2511.12867 [summary].
    """
    (n, d) = _checks.check_ndim("delta_phi", delta_phi, 2)
    if _checks.shape_of("labels", labels) != (n,):
        raise ValueError(f"labels: expected shape ({n},) to match delta_phi")
    if _checks.shape_of("theta_hat", theta_hat) != (d,):
        raise ValueError(f"theta_hat: expected shape ({d},) to match delta_phi")
    _checks.check_positive("lam", lam)
    loss = BTLLoss(
        jnp.asarray(delta_phi), jnp.asarray(labels, jnp.asarray(delta_phi).dtype), lam, weights
    )
    return sublevel_set_value(loss, theta_hat, zeta, direction, maximize=maximize)


__all__ = ["likelihood_set_value", "sublevel_set_value"]

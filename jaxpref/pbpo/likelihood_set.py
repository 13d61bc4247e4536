"""Extreme values of a linear functional over a likelihood-ratio (sublevel) confidence set.

C^LR_k = {θ : ℓ_λ(θ) − ℓ_λ(θ̂) ≤ ζ} has no closed-form support function, so the inner problem
min_{θ ∈ C} ⟨θ, v⟩ of the min-max step is solved numerically, either through its Lagrangian
dual (θ(μ) = argmin ⟨θ, v⟩ + μ ℓ(θ) by Newton, μ by bisection onto the active constraint) or by
preconditioned projected gradient (projection onto the set by its own KKT system). On an
ellipsoid (quadratic ℓ) both return the closed form of `pessimistic_value`.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from jaxpref import _checks, linalg
from jaxpref.pbpo import reward


def _newton(fun, x0, num_newton):
    """`num_newton` Newton steps on a strictly convex C² function from x0."""

    def step(_, x):
        return x - linalg.psd_solve(jax.hessian(fun)(x), jax.grad(fun)(x))

    return jax.lax.fori_loop(0, num_newton, step, x0)


def _feasible_end(theta_of, feasible, dt, num_bisect):
    """θ(t) at the smallest t ∈ [−20, 20] (bisection) with θ(t) feasible; feasibility is monotone
    in t (larger t: more weight on ℓ). NaN iterates count as infeasible."""

    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        ok = feasible(theta_of(mid))
        return jnp.where(ok, lo, mid), jnp.where(ok, mid, hi)

    lo, hi = jax.lax.fori_loop(0, num_bisect, body, (jnp.asarray(-20.0, dt), jnp.asarray(20.0, dt)))
    return theta_of(hi)


@partial(jax.jit, static_argnums=(0, 4, 5))
def _dual_bisection(loss_fn, theta_hat, zeta, v, num_bisect, num_newton):
    level = loss_fn(theta_hat) + zeta

    def theta_of(t):  # θ(μ) = argmin ⟨θ, v⟩/μ + ℓ(θ), μ = e^t
        return _newton(lambda th: jnp.dot(th, v) * jnp.exp(-t) + loss_fn(th), theta_hat, num_newton)

    th = _feasible_end(theta_of, lambda th: loss_fn(th) <= level, theta_hat.dtype, num_bisect)
    return jnp.dot(th, v), th


def _project(loss_fn, M, y, level, theta_hat, num_bisect, num_newton):
    """argmin_{ℓ(θ) ≤ level} ½‖θ − y‖²_M: y itself if feasible, else the KKT point
    M(θ − y) + ν∇ℓ(θ) = 0 with ν found by bisection on log ν."""

    def theta_of(t):
        fun = lambda th: 0.5 * linalg.quad_form(M, th - y) + jnp.exp(t) * loss_fn(th)  # noqa: E731
        return _newton(fun, theta_hat, num_newton)

    th = _feasible_end(theta_of, lambda th: loss_fn(th) <= level, y.dtype, num_bisect)
    return jnp.where(loss_fn(y) <= level, y, th)


@partial(jax.jit, static_argnums=(0, 4, 5, 6))
def _projected_gradient(loss_fn, theta_hat, zeta, v, num_steps, num_bisect, num_newton, step):
    level = loss_fn(theta_hat) + zeta
    M = jax.hessian(loss_fn)(theta_hat)  # preconditioner: the set is near-spherical in ‖·‖_M
    g = linalg.psd_solve(M, v)
    vg = jnp.dot(v, g)
    g = jnp.where(vg > 0, step * jnp.sqrt(2 * zeta / jnp.where(vg > 0, vg, 1.0)), 0.0) * g

    def body(_, th):
        return _project(loss_fn, M, th - g, level, theta_hat, num_bisect, num_newton)  # Eq. (PG)

    th = jax.lax.fori_loop(0, num_steps, body, theta_hat)
    return jnp.dot(th, v), th


def sublevel_set_value(
    loss_fn,
    theta_hat,
    zeta,
    direction,
    *,
    maximize=False,
    method: str = "dual",
    num_bisect: int = 60,
    num_newton: int = 20,
    num_steps: int = 30,
    step: float = 1.0,
):
    """min (or max) of ⟨θ, v⟩ over {θ : ℓ(θ) − ℓ(θ̂) ≤ ζ} for a strictly convex C² loss ℓ.

    ``method="dual"``: θ(μ) = argmin_θ ⟨θ, ±v⟩ + μ ℓ(θ); the optimal μ* ≥ 0 makes the
    constraint active, ℓ(θ(μ*)) = ℓ(θ̂) + ζ. μ is found by bisection on log μ ∈ [−20, 20], θ(μ)
    by Newton from θ̂.

    ``method="projected_gradient"``: θ_{t+1} = P_M(θ_t ∓ s √(2ζ) M⁻¹v / ‖v‖_{M⁻¹}) for
    ``num_steps`` steps, M = ∇²ℓ(θ̂), P_M the projection onto the set in ‖·‖_M (its KKT point
    M(θ − y) + ν∇ℓ(θ) = 0, ν by bisection, θ by Newton). On an ellipsoid ℓ = ½‖θ − θ̂‖²_Σ the
    first step already lands on the closed-form minimiser θ̂ − β Σ⁻¹v/‖v‖_{Σ⁻¹}.

    Either way the returned θ is feasible (the feasible end of the bisection bracket).

    Args:
      loss_fn: θ ↦ ℓ(θ), strictly convex with minimiser θ̂ (a JAX-traceable, hashable callable).
      theta_hat: (d,) minimiser of ℓ.  zeta: level ζ ≥ 0.  direction: (d,) v.
      maximize: return the maximum instead of the minimum.
      method: "dual" or "projected_gradient".  step: s, the PG step as a fraction of √(2ζ).
      num_bisect, num_newton, num_steps: iteration counts (static).

    Returns:
      (value (), theta (d,)): the extreme value and the θ attaining it.

    References: Zhan et al., "Provable offline preference-based RL", arXiv 2305.14816, Eq. (3)
      (likelihood-ratio set); Boyd & Vandenberghe, Convex Optimization, §5.2 (Lagrange dual).
    """
    (d,) = _checks.check_ndim("theta_hat", theta_hat, 1)
    if _checks.shape_of("direction", direction) != (d,):
        raise ValueError(f"direction: expected shape ({d},), got {jnp.shape(direction)}")
    _checks.check_nonnegative("zeta", zeta)
    if method not in ("dual", "projected_gradient"):
        raise ValueError(f"method: must be 'dual' or 'projected_gradient', got {method!r}")
    _checks.check_positive("step", step)
    theta_hat = jnp.asarray(theta_hat)
    sign = -1.0 if maximize else 1.0
    v = sign * jnp.asarray(direction, theta_hat.dtype)
    zeta = jnp.asarray(zeta, theta_hat.dtype)
    if method == "dual":
        value, theta = _dual_bisection(loss_fn, theta_hat, zeta, v, num_bisect, num_newton)
    else:
        value, theta = _projected_gradient(
            loss_fn, theta_hat, zeta, v, num_steps, num_bisect, num_newton, step
        )
    return sign * value, theta  # Eq. (LR inner problem)


class BTLLoss:
    """ℓ_λ(θ) on a fixed data set as a hashable callable (so the solver compiles once per data)."""

    def __init__(self, delta_phi, labels, lam, weights=None):
        self.args = (delta_phi, labels, lam, weights)

    def __call__(self, theta):
        return reward.ridge_btl_nll(theta, *self.args)


def likelihood_set_value(
    theta_hat, delta_phi, labels, lam, zeta, direction, *, weights=None, maximize=False, **solver
):
    """min (max) of ⟨θ, v⟩ over C^LR = {θ : ℓ_λ(θ) − ℓ_λ(θ̂) ≤ ζ}, ℓ_λ the regularised BTL NLL.

    Args:
      theta_hat: (d,) regularised MLE.  delta_phi: (N, d); labels: (N,) the data of ℓ_λ.
      lam: λ > 0.  zeta: ζ ≥ 0 (e.g. `likelihood_ratio_threshold(β)`).  direction: (d,) v.
      solver: ``method`` ("dual" or "projected_gradient") and iteration counts, passed on to
        `sublevel_set_value`.

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
    return sublevel_set_value(loss, theta_hat, zeta, direction, maximize=maximize, **solver)


__all__ = ["likelihood_set_value", "sublevel_set_value"]

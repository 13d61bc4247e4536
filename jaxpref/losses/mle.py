"""Maximum-likelihood fit of log-linear DPO (ridge-regularised logistic regression).

Under a log-linear policy the DPO loss of a pair is a logistic loss in θ (ADPO, Assumption 1):
h_i(θ) = β(φ_iᵀθ − b_i), μ_i = σ(h_i), and

    L(θ; S) = −Σ_{i∈S} [s_i log μ_i(θ) + (1 − s_i) log(1 − μ_i(θ))]          (Eq. 7)
    ∇L = β Σ (μ_i − s_i) φ_i,    ∇²L = β² Σ μ_i(1 − μ_i) φ_i φ_iᵀ            (Lemma 1)

``fit_dpo_mle`` minimises L(θ) + (γ/2)‖θ‖² by damped Newton (IRLS) with a backtracking line
search, all inside one ``jit``: ``logistic_newton_step`` is the one Newton step of the library
and ``dpo_mle_newton`` its convergence-stopped loop (ADPO's re-fits and PbPO's BTL fits run
both).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from jaxpref import _checks, linalg
from jaxpref.losses.preference import logistic_loss

_HALVINGS = 29  # backtracking step sizes 1, 1/2, …, 2⁻²⁹


class MLEResult(NamedTuple):
    theta: Array  # (d,)    θ̂ = argmin L(θ) + (γ/2)‖θ‖²
    hessian: Array  # (d, d)  ∇²L(θ̂) of Lemma 1 (without the ridge term γI)
    grad_norm: Array  # ()      ‖∇(L + γ/2‖θ‖²)(θ̂)‖ at exit
    num_iters: Array  # ()      Newton iterations taken


def dpo_hessian(
    theta: Float[ArrayLike, " d"],
    phi_diff: Float[ArrayLike, "N d"],
    *,
    beta=1.0,
    ref_logratio: Float[ArrayLike, " N"] | None = None,
    weights: Float[ArrayLike, " N"] | None = None,
) -> Float[Array, "d d"]:
    """Lemma 1 of ADPO: ∇²L_DPO(θ; S) = β² Σ_{i∈S} μ_i(θ)(1 − μ_i(θ)) φ_i φ_iᵀ.

    ``weights`` (0/1 membership of S, or any non-negative weights) default to all ones.

    References: Kveton et al., "Active Learning for Direct Preference Optimization",
      arXiv 2503.01076, Lemma 1.
    """
    b = jnp.zeros(phi_diff.shape[:1], phi_diff.dtype) if ref_logratio is None else ref_logratio
    w = jnp.ones_like(b) if weights is None else weights
    mu = jax.nn.sigmoid(beta * (phi_diff @ theta - b))
    c = w * beta**2 * mu * (1 - mu)
    return (phi_diff * c[:, None]).T @ phi_diff  # Lemma 1


def logistic_newton_step(
    theta: Float[ArrayLike, " d"],
    phi: Float[ArrayLike, "N d"],
    s: Float[ArrayLike, " N"],
    b: Float[ArrayLike, " N"],
    w: Float[ArrayLike, " N"],
    beta,
    gamma,
    damped: bool = True,
) -> tuple[Float[Array, " d"], Float[Array, ""], Float[Array, ""]]:
    r"""One damped Newton (IRLS) step on the ridge logistic objective of ``fit_dpo_mle``,

    F(θ) = Σ_i w_i ℓ(β(φ_iᵀθ − b_i); s_i) + (γ/2)‖θ‖²,  ℓ = ``logistic_loss``,
    ∇F = β Σ w_i (μ_i − s_i) φ_i + γθ,  ∇²F = β² Σ w_i μ_i(1 − μ_i) φ_i φ_iᵀ + γI  (Lemma 1),

    with the step θ + t p, p = −(∇²F)⁻¹∇F, t the first of 1, 1/2, …, 2⁻²⁹ that satisfies
    Armijo's condition F(θ + tp) ≤ F(θ) + 10⁻⁴ t ∇Fᵀp (2⁻²⁹ if none does); each trial costs
    O(N), since h(θ + tp) = h(θ) + tβΦp, and near the optimum t = 1 passes at once. The one
    Newton step of jaxpref: the DPO MLE, ADPO's re-fits and PbPO's BTL confidence sets all run
    it. No argument checks (jittable). ``damped=False`` (static) takes the full step t = 1.

    Returns:
      ``(theta_new, decrement, objective)``: the Newton decrement λ² = ∇Fᵀ(∇²F)⁻¹∇F at θ (an
      estimate of 2(F(θ) − min F)) and F(theta_new).

    References: Kveton et al., arXiv 2503.01076, Eq. (7) and Lemma 1; Boyd & Vandenberghe,
      "Convex Optimization", 2004, §9.5 (Newton's method, the decrement, backtracking).
    """
    d = phi.shape[1]
    h = beta * (phi @ theta - b)
    mu = jax.nn.sigmoid(h)
    g = beta * phi.T @ (w * (mu - s)) + gamma * theta  # ∇F
    c = w * beta**2 * mu * (1 - mu)
    H = (phi * c[:, None]).T @ phi + gamma * jnp.eye(d, dtype=phi.dtype)  # Lemma 1 + γI
    p = -linalg.psd_solve(H, g)
    hp = beta * (phi @ p)
    gp = jnp.dot(g, p)

    def value(t):
        th = theta + t * p
        return jnp.sum(w * logistic_loss(h + t * hp, s)) + 0.5 * gamma * jnp.sum(th * th)

    f0 = value(jnp.zeros((), phi.dtype))

    def shorter(carry):  # backtracking: halve t until Armijo holds (at most 29 times)
        t, _, j = carry
        return t / 2, value(t / 2), j + 1

    def armijo_fails(carry):
        t, f, j = carry
        return (f > f0 + 1e-4 * t * gp) & (j < _HALVINGS)

    one = jnp.ones((), phi.dtype)
    if not damped:
        return theta + p, -gp, value(one)
    t, f, _ = jax.lax.while_loop(armijo_fails, shorter, (one, value(one), 0))
    return theta + t * p, -gp, f


@partial(jax.jit, static_argnames=("max_iters", "damped"))
def dpo_mle_newton(phi, s, b, w, beta, gamma, max_iters, theta0=None, tol=None, damped=True):
    """The damped-Newton ridge DPO MLE of ``fit_dpo_mle`` without its argument checks (jitted,
    ``max_iters`` static): for callers inside ``jit``/``scan`` such as ADPO's re-fits and PbPO's
    warm-started confidence-set updates.

    Repeats ``logistic_newton_step`` from ``theta0`` (zeros when omitted) in a ``while_loop``
    that stops once the Newton decrement λ² ≤ ``tol``·max(1, |F|) (``tol`` defaults to ten
    machine epsilons: run to working precision) or after ``max_iters`` steps. Newton converges
    quadratically here, so a converged fit costs a handful of O(N d² + d³) steps, not
    ``max_iters``. ``damped=False`` (static) takes full Newton steps without the line search:
    for warm starts next to the optimum, where t = 1 passes anyway.
    """
    d = phi.shape[1]
    dt = phi.dtype
    tol = 10 * jnp.finfo(dt).eps if tol is None else jnp.asarray(tol, dt)
    theta0 = jnp.zeros(d, dt) if theta0 is None else jnp.asarray(theta0, dt)

    def body(carry):
        theta, _, _, k = carry
        return (*logistic_newton_step(theta, phi, s, b, w, beta, gamma, damped), k + 1)

    def cond(carry):
        _, decrement, f, k = carry
        return (k < max_iters) & (decrement > tol * jnp.maximum(1.0, jnp.abs(f)))

    init = (theta0, jnp.asarray(jnp.inf, dt), jnp.zeros((), dt), jnp.asarray(0))
    theta, _, _, k = jax.lax.while_loop(cond, body, init)
    mu = jax.nn.sigmoid(beta * (phi @ theta - b))
    g = beta * phi.T @ (w * (mu - s)) + gamma * theta
    return MLEResult(
        theta, dpo_hessian(theta, phi, beta=beta, ref_logratio=b, weights=w), jnp.linalg.norm(g), k
    )


def fit_dpo_mle(
    phi_diff: Float[ArrayLike, "N d"],
    labels: Float[ArrayLike, " N"],
    *,
    beta=1.0,
    gamma=1.0,
    ref_logratio: Float[ArrayLike, " N"] | None = None,
    weights: Float[ArrayLike, " N"] | None = None,
    max_iters: int = 50,
) -> MLEResult:
    r"""θ̂ = argmin_θ Σ_i w_i ℓ(β(φ_iᵀθ − b_i); s_i) + (γ/2)‖θ‖² by damped Newton (IRLS).

    ℓ(h; s) = −s log σ(h) − (1 − s) log σ(−h) is the DPO loss of a pair under a log-linear
    policy (ADPO Eq. 7); with β = 1 and b = 0 this is ridge logistic regression (the
    Bradley–Terry MLE on feature differences).

    Args:
      phi_diff: (N, d) φ_i = φ(x_i, y_i1) − φ(x_i, y_i2).
      labels: (N,) s_i = 1 when y_i1 was preferred (soft labels in [0, 1] allowed).
      beta: > 0.
      gamma: > 0, ridge (prior precision); makes the minimiser unique.
      ref_logratio: (N,) b_i = log π₀(y_i1|x_i) − log π₀(y_i2|x_i); zeros when omitted.
      weights: (N,) non-negative weights, e.g. the 0/1 indicator of a selected subset S.
      max_iters: Newton iteration cap (the loop stops earlier once the Newton decrement is at
        machine precision).

    Returns:
      ``MLEResult(theta, hessian, grad_norm, num_iters)``; ``hessian`` is Lemma 1's ∇²L(θ̂),
      so the regularised Hessian is ``hessian + gamma * I``.

    References: Kveton et al., "Active Learning for Direct Preference Optimization",
      arXiv 2503.01076, Eq. (7) and Lemma 1.
    """
    N, _ = _checks.check_ndim("phi_diff", phi_diff, 2)
    for name, x in (("labels", labels), ("ref_logratio", ref_logratio), ("weights", weights)):
        if x is not None and _checks.shape_of(name, x) != (N,):
            raise ValueError(
                f"{name}: expected shape ({N},) to match phi_diff, got {_checks.shape_of(name, x)}"
            )
        _checks.check_finite(name, x)
    _checks.check_finite("phi_diff", phi_diff)
    _checks.check_in_range("labels", labels, 0.0, 1.0)
    if weights is not None:
        _checks.check_nonnegative("weights", weights)
    _checks.check_positive("beta", beta)
    _checks.check_positive("gamma", gamma)
    _checks.check_int_in("max_iters", max_iters, 1, 10_000)
    phi = jnp.asarray(phi_diff)
    dt = phi.dtype
    b = jnp.zeros(N, dt) if ref_logratio is None else jnp.asarray(ref_logratio, dt)
    w = jnp.ones(N, dt) if weights is None else jnp.asarray(weights, dt)
    return dpo_mle_newton(
        phi, jnp.asarray(labels, dt), b, w, jnp.asarray(beta, dt), jnp.asarray(gamma, dt), max_iters
    )

"""Projected stochastic (sub)gradient updates, the proximal subproblem, and Moreau stationarity.

The robust SAIL objective F = L_SAIL + ρR_ρ is weakly convex on Θ = {‖θ‖ ≤ B}; with the
indicator ι_Θ the composite objective is φ = F + ι_Θ. Its Moreau envelope

    M_λ(θ) = min_u φ(u) + ‖u − θ‖²/(2λ),   ∇M_λ(θ) = (θ − prox_{λφ}(θ))/λ   (0 < λ < 1/τ)

is smooth, and ‖∇M_λ(θ)‖ small means θ is close to a point prox_{λφ}(θ) that is nearly
stationary for φ. Everything that evolves is an (init, update) pair over a NamedTuple state.

References: Li, Gaur & Aggarwal, arXiv 2602.20457 (projected stochastic composite updates,
  Moreau-envelope stationarity, inexact inner solver); Davis & Drusvyatskiy, "Stochastic
  model-based minimization of weakly convex functions", arXiv 1803.06523 (stochastic projected
  subgradient rate; Moreau envelope as stationarity measure).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxpref import _checks
from jaxpref.metrics.fits import loglog_slope
from jaxpref.robust.estimator import estimate_gradient
from jaxpref.robust.objective import (
    PreferenceProblem,
    _expectation,
    check_theta,
    expectation,
    pair_loss,
)


def _check_common(theta, problem, rho, radius):
    check_theta(theta, problem)
    _checks.check_nonnegative("rho", rho)
    _checks.check_positive("radius", radius)


def project_ball(theta: Float[ArrayLike, " d"], radius) -> Float[Array, " d"]:
    """Euclidean projection onto Θ = {‖θ‖ ≤ B}: θ·min(1, B/‖θ‖)."""
    norm = jnp.linalg.norm(theta)
    return theta * jnp.minimum(1.0, radius / jnp.maximum(norm, jnp.finfo(theta.dtype).tiny))


# ----------------------------------------------------------------------------- outer updates


class SubgradientState(NamedTuple):
    theta: Array  # (d,)  current iterate θ_k ∈ Θ
    key: Array  # (2,) or ()  PRNG key for the next sample batch
    step: Array  # ()  k, number of updates done


def projected_subgradient_init(theta0, key, radius) -> SubgradientState:
    """θ_0 = Proj_Θ(theta0); checks ``radius`` > 0 and ``theta0`` finite."""
    _checks.check_positive("radius", radius)
    _checks.check_finite("theta0", theta0)
    theta0 = project_ball(jnp.asarray(theta0), radius)
    return SubgradientState(theta0, key, jnp.zeros((), jnp.int32))


@functools.partial(jax.jit, static_argnames="num_samples")
def projected_subgradient_update(
    state: SubgradientState,
    problem: PreferenceProblem,
    rho,
    radius,
    step_size,
    num_samples: int = 1,
    baseline=0.0,
) -> SubgradientState:
    r"""θ_{k+1} = Proj_Θ(θ_k − η_k ĝ_k), η_k = η₀/√(k+1), ĝ_k the score-function estimator.

    Args:
      state: `SubgradientState`. problem: `PreferenceProblem`. rho: ρ ≥ 0 (0 = nominal SAIL).
      radius: B > 0. step_size: η₀. num_samples: M triples per step (static). baseline: b.
    Returns: the next state.

    References: Li, Gaur & Aggarwal, arXiv 2602.20457 (projected stochastic updates);
      Davis & Drusvyatskiy, arXiv 1803.06523 (projected stochastic subgradient)
      [Reconstruction, theory Eq. (R8)].
    """
    key, sub = jax.random.split(state.key)
    g = estimate_gradient(sub, state.theta, problem, rho, num_samples, baseline)
    eta = step_size / jnp.sqrt(state.step + 1.0).astype(state.theta.dtype)
    theta = project_ball(state.theta - eta * g, radius)  # Eq. (R8)
    return SubgradientState(theta, key, state.step + 1)


def projected_subgradient_path(
    key,
    problem: PreferenceProblem,
    rho,
    radius,
    step_size,
    num_steps: int,
    num_samples: int = 1,
    theta0=None,
) -> Float[Array, "T d"]:
    """The iterates θ_1, …, θ_T of `projected_subgradient_update` from θ_0 = Proj_Θ(theta0)
    (default 0), one ``lax.scan``: a (T, d) array (average or pick from it as the analysis needs).

    References: as `projected_subgradient_update` [theory Eq. (R8)].
    """
    _checks.check_int_in("num_steps", num_steps, 1, 10**9)
    theta0 = jnp.zeros(problem.phi.shape[-1], problem.phi.dtype) if theta0 is None else theta0
    state = projected_subgradient_init(theta0, key, radius)

    def step(s, _):
        s = projected_subgradient_update(s, problem, rho, radius, step_size, num_samples)
        return s, s.theta

    return jax.lax.scan(step, state, None, length=num_steps)[1]


def fit_robust_sail(
    key,
    problem: PreferenceProblem,
    rho,
    radius,
    step_size,
    num_steps: int,
    num_samples: int = 1,
    theta0=None,
) -> Float[Array, " d"]:
    r"""Robust SAIL fitted by projected stochastic subgradient steps (ρ = 0: nominal SAIL): the
    average of the last half of the iterates of `projected_subgradient_path`,

    .. math:: \bar\theta = \frac{1}{T - \lfloor T/2 \rfloor}
              \sum_{k=\lfloor T/2 \rfloor + 1}^{T} \theta_k ,

    (½-suffix averaging: it drops the early iterates, far from any solution, that a full average
    carries; for strongly convex objectives it attains the optimal O(1/T) rate, Rakhlin et al.;
    here F is only weakly convex and no rate is claimed for θ̄). An average of points of the
    ball Θ = {‖θ‖ ≤ B} stays in Θ.

    Args:
      key: PRNG key of the sample batches. problem: `PreferenceProblem`. rho: ρ ≥ 0.
      radius: B > 0. step_size: η₀ (η_k = η₀/√(k+1)). num_steps: T ≥ 1 (the order of
      `projected_subgradient_path` and `subgradient_stationarity`).
      num_samples: M triples per step. theta0: start (default 0).
    Returns: (d,) the suffix average θ̄.

    References: Li, Gaur & Aggarwal, arXiv 2602.20457 (projected stochastic updates);
      Rakhlin, Shamir & Sridharan, "Making gradient descent optimal for strongly convex
      stochastic optimization", arXiv 1109.5647 (α-suffix averaging) [theory Eq. (R8)].
    """
    path = projected_subgradient_path(
        key, problem, rho, radius, step_size, num_steps, num_samples, theta0
    )
    return jnp.mean(path[num_steps // 2 :], axis=0)


# ----------------------------------------------------------------------------- prox subproblem


def _smoothed_pair_value(h, pref, rho_delta):
    rho, delta = rho_delta
    c_pos = jnp.minimum(rho, pref)
    c_neg = jnp.minimum(rho, 1.0 - pref)
    huber = jnp.where(jnp.abs(h) <= delta, h**2 / (2 * delta), jnp.abs(h) - delta / 2)
    # max(c₊h, −c₋h) = (c₊ − c₋)h/2 + (c₊ + c₋)|h|/2, with |h| → Huber_δ(h).
    return pair_loss(h, pref) + 0.5 * (c_pos - c_neg) * h + 0.5 * (c_pos + c_neg) * huber


def smoothed_robust_objective(theta, problem: PreferenceProblem, rho, delta):
    """F_δ: the robust objective with |h| replaced by the Huber function (0 ≤ F − F_δ ≤ ρδ/2)."""
    return expectation(theta, problem, (rho, delta), _smoothed_pair_value)


class ProxState(NamedTuple):
    u: Array  # (d,)  current inner iterate u_j ∈ Θ
    u_prev: Array  # (d,)  u_{j−1} (for the momentum step)
    grad_map_norm: Array  # ()  ‖G_t(v_{j−1})‖ of the last step (inf before the first)
    num_iters: Array  # ()  j


def prox_init(theta) -> ProxState:
    """Start the inner solver at u_0 = θ."""
    theta = jnp.asarray(theta)
    return ProxState(theta, theta, jnp.array(jnp.inf, theta.dtype), jnp.zeros((), jnp.int32))


def prox_update(state: ProxState, theta, problem, rho, lam, radius, delta, inner_step) -> ProxState:
    r"""One accelerated projected-gradient step on Φ(u) = F_δ(u) + ‖u − θ‖²/(2λ) over Θ.

    v = u_j + m(u_j − u_{j−1}) with m = (1 − √(tμ))/(1 + √(tμ)), μ = 1/(2λ) (valid when
    λ ≤ 1/(2τ)); u_{j+1} = Proj_Θ(v − t∇Φ(v)). The gradient mapping G_t(v) = (v − u_{j+1})/t
    certifies ‖u_{j+1} − u*‖ ≤ (1 + tL)‖G_t(v)‖/μ ≤ 2‖G_t(v)‖/μ for t ≤ 1/L (theory Eq. (R10)).

    References: Nesterov, "Introductory Lectures on Convex Optimization", 2004, Sec. 2.2
      (constant-momentum scheme); Li, Gaur & Aggarwal, arXiv 2602.20457 (inexact inner solver).
    """
    q = jnp.sqrt(inner_step / (2 * lam))
    v = state.u + (1 - q) / (1 + q) * (state.u - state.u_prev)
    grad = jax.grad(smoothed_robust_objective)(v, problem, rho, delta) + (v - theta) / lam
    u_next = project_ball(v - inner_step * grad, radius)  # Eq. (R9)
    gm = jnp.linalg.norm(v - u_next) / inner_step
    return ProxState(u_next, state.u, gm, state.num_iters + 1)


@functools.partial(jax.jit, static_argnames="max_iters")
def _prox_solve(theta, problem, rho, lam, radius, delta, inner_step, tol, max_iters):
    def running(s):
        return (s.grad_map_norm > tol) & (s.num_iters < max_iters)

    def step(s):
        return prox_update(s, theta, problem, rho, lam, radius, delta, inner_step)

    return jax.lax.while_loop(running, step, prox_init(theta))


def smoothness_bound(problem: PreferenceProblem, rho, radius, delta):
    r"""Upper bound L on the Hessian norm of F_δ over Θ (for the inner step size t = 1/(L + 1/λ)).

    With a = max‖φ‖, g = β·max‖φ_y − φ_y'‖ and f_max = log 2 + (1 + ρ)h_max:
    L = g²(1/4 + ρ/δ) + 8a(1 + ρ)g + 18a²f_max (theory Eq. (R11)).
    """
    a = jnp.max(jnp.linalg.norm(problem.phi, axis=-1))
    g = problem.beta * 2 * a
    ref_span = jnp.max(problem.ref_logp, axis=-1) - jnp.min(problem.ref_logp, axis=-1)
    h_max = problem.beta * (2 * a * radius + jnp.max(ref_span))
    f_max = jnp.log(2.0) + (1 + rho) * h_max
    return g**2 * (0.25 + rho / delta) + 8 * a * (1 + rho) * g + 18 * a**2 * f_max  # Eq. (R11)


class MoreauResult(NamedTuple):
    value: Array  # ()  M_λ(θ) evaluated with the exact F at the returned prox point
    gradient: Array  # (d,)  (θ − û)/λ
    prox: Array  # (d,)  û ≈ prox_{λφ}(θ)
    grad_map_norm: Array  # ()  inexactness certificate ‖G_t‖ at exit
    num_iters: Array  # ()  inner iterations used


def moreau_envelope(
    theta: Float[ArrayLike, " d"],
    problem: PreferenceProblem,
    rho,
    lam,
    radius,
    *,
    delta=1e-3,
    tol=1e-6,
    max_iters: int = 5000,
    inner_step=None,
) -> MoreauResult:
    r"""Moreau envelope M_λ of φ = F + ι_Θ and its gradient (θ − prox_{λφ}(θ))/λ.

    .. math:: M_\lambda(\theta) = \min_{u\in\Theta} F(u) + \tfrac{1}{2\lambda}\|u-\theta\|^2,
              \quad \nabla M_\lambda(\theta)
              = (\theta - \mathrm{prox}_{\lambda\varphi}(\theta))/\lambda.

    The prox is computed inexactly: projected gradient on the Huber-smoothed subproblem (|h| →
    Huber_δ) until the gradient mapping is ≤ ``tol`` or ``max_iters``. With μ = 1/λ − τ > 0 the
    returned point is within 2·tol/μ + √(ρδ/μ) of the exact prox (theory Eqs. (R10), (R12)).

    Args:
      theta: (d,). problem: `PreferenceProblem`. rho: ρ ≥ 0. lam: λ > 0 (needs λ < 1/τ).
      radius: B > 0. delta: Huber width δ > 0. tol: stopping tolerance on ‖G_t‖.
      max_iters: inner iteration cap. inner_step: t (default 1/(L + 1/λ), `smoothness_bound`).
    Returns: `MoreauResult`.

    References: Li, Gaur & Aggarwal, arXiv 2602.20457 (Moreau-envelope stationarity, inexact
      proximal subproblem); Davis & Drusvyatskiy, arXiv 1803.06523 (envelope identities).
    """
    _check_common(theta, problem, rho, radius)
    _checks.check_positive("lam", lam)
    _checks.check_positive("delta", delta)
    _checks.check_positive("tol", tol)
    return _moreau(theta, problem, rho, lam, radius, delta, tol, max_iters, inner_step)


@functools.partial(jax.jit, static_argnames="max_iters")
def _moreau(theta, problem, rho, lam, radius, delta, tol, max_iters, inner_step=None):
    if inner_step is None:
        inner_step = 1.0 / (smoothness_bound(problem, rho, radius, delta) + 1.0 / lam)
    s = _prox_solve(theta, problem, rho, lam, radius, delta, inner_step, tol, max_iters)
    value = _expectation(s.u, problem, rho) + jnp.sum((s.u - theta) ** 2) / (2 * lam)
    gradient = (theta - s.u) / lam  # Eq. (R12)
    return MoreauResult(value, gradient, s.u, s.grad_map_norm, s.num_iters)


def moreau_gradient_norms(
    thetas, problem, rho, lam, radius, *, delta=1e-3, tol=1e-6, max_iters: int = 5000
):
    """‖∇M_λ(θ_k)‖² for a stack of iterates (..., d), e.g. a path (T, d) or the paths of S
    runs (S, T, d); returns the leading shape (vmapped `moreau_envelope` over the flattened
    stack)."""
    thetas = jnp.asarray(thetas)
    run = jax.vmap(functools.partial(_moreau, max_iters=max_iters), in_axes=(0,) + (None,) * 6)
    res = run(thetas.reshape(-1, thetas.shape[-1]), problem, rho, lam, radius, delta, tol)
    return jnp.sum(res.gradient**2, axis=-1).reshape(thetas.shape[:-1])


def stationarity_curves(sq_norms, horizons) -> tuple[np.ndarray, np.ndarray]:
    r"""The stationarity measures of the rate at each horizon T, from squared envelope-gradient
    norms g_{s,k} = ‖∇M_λ(θ_k)‖² of runs s = 1..S (``moreau_gradient_norms`` of each path):

    - ``min_curve[T]`` = mean_s min_{k<T} g_{s,k} (the best iterate so far);
    - ``mean_curve[T]`` = mean_{s, k<T} g_{s,k} = E‖∇M_λ(θ_R)‖², R uniform on the first T
      iterates: the random-iterate quantity that the Õ(ε⁻²) rate bounds by O(1/√T).

    Args:
      sq_norms: (S, T_max) or (T_max,) (one run) finite, non-negative squared norms.
      horizons: (H,) integers in [1, T_max].
    Returns:
      ``(min_curve, mean_curve)``, each (H,), float64 NumPy (a host-side summary, not traced).

    References: Davis & Drusvyatskiy, arXiv 1803.06523 (the random-iterate guarantee, Moreau
      envelope); Li, Gaur & Aggarwal, arXiv 2602.20457 (Õ(ε⁻²)); ``theory/robust_sail.md`` §9.
    """
    g = np.asarray(sq_norms, dtype=np.float64)
    if g.ndim == 1:
        g = g[None]
    if g.ndim != 2 or g.shape[1] == 0:
        raise ValueError(f"sq_norms: expected shape (S, T) or (T,) with T >= 1, got {g.shape}")
    if not np.all(np.isfinite(g) & (g >= 0)):
        raise ValueError("sq_norms: must be finite and >= 0")
    h = np.asarray(horizons)
    if h.ndim != 1 or not np.issubdtype(h.dtype, np.integer) or h.size == 0:
        raise ValueError(f"horizons: expected a non-empty 1-D integer array, got {horizons!r}")
    if h.min() < 1 or h.max() > g.shape[1]:
        raise ValueError(f"horizons: must lie in [1, {g.shape[1]}], got {h.min()}..{h.max()}")
    min_curve = np.minimum.accumulate(g, axis=1)[:, h - 1].mean(axis=0)
    return min_curve, np.array([g[:, :t].mean() for t in h])


# ----------------------------------------------------------------------------- outer prox point


class ProximalPointState(NamedTuple):
    theta: Array  # (d,)  θ_k
    step: Array  # ()  k


def proximal_point_init(theta0, radius) -> ProximalPointState:
    """θ_0 = Proj_Θ(theta0)."""
    _checks.check_positive("radius", radius)
    _checks.check_finite("theta0", theta0)
    return ProximalPointState(project_ball(jnp.asarray(theta0), radius), jnp.zeros((), jnp.int32))


def proximal_point_update(
    state, problem, rho, lam, radius, *, delta=1e-3, tol=1e-4, max_iters: int = 2000
) -> ProximalPointState:
    r"""Inexact proximal point: θ_{k+1} ≈ prox_{λφ}(θ_k), inner tolerance tol/(k+1)² (summable).

    References: Li, Gaur & Aggarwal, arXiv 2602.20457 (inexact inner solver);
      Rockafellar, "Monotone operators and the proximal point algorithm", 1976, criterion (A).
    """
    _check_common(state.theta, problem, rho, radius)
    _checks.check_positive("lam", lam)
    tol_k = tol / (state.step + 1.0) ** 2
    res = _moreau(state.theta, problem, rho, lam, radius, delta, tol_k, max_iters)
    return ProximalPointState(res.prox, state.step + 1)


# ----------------------------------------------------------------------------- weak convexity


def ball_points(key, num: int, dim: int, radius, dtype=None) -> Float[Array, "M d"]:
    r"""``num`` random points of Θ = {‖θ‖ ≤ B} at which to estimate the weak-convexity modulus
    (`weak_convexity_estimate`): θ = B·√U·z/‖z‖ with z ~ N(0, I_d) and U ~ U[0, 1), so the
    direction is uniform on the sphere and (‖θ‖/B)² is uniform on [0, 1) in every dimension
    (denser near the centre than the uniform law on the ball for d > 2). One key draws both z
    and U. Draws in ``dtype`` (default: JAX's default float).

    References: Davis & Drusvyatskiy, arXiv 1803.06523 (weak convexity on Θ);
      ``theory/robust_sail.md`` §7 (τ estimated from Hessians at points of Θ).
    """
    _checks.check_int_in("num", num, 1, 10**9)
    _checks.check_int_in("dim", dim, 1, 10**9)
    _checks.check_positive("radius", radius)
    dtype = jax.dtypes.canonicalize_dtype(float if dtype is None else dtype)
    pts = jax.random.normal(key, (num, dim), dtype=dtype)
    scale = jnp.sqrt(jax.random.uniform(key, (num, 1), dtype=dtype))
    return radius * pts / jnp.linalg.norm(pts, axis=-1, keepdims=True) * scale


def weak_convexity_estimate(
    problem: PreferenceProblem, rho, points: Float[ArrayLike, "M d"]
) -> Float[Array, ""]:
    r"""τ̂ = max(0, −min_m λ_min(∇²F(θ_m))) over the given points of Θ, F the robust objective.

    F is τ-weakly convex on Θ (``theory/robust_sail.md`` §7: F + τ‖θ‖²/2 is convex); the Hessian
    of its active smooth piece at sample points *estimates* τ (a lower estimate, not a bound),
    and λ = 1/(2 max(τ̂, 1)) < 1/τ̂ is then a Moreau parameter with a strongly convex subproblem.

    Args:
      problem: the preference problem. rho: ρ ≥ 0.
      points: (M, d) points θ_m at which the Hessian is taken.

    References: Davis & Drusvyatskiy, arXiv 1803.06523 (weak convexity, Moreau envelope
      λ < 1/τ); Li, Gaur & Aggarwal, arXiv 2602.20457.
    """
    m, d = _checks.check_ndim("points", points, 2)
    if d != problem.phi.shape[-1] or m < 1:
        raise ValueError(f"points: expected shape (M >= 1, {problem.phi.shape[-1]}), got {(m, d)}")
    _checks.check_finite("points", points)
    _checks.check_nonnegative("rho", rho)
    hess = jax.vmap(jax.hessian(expectation), in_axes=(0, None, None))(points, problem, rho)
    return jnp.maximum(0.0, -jnp.min(jnp.linalg.eigvalsh(hess)))


def moreau_parameter(
    problem: PreferenceProblem, rho, points: Float[ArrayLike, "M d"]
) -> tuple[float, float]:
    r"""``(λ, τ̂)``: the weak-convexity estimate τ̂ = `weak_convexity_estimate` at ``points`` and
    the Moreau parameter λ = 1/(2 max(τ̂, 1)) it licenses (λ < 1/τ̂ and λ ≤ ½). Where F + τ̂‖u‖²/2
    is convex, the prox subproblem F(u) + ‖u − θ‖²/(2λ) is strongly convex with modulus
    1/λ − τ̂ ≥ max(τ̂, 1), so prox_{λφ} is unique and ∇M_λ(θ) = (θ − prox_{λφ}(θ))/λ is the
    stationarity measure of `moreau_gradient_norms`.

    Args:
      problem: `PreferenceProblem`. rho: ρ ≥ 0. points: (M, d) points of Θ at which the
        Hessians are taken (e.g. `ball_points`).
    Returns: ``(lam, tau_hat)`` as Python floats (host values).

    References: Davis & Drusvyatskiy, arXiv 1803.06523 (Moreau envelope of a τ-weakly convex
      function for λ < 1/τ); ``theory/robust_sail.md`` §§7, 9.
    """
    tau = float(weak_convexity_estimate(problem, rho, points))
    return 1.0 / (2.0 * max(tau, 1.0)), tau


class StationarityRate(NamedTuple):
    """What `subgradient_stationarity` measures (host NumPy arrays and Python floats)."""

    horizons: np.ndarray  # (H,)  the horizons T
    min_curve: np.ndarray  # (H,)  mean_s min_{k<T} ‖∇M_λ(θ_{s,k})‖²
    mean_curve: np.ndarray  # (H,)  mean_{s, k<T} ‖∇M_λ(θ_{s,k})‖²
    min_slope: float  # least-squares slope of log min_curve in log T
    min_intercept: float  # its intercept
    mean_slope: float  # the slope of log mean_curve in log T
    lam: float  # λ of `moreau_parameter`
    tau: float  # τ̂ of `weak_convexity_estimate`


def subgradient_stationarity(
    keys,
    problem: PreferenceProblem,
    rho,
    radius,
    step_size,
    num_steps: int,
    num_samples: int = 1,
    *,
    points,
    horizons=None,
    tol=1e-6,
) -> StationarityRate:
    r"""The stationarity rate of projected stochastic subgradient on robust SAIL, measured.

    One `projected_subgradient_path` of T_max = ``num_steps`` steps per key; ‖∇M_λ(θ_k)‖² at
    every iterate (`moreau_gradient_norms`, with λ and τ̂ of `moreau_parameter` at ``points``);
    the `stationarity_curves` at each horizon T; and the least-squares slopes of their logs in
    log T. The stated rate (Õ(ε⁻²) iterations for E‖∇M_λ‖² ≤ ε) is a slope of −½ up to logs.

    Args:
      keys: (S,) PRNG keys, one run each. problem, rho, radius, step_size, num_samples: as
        `projected_subgradient_update`. num_steps: T_max. points: (M, d) points of Θ for τ̂
        (e.g. `ball_points`). horizons: integers in [1, T_max] (default 8, 16, …, the powers
        of two up to T_max). tol: tolerance of the inner prox solver.
    Returns: a `StationarityRate`.

    References: Li, Gaur & Aggarwal, arXiv 2602.20457 (Õ(ε⁻²)); Davis & Drusvyatskiy,
      arXiv 1803.06523 (the Moreau envelope as stationarity measure); ``theory/robust_sail.md``
      §9.
    """
    if horizons is None:
        horizons = 2 ** np.arange(3, int(np.log2(num_steps)) + 1)
    lam, tau = moreau_parameter(problem, rho, points)
    paths = jax.vmap(
        lambda k: projected_subgradient_path(
            k, problem, rho, radius, step_size, num_steps, num_samples
        )
    )(keys)
    sq = moreau_gradient_norms(paths, problem, rho, lam, radius, tol=tol)
    min_curve, mean_curve = stationarity_curves(np.asarray(sq), horizons)
    min_slope, min_intercept = loglog_slope(horizons, min_curve)
    mean_slope, _ = loglog_slope(horizons, mean_curve)
    return StationarityRate(
        np.asarray(horizons), min_curve, mean_curve, min_slope, min_intercept, mean_slope, lam, tau
    )

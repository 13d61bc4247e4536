"""Score-function estimator, projected updates, prox solver and Moreau envelope (jaxpref.robust)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_robust_objective import random_problem

from jaxpref import robust


@pytest.fixture(scope="module")
def problem():
    return random_problem(11, n=2, k=3, extreme=True)


def enumerated_estimator_mean(theta, problem, rho, baseline=0.0):
    """E_{x, y, y' ~ π_θ} ĝ by exact enumeration of the estimator's law."""
    n, k, _ = problem.phi.shape
    pi = jax.nn.softmax(problem.phi @ theta, axis=-1)
    total = jnp.zeros_like(theta)
    for i in range(n):
        for y in range(k):
            for yp in range(k):
                g = robust.pair_gradient_estimate(theta, problem, rho, i, y, yp, baseline)
                total = total + problem.weights[i] * pi[i, y] * pi[i, yp] * g
    return total


@pytest.mark.parametrize("rho,baseline", [(0.0, 0.0), (0.3, 0.0), (0.3, 0.7)])
def test_estimator_mean_equals_exact_gradient_by_enumeration(problem, rho, baseline):
    theta = jnp.array([0.6, -0.9])
    exact = jax.grad(robust.robust_sail_objective)(theta, problem, rho)
    np.testing.assert_allclose(
        enumerated_estimator_mean(theta, problem, rho, baseline), exact, rtol=1e-10, atol=1e-12
    )


def test_estimator_monte_carlo_mean_within_standard_errors(problem):
    theta, rho, m = jnp.array([0.6, -0.9]), 0.3, 40000
    s = robust.sample_pairs(jax.random.key(3), theta, problem, m)
    grads = jax.vmap(robust.pair_gradient_estimate, in_axes=(None, None, None, 0, 0, 0))(
        theta, problem, rho, s.context, s.first, s.second
    )
    exact = jax.grad(robust.robust_sail_objective)(theta, problem, rho)
    se = jnp.std(grads, axis=0) / np.sqrt(m)
    assert np.all(np.abs(np.mean(grads, 0) - exact) < 5 * se)
    batched = robust.robust_sail_gradient_estimate(jax.random.key(3), theta, problem, rho, m)
    np.testing.assert_allclose(batched, jnp.mean(grads, 0), rtol=1e-10)


def test_project_ball():
    np.testing.assert_allclose(robust.project_ball(jnp.array([3.0, 4.0]), 1.0), [0.6, 0.8])
    np.testing.assert_allclose(robust.project_ball(jnp.array([0.3, 0.4]), 1.0), [0.3, 0.4])
    np.testing.assert_allclose(robust.project_ball(jnp.zeros(2), 1.0), [0.0, 0.0])


def test_projected_subgradient_scan_equals_loop_and_stays_in_ball(problem):
    radius = 0.5
    update = functools.partial(
        robust.projected_subgradient_update,
        problem=problem,
        rho=0.2,
        radius=radius,
        step_size=1.0,
        num_samples=4,
    )
    s0 = robust.projected_subgradient_init(jnp.array([2.0, 2.0]), jax.random.key(0), radius)
    s_loop = s0
    for _ in range(20):
        s_loop = update(s_loop)
    s_scan, path = jax.lax.scan(lambda s, _: (update(s), s.theta), s0, None, length=20)
    np.testing.assert_allclose(s_scan.theta, s_loop.theta, rtol=1e-12)
    assert int(s_scan.step) == 20
    assert float(jnp.max(jnp.linalg.norm(path, axis=-1))) <= radius + 1e-12


def grid_prox(theta, problem, rho, lam, radius, num=401):
    """prox_{λφ}(θ) by exhaustive search over a grid of the disc (d = 2), exact nonsmooth F."""
    g = np.linspace(-radius, radius, num)
    pts = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    pts = jnp.asarray(pts[np.linalg.norm(pts, axis=-1) <= radius])
    vals = jax.vmap(robust.expectation, in_axes=(0, None, None))(pts, problem, rho)
    vals = vals + jnp.sum((pts - theta[None]) ** 2, -1) / (2 * lam)
    return pts[jnp.argmin(vals)], 2 * radius / (num - 1)


@pytest.mark.parametrize("theta,radius", [([0.5, -0.4], 3.0), ([2.5, 1.5], 1.0)])
def test_prox_matches_grid_search(problem, theta, radius):
    theta, rho, lam = jnp.asarray(theta), 0.3, 0.5
    res = robust.moreau_envelope(
        theta, problem, rho, lam, radius, delta=1e-4, tol=1e-9, max_iters=20000
    )
    assert float(res.grad_map_norm) <= 1e-9
    want, spacing = grid_prox(theta, problem, rho, lam, radius)
    assert float(jnp.linalg.norm(res.prox - want)) <= 2 * spacing
    np.testing.assert_allclose(res.gradient, (theta - res.prox) / lam, rtol=1e-12)


def test_moreau_gradient_matches_finite_differences_of_envelope(problem):
    theta, rho, lam, radius, eps = jnp.array([0.4, 0.7]), 0.3, 0.4, 3.0, 1e-4
    env = functools.partial(
        robust.moreau_envelope,
        problem=problem,
        rho=rho,
        lam=lam,
        radius=radius,
        delta=1e-6,
        tol=1e-11,
        max_iters=50000,
    )
    grad = env(theta).gradient
    fd = [(env(theta + eps * e).value - env(theta - eps * e).value) / (2 * eps) for e in jnp.eye(2)]
    np.testing.assert_allclose(fd, grad, rtol=1e-3, atol=1e-5)


def test_envelope_bounds_and_smooth_case(problem):
    theta, lam = jnp.array([0.4, 0.7]), 0.4
    res = robust.moreau_envelope(theta, problem, 0.0, lam, 5.0, tol=1e-10, max_iters=20000)
    f_theta = robust.sail_objective(theta, problem)
    assert float(res.value) <= float(f_theta) + 1e-12  # u = θ is feasible
    # smooth interior case: the prox equation θ − u = λ∇F(u) holds
    np.testing.assert_allclose(
        res.gradient, jax.grad(robust.sail_objective)(res.prox, problem), rtol=1e-6, atol=1e-8
    )


def test_proximal_point_decreases_objective(problem):
    rho, lam, radius = 0.3, 0.5, 3.0
    state = robust.proximal_point_init(jnp.array([2.0, -2.0]), radius)
    values = [float(robust.robust_sail_objective(state.theta, problem, rho))]
    for _ in range(5):
        state = robust.proximal_point_update(state, problem, rho, lam, radius, delta=1e-5)
        values.append(float(robust.robust_sail_objective(state.theta, problem, rho)))
    assert np.all(np.diff(values) <= 1e-6)
    assert values[-1] < values[0] - 1e-3


def test_float32_paths_are_finite_and_keep_dtype():
    p32 = random_problem(12, dtype=np.float32)
    theta = jnp.array([0.3, -0.2], jnp.float32)
    g = robust.robust_sail_gradient_estimate(jax.random.key(0), theta, p32, 0.2, 8)
    res = robust.moreau_envelope(theta, p32, 0.2, 0.5, 2.0, tol=1e-4)
    assert g.dtype == jnp.float32 and res.gradient.dtype == jnp.float32
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(res.gradient))


def test_bad_input(problem):
    theta = jnp.zeros(2)
    with pytest.raises(ValueError, match="radius"):
        robust.moreau_envelope(theta, problem, 0.1, 0.5, 0.0)
    with pytest.raises(ValueError, match="radius"):
        robust.projected_subgradient_init(theta, jax.random.key(0), -1.0)
    with pytest.raises(ValueError, match="lam"):
        robust.moreau_envelope(theta, problem, 0.1, -0.5, 1.0)
    with pytest.raises(ValueError, match="rho"):
        robust.robust_sail_gradient_estimate(jax.random.key(0), theta, problem, -0.1)
    with pytest.raises(ValueError, match="rho"):
        robust.moreau_envelope(theta, problem, -0.1, 0.5, 1.0)
    with pytest.raises(ValueError, match="num_samples"):
        robust.robust_sail_gradient_estimate(jax.random.key(0), theta, problem, 0.1, 0)
    with pytest.raises(ValueError, match="theta0"):
        robust.proximal_point_init(jnp.array([jnp.nan, 0.0]), 1.0)


def test_proximal_point_scans_and_jits_whole(problem):
    rho, lam, radius = 0.3, 0.5, 3.0
    update = functools.partial(
        robust.proximal_point_update, problem=problem, rho=rho, lam=lam, radius=radius, delta=1e-5
    )
    s0 = robust.proximal_point_init(jnp.array([2.0, -2.0]), radius)
    s_scan, _ = jax.jit(lambda s: jax.lax.scan(lambda c, _: (update(c), None), s, None, length=3))(
        s0
    )
    s_loop = s0
    for _ in range(3):
        s_loop = update(s_loop)
    np.testing.assert_allclose(s_scan.theta, s_loop.theta, rtol=1e-9, atol=1e-12)
    assert int(s_scan.step) == 3


def test_projected_subgradient_path_is_the_loop_of_updates(problem):
    """The scanned path equals calling `projected_subgradient_update` step by step."""
    key, radius, eta = jax.random.key(3), 1.5, 0.8
    path = robust.projected_subgradient_path(key, problem, 0.2, radius, eta, 6, num_samples=4)
    state = robust.projected_subgradient_init(jnp.zeros(2), key, radius)
    for k in range(6):
        state = robust.projected_subgradient_update(state, problem, 0.2, radius, eta, 4)
        np.testing.assert_allclose(path[k], state.theta, rtol=1e-12, atol=1e-14)
        assert float(jnp.linalg.norm(path[k])) <= radius + 1e-12
    with pytest.raises(ValueError, match="num_steps"):
        robust.projected_subgradient_path(key, problem, 0.2, radius, eta, 0)


def test_stationarity_curves_match_a_loop_over_runs_and_prefixes():
    rng = np.random.default_rng(4)
    g = rng.exponential(size=(3, 40)) / np.arange(1, 41)  # decaying, non-monotone
    horizons = np.array([1, 2, 8, 17, 40])
    min_curve, mean_curve = robust.stationarity_curves(g, horizons)
    for i, t in enumerate(horizons):
        best = [min(float(x) for x in run[:t]) for run in g]
        total = sum(float(x) for run in g for x in run[:t])
        assert min_curve[i] == pytest.approx(sum(best) / len(best), rel=1e-13)
        assert mean_curve[i] == pytest.approx(total / (len(g) * t), rel=1e-13)
    assert np.all(min_curve <= mean_curve) and np.all(np.diff(min_curve) <= 0)
    one_min, one_mean = robust.stationarity_curves(g[1], horizons)  # one run, shape (T,)
    np.testing.assert_array_equal(one_min, robust.stationarity_curves(g[1:2], horizons)[0])
    assert one_mean[0] == g[1, 0]
    for bad, match in (
        ((g, np.array([0, 3])), "horizons"),
        ((g, np.array([41])), "horizons"),
        ((g, np.array([2.0])), "horizons"),
        ((-g, horizons), "sq_norms"),
        ((np.zeros((2, 2, 2)), horizons), "sq_norms"),
    ):
        with pytest.raises(ValueError, match=match):
            robust.stationarity_curves(*bad)


def test_ball_points_follow_their_law():
    """Inside Θ; (‖θ‖/B)² uniform on [0, 1) and directions uniform on the sphere (KS against
    the uniform CDF, the mean direction near 0) — checked on 4000 draws in d = 5."""
    num, d, radius = 4000, 5, 2.5
    pts = np.asarray(robust.ball_points(jax.random.key(0), num, d, radius, jnp.float64))
    assert pts.shape == (num, d) and pts.dtype == np.float64
    norms = np.linalg.norm(pts, axis=1)
    assert np.all(norms <= radius * (1 + 1e-12))
    u = np.sort((norms / radius) ** 2)
    grid = np.arange(1, num + 1) / num
    assert max(np.max(grid - u), np.max(u - grid + 1 / num)) < 1.95 / np.sqrt(num)  # KS, 1e-3
    mean_dir = (pts / norms[:, None]).mean(0)  # each coordinate has variance 1/(d·num)
    assert np.all(np.abs(mean_dir) < 4.0 / np.sqrt(d * num))
    assert robust.ball_points(jax.random.key(0), 2, 2, 1.0, jnp.float32).dtype == jnp.float32
    for bad, match in ((dict(num=0), "num"), (dict(dim=0), "dim"), (dict(radius=0.0), "radius")):
        with pytest.raises(ValueError, match=match):
            robust.ball_points(jax.random.key(0), **(dict(num=2, dim=2, radius=1.0) | bad))


def test_moreau_gradient_norms_of_stacked_paths_equal_each_path(problem):
    rng = np.random.default_rng(2)
    paths = jnp.asarray(rng.normal(size=(2, 3, 2)))
    kw = dict(problem=problem, rho=0.2, lam=0.4, radius=3.0, tol=1e-8, max_iters=2000)
    stacked = robust.moreau_gradient_norms(paths, **kw)
    assert stacked.shape == (2, 3)
    for s in range(2):
        for t in range(3):
            g = robust.moreau_envelope(paths[s, t], **kw).gradient
            np.testing.assert_allclose(stacked[s, t], float(g @ g), rtol=1e-10)


def test_fit_robust_sail_is_the_suffix_average_of_the_updates(problem):
    """θ̄ = the mean of θ_{⌊T/2⌋+1..T}, the iterates of the update called step by step (odd T:
    the last ⌈T/2⌉ of them), inside Θ."""
    key, radius, eta, rho, num_steps = jax.random.key(5), 1.5, 0.8, 0.2, 7
    state = robust.projected_subgradient_init(jnp.zeros(2), key, radius)
    iterates = []
    for _ in range(num_steps):
        state = robust.projected_subgradient_update(state, problem, rho, radius, eta, 4)
        iterates.append(np.asarray(state.theta))
    want = np.mean(iterates[num_steps // 2 :], axis=0)  # the last ⌈T/2⌉ iterates
    assert len(iterates[num_steps // 2 :]) == -(-num_steps // 2)
    got = robust.fit_robust_sail(key, problem, rho, radius, eta, num_steps, num_samples=4)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    assert float(jnp.linalg.norm(got)) <= radius + 1e-12


def test_subgradient_stationarity_against_envelopes_and_fits_by_hand(problem):
    """Each field from the primitives by hand: per-key paths, ‖∇M_λ‖² of their iterates
    (`moreau_gradient_norms`, tested against `moreau_envelope` above), NumPy running minima /
    prefix means, `np.polyfit` on the logs; the default horizons are the powers of two from 8
    up to T."""
    keys = jax.random.split(jax.random.key(2), 2)
    rho, radius, eta, steps = 0.2, 2.0, 0.5, 16
    pts = robust.ball_points(jax.random.key(7), 8, 2, radius, problem.phi.dtype)
    got = robust.subgradient_stationarity(
        keys, problem, rho, radius, eta, steps, 2, points=pts, tol=1e-8
    )
    lam, tau = robust.moreau_parameter(problem, rho, pts)
    assert (got.lam, got.tau) == (lam, tau)
    np.testing.assert_array_equal(got.horizons, [8, 16])
    paths = [
        robust.projected_subgradient_path(k, problem, rho, radius, eta, steps, 2) for k in keys
    ]
    sq = np.asarray(
        robust.moreau_gradient_norms(jnp.stack(paths), problem, rho, lam, radius, tol=1e-8)
    )
    want_min = [np.mean([sq[s, :t].min() for s in range(2)]) for t in (8, 16)]
    want_mean = [sq[:, :t].mean() for t in (8, 16)]
    np.testing.assert_allclose(got.min_curve, want_min, rtol=1e-8)
    np.testing.assert_allclose(got.mean_curve, want_mean, rtol=1e-8)
    slope, intercept = np.polyfit(np.log([8.0, 16.0]), np.log(want_min), 1)
    assert got.min_slope == pytest.approx(slope, rel=1e-6)
    assert got.min_intercept == pytest.approx(intercept, rel=1e-6)
    mean_slope = np.log(want_mean[1] / want_mean[0]) / np.log(2.0)  # two points: exact
    assert got.mean_slope == pytest.approx(mean_slope, rel=1e-6)
    few = robust.subgradient_stationarity(
        keys,
        problem,
        rho,
        radius,
        eta,
        steps,
        2,
        points=pts,
        horizons=np.array([2, 5, 16]),
        tol=1e-8,
    )
    np.testing.assert_array_equal(few.horizons, [2, 5, 16])
    np.testing.assert_allclose(few.min_curve[-1], want_min[-1], rtol=1e-8)

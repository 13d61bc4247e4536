"""fit_dpo_mle against an independent optimiser; Lemma 1 against autodiff; subsets; errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

from jaxpref.losses import dpo_hessian, dpo_loss, fit_dpo_mle
from jaxpref.losses.mle import dpo_mle_newton, logistic_newton_step


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(0)
    N, d = 300, 4
    phi = rng.normal(size=(N, d)) / 2
    theta = rng.normal(size=d)
    b = rng.normal(size=N) * 0.3
    beta = 2.0
    s = (rng.random(N) < 1 / (1 + np.exp(-beta * (phi @ theta - b)))).astype(float)
    return phi, s, b, beta


def _objective_np(theta, phi, s, b, beta, gamma, w):
    h = beta * (phi @ theta - b)
    return (
        np.sum(w * (np.logaddexp(0, -h) * s + np.logaddexp(0, h) * (1 - s)))
        + gamma / 2 * theta @ theta
    )


def test_matches_independent_optimiser(pool):
    phi, s, b, beta = pool
    res = fit_dpo_mle(phi, s, beta=beta, gamma=0.5, ref_logratio=b)
    ref = minimize(
        _objective_np,
        np.zeros(4),
        args=(phi, s, b, beta, 0.5, 1.0),
        method="BFGS",
        options={"gtol": 1e-10},
    )
    np.testing.assert_allclose(res.theta, ref.x, atol=1e-6)
    assert float(res.grad_norm) < 1e-9
    assert int(res.num_iters) < 20


def test_lemma1_hessian_equals_autodiff(pool):
    phi, s, b, beta = pool
    res = fit_dpo_mle(phi, s, beta=beta, gamma=0.5, ref_logratio=b)

    def loss(theta):  # the DPO loss of the pairs, through dpo_loss on log-linear log-ratios
        h = phi @ theta - b
        chosen = jnp.where(s == 1, h, -h)
        z = jnp.zeros_like(h)
        return jnp.sum(dpo_loss(chosen, z, z, z, beta=beta))

    np.testing.assert_allclose(res.hessian, jax.hessian(loss)(res.theta), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jax.grad(loss)(res.theta) + 0.5 * res.theta, 0, atol=1e-9)


def test_subset_weights_equal_fitting_the_subset(pool):
    phi, s, b, beta = pool
    mask = np.arange(len(s)) % 3 == 0
    full = fit_dpo_mle(phi, s, beta=beta, gamma=1.0, ref_logratio=b, weights=mask.astype(float))
    sub = fit_dpo_mle(phi[mask], s[mask], beta=beta, gamma=1.0, ref_logratio=b[mask])
    np.testing.assert_allclose(full.theta, sub.theta, atol=1e-10)
    np.testing.assert_allclose(
        dpo_hessian(full.theta, phi[mask], beta=beta, ref_logratio=b[mask]),
        full.hessian,
        atol=1e-10,
    )


def test_empty_subset_gives_zero_and_float32_path(pool):
    phi, s, b, beta = pool
    empty = fit_dpo_mle(phi, s, weights=np.zeros(len(s)))
    np.testing.assert_allclose(empty.theta, 0.0)
    r64 = fit_dpo_mle(phi, s, beta=beta, ref_logratio=b)
    r32 = fit_dpo_mle(
        phi.astype(np.float32), s.astype(np.float32), beta=beta, ref_logratio=b.astype(np.float32)
    )
    assert r32.theta.dtype == jnp.float32
    np.testing.assert_allclose(r32.theta, r64.theta, rtol=1e-4, atol=1e-5)


def test_separable_data_converges_with_ridge():
    phi = np.array([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0]])
    res = fit_dpo_mle(phi, np.array([1.0, 1.0, 0.0]), gamma=1e-3)
    assert np.all(np.isfinite(res.theta)) and float(res.grad_norm) < 1e-8


def test_bad_input_errors(pool, library_checks_only):
    phi, s, b, _ = pool
    with pytest.raises(ValueError, match="labels: expected shape"):
        fit_dpo_mle(phi, s[:-1])
    with pytest.raises(ValueError, match="phi_diff.*non-finite"):
        fit_dpo_mle(np.where(np.eye(*phi.shape) > 0, np.inf, phi), s)
    with pytest.raises(ValueError, match="labels.*non-finite"):
        fit_dpo_mle(phi, np.where(np.arange(len(s)) == 0, np.nan, s))
    with pytest.raises(ValueError, match="gamma"):
        fit_dpo_mle(phi, s, gamma=0.0)
    with pytest.raises(ValueError, match="beta"):
        fit_dpo_mle(phi, s, beta=-1.0)
    with pytest.raises(ValueError, match="labels"):
        fit_dpo_mle(phi, s * 2)


def test_newton_solver_soft_labels_weights_against_bfgs(pool):
    """The one Newton solver (``dpo_mle_newton``) on soft labels and non-uniform weights vs.
    SciPy's BFGS on the same objective in float64; stops on its decrement, not the cap."""
    phi, _, b, beta = pool
    rng = np.random.default_rng(1)
    s, w = rng.random(len(b)), rng.random(len(b)) * 2
    res = dpo_mle_newton(phi, s, b, w, beta, 0.3, 50)
    ref = minimize(
        _objective_np, np.zeros(4), args=(phi, s, b, beta, 0.3, w), method="BFGS",
        options={"gtol": 1e-10},
    )  # fmt: skip
    np.testing.assert_allclose(res.theta, ref.x, atol=1e-6)
    assert float(res.grad_norm) < 1e-9 and 2 <= int(res.num_iters) < 15
    # warm-started at the optimum: one step, and nothing moves
    warm = dpo_mle_newton(phi, s, b, w, beta, 0.3, 50, res.theta)
    assert int(warm.num_iters) == 1
    np.testing.assert_allclose(warm.theta, res.theta, atol=1e-12)
    # a loose tolerance stops earlier, with an objective gap below it
    loose = dpo_mle_newton(phi, s, b, w, beta, 0.3, 50, None, 1e-3)
    f_star = _objective_np(ref.x, phi, s, b, beta, 0.3, w)
    assert int(loose.num_iters) < int(res.num_iters)
    gap = _objective_np(np.asarray(loose.theta), phi, s, b, beta, 0.3, w) - f_star
    assert -1e-9 <= gap <= 1e-3 * max(1.0, f_star)
    # the cap is honoured
    assert int(dpo_mle_newton(phi, s, b, w, beta, 0.3, 1).num_iters) == 1


def test_newton_step_decreases_the_objective_from_far_away(pool):
    """Far from the optimum the full step can overshoot; the damped step never increases F."""
    phi, s, b, beta = pool
    w = np.ones(len(s))
    theta = np.full(4, 40.0)
    for _ in range(5):
        new, decrement, f_new = logistic_newton_step(theta, phi, s, b, w, beta, 0.1)
        f_old = _objective_np(theta, phi, s, b, beta, 0.1, w)
        assert float(decrement) >= 0 and float(f_new) <= f_old
        np.testing.assert_allclose(f_new, _objective_np(np.asarray(new), phi, s, b, beta, 0.1, w))
        theta = np.asarray(new)

"""Logit-error metrics, the Theorem 3 × 4 bound with the corrected c_min, slope fits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpref.metrics import design_constants, logit_error_bound, logit_errors, loglog_slope


def test_logit_errors_hand_case():
    phi = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = jnp.array([0.5, 0.0, 0.0])
    err = logit_errors(jnp.array([1.0, -1.0]), jnp.array([0.0, -0.5]), phi, b, beta=2.0)
    np.testing.assert_allclose(err.max, 2.0)  # |2·(1, -0.5, 0.5)| → 2
    np.testing.assert_allclose(err.mean, (2.0 + 1.0 + 1.0) / 3)
    # signs of φᵀθ − b: θ̂ → (+, −, 0), θ* → (−, −, −): pairs 1 and 3 flip
    np.testing.assert_allclose(err.error_rate, 2 / 3)


def test_probability_error_is_at_most_a_quarter_of_logit_error():
    key1, key2, key3 = jax.random.split(jax.random.key(0), 3)
    phi = jax.random.normal(key1, (500, 3), jnp.float64)
    th, ts = jax.random.normal(key2, (2, 3), jnp.float64)
    b = jax.random.normal(key3, (500,), jnp.float64)
    e = logit_errors(th, ts, phi, b, beta=1.3)
    mu = lambda t: jax.nn.sigmoid(1.3 * (phi @ t - b))
    assert float(jnp.max(jnp.abs(mu(th) - mu(ts)))) <= float(e.max) / 4 + 1e-12


def test_corrected_c_min_is_the_true_minimum_and_the_paper_value_is_not_a_lower_bound():
    for beta in (0.5, 1.0, 2.0, 5.0):
        c_min, c_max = design_constants(beta)
        h = np.linspace(-2 * beta, 2 * beta, 20001)
        w = beta**2 / (1 + np.exp(-h)) / (1 + np.exp(h))
        np.testing.assert_allclose([c_min, c_max], [w.min(), w.max()], rtol=1e-9)
    mu = lambda x: 1 / (1 + np.exp(-x))
    assert mu(-2.0) ** 2 < mu(-4.0)  # the paper's step μ² ≥ μ(−4β) fails at β = 1
    beta = 0.1  # and for small β its c_min = β²μ(−4β) exceeds the true minimum: not a lower bound
    assert beta**2 * mu(-4 * beta) > design_constants(beta)[0]


def test_bound_formula_by_hand():
    beta, gamma, delta, d, n, kappa = 1.0, 0.5, 0.1, 4, 100.0, 2.0
    s = 1 / (1 + np.exp(-2.0))
    c_min, c_max = s * (1 - s), 0.25
    thm3 = np.sqrt(d / c_min * np.log((1 + c_min * n / gamma) / delta)) + 2 * np.sqrt(gamma)
    thm4 = (
        c_max**3
        * np.log(1 + c_max * n / (gamma * d))
        * kappa
        * d
        / (c_min * gamma * np.log(1 + c_max / gamma) * n)
    )
    got = logit_error_bound(n, d, beta=beta, gamma=gamma, delta=delta, kappa=kappa)
    np.testing.assert_allclose(got, np.sqrt(thm4) * thm3, rtol=1e-12)
    grid = 2.0 ** np.arange(8, 30)
    vals = logit_error_bound(grid, d)
    assert np.all(np.diff(vals) < 0)  # Õ(d/√n): decreasing for large n
    slope = loglog_slope(grid[-6:], vals[-6:])[0]
    assert -0.5 < slope < -0.4  # n^(-1/2) up to log factors


def test_loglog_slope_exact_on_power_law():
    x = 2.0 ** np.arange(1, 10)
    slope, intercept = loglog_slope(x, 3.0 * x**-0.5)
    np.testing.assert_allclose([slope, intercept], [-0.5, np.log(3.0)], atol=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="delta"):
        logit_error_bound(10, 3, delta=1.0)
    with pytest.raises(ValueError, match="n: budgets"):
        logit_error_bound(0, 3)
    with pytest.raises(ValueError, match="kappa"):
        logit_error_bound(10, 3, kappa=0.5)
    with pytest.raises(ValueError, match="beta"):
        design_constants(0.0)
    with pytest.raises(ValueError, match="y: log-log"):
        loglog_slope([1, 2], [1, 0])

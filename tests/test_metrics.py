"""Logit-error metrics, the Theorem 3 × 4 bound with the corrected c_min, slope fits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpref.metrics import (
    design_bound,
    design_constants,
    logit_error_bound,
    logit_errors,
    loglog_slope,
)


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


def _paper_theorem_4(n, d, beta, gamma, kappa):
    """Theorem 4 as the paper states it (degree +1 in (c_min, c_max, γ)); not a bound."""
    c_min, c_max = design_constants(beta)
    return (
        c_max**3
        * np.log(1 + c_max * n / (gamma * d))
        * kappa
        * d
        / (c_min * gamma * np.log(1 + c_max / gamma) * n)
    )


def test_c_min_threshold_of_the_paper_value():
    """Guards the docstring/theory claim: the paper's β²μ(−4β) stops being a lower bound below
    β₀ ≈ 0.3047 (root found by brentq, independent of jaxpref), not at 0.27."""
    from scipy.optimize import brentq
    from scipy.special import expit

    gap = lambda b: expit(-4 * b) - expit(2 * b) * expit(-2 * b)  # noqa: E731
    beta0 = brentq(gap, 0.05, 1.0, xtol=1e-14)
    assert beta0 == pytest.approx(0.3047, abs=1e-4)
    for beta in (0.27, 0.3, 0.304):  # below β₀ the paper's value exceeds the true minimum
        assert beta**2 * expit(-4 * beta) > design_constants(beta)[0]
    for beta in (0.306, 0.5, 1.0):
        assert beta**2 * expit(-4 * beta) < design_constants(beta)[0]


def test_design_bound_on_the_counterexample():
    """n = d = N = 1, φ = 1, β = 1, γ = 0.1, κ = 1: Σ_1 = γ + β²μ(1 − μ) with the logit anywhere
    in [−2, 2] (Assumption 2), so φᵀΣ_1⁻¹φ ranges over [1/(γ + c_max), 1/(γ + c_min)] = [2.86,
    4.88] (grid over θ*, b). The paper's Theorem 4 (1.49) is below all of it; ours is above."""
    theta, b = np.meshgrid(np.linspace(-1, 1, 201), np.linspace(-1, 1, 201))
    w = 1 / (1 + np.exp(-(theta - b))) / (1 + np.exp(theta - b))
    actual = 1.0 / (0.1 + w)
    assert actual.min() == pytest.approx(1 / 0.35) and actual.max() == pytest.approx(4.8782, 1e-4)
    assert _paper_theorem_4(1, 1, 1.0, 0.1, 1.0) < actual.min()  # the stated form is no bound
    assert float(design_bound(1, 1, beta=1.0, gamma=0.1, kappa=1.0)) >= actual.max()


@pytest.fixture(scope="module")
def adpo_plus_runs():
    """ADPO+ on pools satisfying Assumptions 2–3 at θ* and at θ̂ (checked), float64: the actual
    max_i φ_iᵀΣ_n⁻¹φ_i (Σ_n from θ*'s weights, NumPy inverse), κ of each prefix (from scratch)
    and the MLE's logit error."""
    from jaxpref import design
    from jaxpref.losses import fit_dpo_mle

    out = []
    with jax.enable_x64(True):
        for seed, (N, d, beta, gamma) in enumerate([(120, 2, 1.0, 0.1), (200, 3, 2.0, 0.5)]):
            rng = np.random.default_rng(seed)
            phi = rng.normal(size=(N, d)) * np.linspace(1.0, 0.3, d)
            phi /= np.maximum(1.0, np.linalg.norm(phi, axis=1, keepdims=True))
            theta_star = np.full(d, 0.5 / np.sqrt(d))
            b = rng.uniform(-1, 1, N)
            h = beta * (phi @ theta_star - b)
            s = (rng.random(N) < 1 / (1 + np.exp(-h))).astype(float)
            budgets = (1, 2, 4, 16, 64, N // 2)
            res = design.adpo_plus(phi, s, b, budgets[-1], beta=beta, gamma=gamma)
            V = np.asarray(design.design_vectors(res.theta_hat, phi, b, beta=beta))
            c_min, c_max = design_constants(beta)
            for theta in (theta_star, np.asarray(res.theta_hat)):  # Assumption 3 holds
                z = beta * (phi @ theta - b)
                wt = beta**2 / (1 + np.exp(-z)) / (1 + np.exp(z))
                assert c_min <= wt.min() and wt.max() <= c_max
            w = beta**2 / (1 + np.exp(-h)) / (1 + np.exp(h))
            idx_all = np.asarray(res.indices)
            H, ratios = gamma * np.eye(d), []  # Assumption 4's κ of each prefix, from scratch
            for i in idx_all:
                sc = np.einsum("nd,de,ne->n", V, np.linalg.inv(H), V)
                ratios.append(sc.max() / sc[i])
                H += np.outer(V[i], V[i])
            for n in budgets:
                idx = idx_all[:n]
                Sigma = gamma * np.eye(d) + (phi[idx] * w[idx, None]).T @ phi[idx]
                actual = np.max(np.einsum("nd,de,ne->n", phi, np.linalg.inv(Sigma), phi))
                sel = np.isin(np.arange(N), idx).astype(float)
                fit = fit_dpo_mle(phi, s, beta=beta, gamma=gamma, ref_logratio=b, weights=sel)
                err = float(logit_errors(fit.theta, theta_star, phi, b, beta=beta).max)
                kappa = float(max(ratios[:n]))
                out.append(
                    dict(n=n, d=d, beta=beta, gamma=gamma, kappa=kappa, actual=actual, err=err)
                )
    return out


def test_design_bound_holds_on_adpo_plus_runs(adpo_plus_runs):
    """Theorem 4 re-derived bounds the actual max φᵀΣ_n⁻¹φ on every prefix; the paper's form is
    exceeded on some of the same runs (so the test can tell the two apart)."""
    paper_fails = 0
    for r in adpo_plus_runs:
        kw = dict(beta=r["beta"], gamma=r["gamma"], kappa=max(r["kappa"], 1.0))
        assert r["actual"] <= float(design_bound(r["n"], r["d"], **kw)), r
        paper_fails += r["actual"] > _paper_theorem_4(r["n"], r["d"], **kw)
    assert paper_fails > 0


def test_logit_error_bound_holds_and_decays(adpo_plus_runs):
    """E(θ̂_n, θ*) ≤ the Theorem 3 × 4 bound (δ = 0.05) on the runs above; Õ(d/√n) at large n."""
    for r in adpo_plus_runs:
        kw = dict(beta=r["beta"], gamma=r["gamma"], kappa=max(r["kappa"], 1.0))
        assert r["err"] <= float(logit_error_bound(r["n"], r["d"], delta=0.05, **kw)), r
    grid = 2.0 ** np.arange(8, 30)
    vals = logit_error_bound(grid, 4)
    assert np.all(np.diff(vals) < 0)  # decreasing for large n
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

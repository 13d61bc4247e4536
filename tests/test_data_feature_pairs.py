"""The §6.1 pools of ADPO (jaxpref.data.feature_pairs) against independent NumPy computations."""

import numpy as np
import pytest

from jaxpref.data import feature_pairs as fp


def _mu(x):
    return 1 / (1 + np.exp(-x))


def test_difference_vectors_are_rescaled_cross_class_differences():
    """Brute force on six points: every φ_i times one common c is a difference of two points of
    different classes, and c is the largest norm among the drawn pairs (max ‖φ_i‖ = 1)."""
    rng = np.random.default_rng(0)
    points, labels = rng.normal(size=(6, 3)), np.array([0, 0, 1, 1, 2, 2])
    phi = fp.difference_vectors(points, labels, 40, np.random.default_rng(1))
    assert phi.shape == (40, 3)
    np.testing.assert_allclose(np.linalg.norm(phi, axis=1).max(), 1.0)
    cross = [points[j] - points[k] for j in range(6) for k in range(6) if labels[j] != labels[k]]
    fits = [
        c
        for c in {float(np.linalg.norm(v)) for v in cross}
        if all(any(np.allclose(c * p, v, atol=1e-12) for v in cross) for p in phi)
    ]
    assert len(fits) == 1


def test_difference_vectors_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="labels: expected shape"):
        fp.difference_vectors(np.ones((4, 2)), np.array([0, 1, 0]), 5, rng)
    with pytest.raises(ValueError, match="labels: need at least 2 classes"):
        fp.difference_vectors(np.ones((4, 2)), np.zeros(4), 5, rng)
    with pytest.raises(ValueError, match="points: every drawn pair"):
        fp.difference_vectors(np.ones((4, 2)), np.array([0, 1, 0, 1]), 5, rng)
    with pytest.raises(ValueError, match="num_pairs"):
        fp.difference_vectors(np.eye(4), np.array([0, 1, 0, 1]), 0, rng)


def _ridge_logistic_newton(phi, s, b, beta, gamma, iters=60):
    """argmin Σ −log σ((2s−1)·β(φθ − b)) + (γ/2)‖θ‖², plain NumPy Newton."""
    theta = np.zeros(phi.shape[1])
    for _ in range(iters):
        m = _mu(beta * (phi @ theta - b))
        grad = -beta * phi.T @ (s - m) + gamma * theta
        hess = beta**2 * (phi.T * (m * (1 - m))) @ phi + gamma * np.eye(phi.shape[1])
        theta -= np.linalg.solve(hess, grad)
    return theta, hess - gamma * np.eye(phi.shape[1])


def test_logged_feedback_pool_follows_the_protocol():
    """θ̄ and Σ̄ recomputed by a NumPy Newton fit; the same generator draws then give the same
    θ₀ and labels; b = φθ₀; θ* is the NumPy minimiser of the DPO objective on all N."""
    rng = np.random.default_rng(3)
    phi = rng.normal(size=(80, 3)) * np.array([1.0, 0.5, 0.2])
    phi /= np.linalg.norm(phi, axis=1).max()
    pool = fp.logged_feedback_pool(phi, np.random.default_rng(9), beta=2.0, gamma=0.3)
    bar, hess = _ridge_logistic_newton(phi, np.ones(80), np.zeros(80), 1.0, 0.3)
    cov = np.linalg.inv(hess + 0.3 * np.eye(3))
    ref_rng = np.random.default_rng(9)
    theta_0 = ref_rng.multivariate_normal(bar, cov)
    labels = (ref_rng.random(80) < _mu(phi @ bar)).astype(float)
    np.testing.assert_allclose(pool.theta_ref, theta_0, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(pool.labels, labels)
    np.testing.assert_allclose(pool.ref_logratio, phi @ pool.theta_ref, rtol=1e-12, atol=1e-14)
    star, _ = _ridge_logistic_newton(phi, labels, pool.ref_logratio, 2.0, 0.3)
    np.testing.assert_allclose(pool.theta_star, star, rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="gamma"):
        fp.logged_feedback_pool(phi, rng, gamma=0.0)
    with pytest.raises(ValueError, match="phi_diff"):
        fp.logged_feedback_pool(phi[0], rng)


def test_class_points_sources():
    """Synthetic: 10 classes × 300 with within-class spread 0.5/k on axis k. Digits: the PCA
    scores' variances are the top eigenvalues of the standardised pixels' covariance (NumPy
    eigh). Digits through the random tanh network: bounded features of the asked width."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits

    pts, lab = fp.class_points("synthetic", 5, np.random.default_rng(0))
    assert pts.shape == (3000, 5) and np.array_equal(np.bincount(lab), np.full(10, 300))
    within = np.concatenate([pts[lab == k] - pts[lab == k].mean(0) for k in range(10)])
    np.testing.assert_allclose(within.std(0), 0.5 / np.arange(1, 6), rtol=0.06)
    pts, lab = fp.class_points("digits", 6, np.random.default_rng(0))
    x = load_digits().data
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    eig = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1][:6]
    np.testing.assert_allclose(np.var(pts, axis=0, ddof=1), eig, rtol=1e-6)
    np.testing.assert_array_equal(lab, load_digits().target)
    pts, _ = fp.class_points("digits_neural", 4, np.random.default_rng(0))
    assert pts.shape == (1797, 4) and np.all(np.abs(pts) <= 1.0) and pts.std() > 0.01
    with pytest.raises(ValueError, match="source: unknown feature source 'cifar'"):
        fp.class_points("cifar", 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="dim"):
        fp.class_points("digits", 65, np.random.default_rng(0))


def test_pair_design_matrix_and_offsets_against_loops():
    """φ_i = (f_w − f_l)P / max‖·‖ and b_i = (log π₀(y_w) − log π₀(y_l)) / max|·|, by loops."""
    rng = np.random.default_rng(4)
    fw, fl, P = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), rng.normal(size=(3, 2))
    rows = [
        [sum((fw[i, e] - fl[i, e]) * P[e, k] for e in range(3)) for k in range(2)] for i in range(5)
    ]
    top = max(sum(v * v for v in r) ** 0.5 for r in rows)
    np.testing.assert_allclose(fp.pair_design_matrix(fw, fl, P), np.array(rows) / top, rtol=1e-12)
    raw = fw - fl
    np.testing.assert_allclose(
        fp.pair_design_matrix(fw, fl), raw / np.linalg.norm(raw, axis=1).max()
    )
    np.testing.assert_allclose(fp.scaled_offsets([-1.0, -2.0], [-3.0, -1.0]), [1.0, -0.5])
    np.testing.assert_allclose(fp.scaled_offsets([-1.0, -2.0], [-3.0, -1.0], "none"), [2.0, -1.0])
    with pytest.raises(ValueError, match="projection: expected 3 rows"):
        fp.pair_design_matrix(fw, fl, P.T)
    with pytest.raises(ValueError, match="features_l: expected shape"):
        fp.pair_design_matrix(fw, fl[:4])
    with pytest.raises(ValueError, match="features: every pair has identical"):
        fp.pair_design_matrix(fw, fw)
    with pytest.raises(ValueError, match="offset_scale: unknown 'sum'"):
        fp.scaled_offsets([0.0], [1.0], "sum")
    with pytest.raises(ValueError, match="logps_l: expected shape"):
        fp.scaled_offsets([0.0, 1.0], [1.0])


def test_gaussian_projection_preserves_squared_norms_on_average():
    P = fp.gaussian_projection(40, 500, seed=3)
    np.testing.assert_array_equal(P, fp.gaussian_projection(40, 500, seed=3))
    x = np.random.default_rng(0).normal(size=(200, 40))
    ratio = (np.linalg.norm(x @ P, axis=1) / np.linalg.norm(x, axis=1)) ** 2
    assert abs(ratio.mean() - 1.0) < 0.03  # E‖xP‖² = ‖x‖²; sd of the mean ≈ 0.0045 here
    with pytest.raises(ValueError, match="dim"):
        fp.gaussian_projection(4, 0)


def test_feature_projection_checks_or_draws_p():
    P = np.ones((4, 3))
    assert fp.feature_projection(4, P) is P and fp.feature_projection(4) is None
    assert fp.feature_projection(4, P, proj_dim=3) is P
    np.testing.assert_array_equal(
        fp.feature_projection(4, proj_dim=6, seed=2), fp.gaussian_projection(4, 6, seed=2)
    )
    with pytest.raises(ValueError, match=r"projection: expected shape \(5, d\).*got \(4, 3\)"):
        fp.feature_projection(5, P)
    with pytest.raises(ValueError, match="projection: has 3 columns but proj_dim is 2"):
        fp.feature_projection(4, P, proj_dim=2)
    with pytest.raises(ValueError, match="width"):
        fp.feature_projection(0)

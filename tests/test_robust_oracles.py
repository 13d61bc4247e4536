"""The robust-SAIL testbed in jaxpref.robust (oracles, offline DPO, true-oracle evaluation,
weak-convexity estimate), each against an independent float64 computation: scalar loops with
the textbook logistic loss, finite differences, the KL-optimal policy."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpref import robust
from jaxpref.policies import loglinear


def _world(seed=0, n=3, k=4, d=3):
    rng = np.random.default_rng(seed)
    phi = rng.normal(size=(n, k, d))
    phi /= np.maximum(np.linalg.norm(phi, axis=-1, keepdims=True), 1.0)
    return jnp.asarray(phi), jnp.asarray(rng.normal(size=d)), jnp.asarray(0.3 * rng.normal(size=d))


def _sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def test_oracles_match_scalar_loops_and_stay_in_the_uncertainty_set():
    phi, theta_star, _ = _world()
    n, k, _ = phi.shape
    r = np.asarray(phi) @ np.asarray(theta_star)
    p_true = np.asarray(robust.btl_preferences(phi, theta_star))
    for rho, shift in itertools.product((0.0, 0.15, 0.4), robust.SHIFTS):
        p_obs = np.asarray(robust.shifted_preferences(phi, theta_star, rho, shift))
        for i, y, z in itertools.product(range(n), range(k), range(k)):
            assert p_true[i, y, z] == pytest.approx(_sigmoid(r[i, y] - r[i, z]), abs=1e-14)
            if shift == "verbosity":
                move = math.tanh(5.0 * (float(phi[i, y, 0]) - float(phi[i, z, 0])))
            else:
                move = float(np.sign(r[i, y] - r[i, z]))
            want = min(1.0, max(0.0, _sigmoid(r[i, y] - r[i, z]) + rho * move))
            assert p_obs[i, y, z] == pytest.approx(want, abs=1e-14)
        assert np.max(np.abs(p_obs - p_true)) <= rho + 1e-15  # P* ∈ U_ρ(P°)
        np.testing.assert_allclose(p_obs + np.swapaxes(p_obs, -1, -2), 1.0, atol=1e-14)


def test_true_oracle_is_the_worst_case_of_the_adversarial_shift():
    """theory §10: for a policy ranking pairs as r* does and no clip binding, the worst case of
    U_ρ(P°) is P* itself (what makes robust SAIL win on the true oracle)."""
    phi, theta_star, theta_ref = _world(1)
    rho = 0.05
    p_obs = robust.shifted_preferences(phi, theta_star, rho, "adversarial")
    ref_logp = jax.vmap(loglinear.log_probs, in_axes=(None, 0))(theta_ref, phi)
    h = jax.vmap(robust.pair_logits, in_axes=(None, 0, 0, None))(
        theta_ref + theta_star, phi, ref_logp, 1.0
    )
    room = (p_obs > rho) & (p_obs < 1 - rho)
    assert bool(jnp.any(room))
    worst = robust.worst_case_preference(h, p_obs, rho)
    p_true = robust.btl_preferences(phi, theta_star)
    np.testing.assert_allclose(worst[room], p_true[room], atol=1e-14)


def test_bad_oracle_arguments_are_refused(library_checks_only):
    phi, theta_star, _ = _world()
    with pytest.raises(ValueError, match="shift"):
        robust.shifted_preferences(phi, theta_star, 0.1, "lengthy")
    with pytest.raises(ValueError, match="rho"):
        robust.shifted_preferences(phi, theta_star, 1.5, "adversarial")
    with pytest.raises(ValueError, match="theta_star"):
        robust.btl_preferences(phi, theta_star[:2])
    with pytest.raises(ValueError, match="verbosity_index"):
        robust.shifted_preferences(phi, theta_star, 0.1, "verbosity", verbosity_index=3)


def _problem(seed=2):
    phi, theta_star, theta_ref = _world(seed)
    pref = robust.shifted_preferences(phi, theta_star, 0.1, "verbosity")
    ref_logp = jax.vmap(loglinear.log_probs, in_axes=(None, 0))(theta_ref, phi)
    weights = jnp.asarray([0.5, 0.3, 0.2])
    return robust.preference_problem(phi, ref_logp, pref, weights=weights, beta=0.7)


def _offline_dpo_loop(theta, prob):
    """Σ_x w_x Σ_{y,y'} π_ref π_ref [−p log σ(h) − (1 − p) log σ(−h)], scalar by scalar."""
    phi, b, p, w = (np.asarray(a) for a in (prob.phi, prob.ref_logp, prob.pref, prob.weights))
    beta, th = float(prob.beta), np.asarray(theta)
    total = 0.0
    for i in range(phi.shape[0]):
        for y, z in itertools.product(range(phi.shape[1]), repeat=2):
            h = beta * ((phi[i, y] - phi[i, z]) @ th - (b[i, y] - b[i, z]))
            ell = -p[i, y, z] * math.log(_sigmoid(h)) - (1 - p[i, y, z]) * math.log(_sigmoid(-h))
            total += w[i] * math.exp(b[i, y]) * math.exp(b[i, z]) * ell
    return total


def test_offline_dpo_objective_matches_a_loop_and_the_fit_minimises_it():
    prob = _problem()
    rng = np.random.default_rng(3)
    for _ in range(3):
        theta = jnp.asarray(rng.normal(size=3))
        got = float(robust.offline_dpo_objective(theta, prob))
        assert got == pytest.approx(_offline_dpo_loop(theta, prob), rel=1e-12)
    theta = robust.fit_offline_dpo(prob, radius=50.0, num_steps=3000)
    best = float(robust.offline_dpo_objective(theta, prob))
    grad = jax.grad(robust.offline_dpo_objective)(theta, prob)
    assert float(jnp.linalg.norm(grad)) < 1e-6  # interior stationary point of a convex loss
    for _ in range(20):  # no nearby point is lower (convexity: a global minimum)
        probe = theta + 0.05 * jnp.asarray(rng.normal(size=3))
        assert _offline_dpo_loop(probe, prob) >= best - 1e-12
    small = robust.fit_offline_dpo(prob, radius=0.1, num_steps=200)
    assert float(jnp.linalg.norm(small)) <= 0.1 + 1e-12  # projected onto Θ
    with pytest.raises(ValueError, match="radius"):
        robust.fit_offline_dpo(prob, radius=0.0, num_steps=10)


def test_true_oracle_metrics_against_loops():
    phi, theta_star, theta_ref = _world(4, n=2, k=3)
    beta = 0.5
    theta = theta_ref + 0.4 * theta_star
    m = robust.true_oracle_metrics(theta, phi, theta_ref, theta_star, beta)
    ph, ts, tr, th = (np.asarray(a) for a in (phi, theta_star, theta_ref, theta))

    def logp(t, i):
        s = ph[i] @ t
        return s - math.log(sum(math.exp(v) for v in s))

    agree, pairs, err = 0, 0, 0.0
    for i in range(ph.shape[0]):
        b = logp(tr, i)
        for y, z in itertools.product(range(ph.shape[1]), repeat=2):
            h = beta * ((ph[i, y] - ph[i, z]) @ th - (b[y] - b[z]))
            true = (ph[i, y] - ph[i, z]) @ ts
            err = max(err, abs(h - true))
            if y != z:
                pairs += 1
                agree += np.sign(h) == np.sign(true)

    def value(t):
        out = 0.0
        for i in range(ph.shape[0]):
            lp, b = logp(t, i), logp(tr, i)
            out += sum(math.exp(lp[y]) * (ph[i, y] @ ts - beta * (lp[y] - b[y])) for y in range(3))
        return out / ph.shape[0]

    assert float(m["accuracy"]) == pytest.approx(agree / pairs)
    assert float(m["max_logit_error"]) == pytest.approx(err, rel=1e-12)
    assert float(m["regret"]) == pytest.approx(value(tr + ts / beta) - value(th), rel=1e-10)
    assert float(m["regret"]) > 0
    opt = robust.true_oracle_metrics(
        theta_ref + theta_star / beta, phi, theta_ref, theta_star, beta
    )
    assert abs(float(opt["regret"])) < 1e-12 and float(opt["max_logit_error"]) < 1e-12


def _fd_hessians(prob, rho, pts, eps=1e-4):
    """Central finite-difference Hessians of the robust objective F at each point (d = 3)."""
    f = lambda t: float(robust.expectation(jnp.asarray(t), prob, rho))  # noqa: E731
    out = []
    for x in np.asarray(pts):
        hess = np.empty((3, 3))
        for a, b in itertools.product(range(3), repeat=2):
            ea, eb = eps * np.eye(3)[a], eps * np.eye(3)[b]
            hess[a, b] = (f(x + ea + eb) - f(x + ea - eb) - f(x - ea + eb) + f(x - ea - eb)) / (
                4 * eps**2
            )
        out.append((hess + hess.T) / 2)
    return out


def test_weak_convexity_estimate_matches_finite_differences():
    prob = _problem(5)
    rho = 0.1
    pts = jnp.asarray(np.random.default_rng(6).normal(size=(4, 3)))
    tau = float(robust.weak_convexity_estimate(prob, rho, pts))
    lows = [np.linalg.eigvalsh(h)[0] for h in _fd_hessians(prob, rho, pts)]
    assert tau == pytest.approx(max(0.0, -min(lows)), abs=1e-5)
    with pytest.raises(ValueError, match="points"):
        robust.weak_convexity_estimate(prob, rho, pts[:, :2])


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_moreau_parameter_makes_every_prox_subproblem_strongly_convex(scale):
    """Guards λ < 1/τ̂: at each point the finite-difference Hessian of F(u) + ‖u − θ‖²/(2λ)
    has eigenvalues ≥ max(τ̂, 1) > 0, where F itself curves down (τ̂ > 0 here: seen 0.25 and
    0.81 for the two feature scales), so a λ ≥ 1/τ̂ could lose the strong convexity."""
    prob = _problem(5)
    prob = prob._replace(phi=scale * prob.phi)
    rho = 0.1
    pts = jnp.asarray(np.random.default_rng(6).normal(size=(4, 3)))
    lam, tau = robust.moreau_parameter(prob, rho, pts)
    hessians = _fd_hessians(prob, rho, pts)
    tau_fd = max(0.0, -min(np.linalg.eigvalsh(h)[0] for h in hessians))
    assert tau == pytest.approx(tau_fd, abs=1e-4) and tau > 0.1
    assert lam <= 0.5 and lam * tau < 1.0
    for h in hessians:
        assert np.linalg.eigvalsh(h + np.eye(3) / lam)[0] >= max(tau, 1.0) - 1e-3


def _ks(u, v):
    """Two-sample Kolmogorov–Smirnov statistic sup |F_u − F_v|."""
    grid = np.sort(np.concatenate([u, v]))
    cdf = lambda w: np.searchsorted(np.sort(w), grid, side="right") / len(w)  # noqa: E731
    return float(np.max(np.abs(cdf(u) - cdf(v))))


def test_verbosity_features_follow_their_law_and_stay_in_the_unit_ball():
    n, k, d = 2000, 4, 3
    with jax.enable_x64(True):
        phi = np.asarray(robust.verbosity_features(jax.random.key(0), n, k, d))
        again = np.asarray(robust.verbosity_features(jax.random.key(0), n, k, d))
    assert phi.shape == (n, k, d) and phi.dtype == np.float64
    np.testing.assert_array_equal(phi, again)
    assert np.all(np.linalg.norm(phi, axis=-1) <= 1.0 + 1e-12) and np.all(phi[..., 0] >= 0)
    # the documented law, drawn with NumPy one vector at a time in float64
    rng = np.random.default_rng(1)
    ref = np.empty((n * k, d))
    for i in range(n * k):
        v = np.concatenate([[rng.uniform()], 0.5 * rng.normal(size=d - 1)])
        norm = math.sqrt(sum(x * x for x in v))
        ref[i] = v / max(norm, 1.0)
    flat = phi.reshape(-1, d)
    # KS two-sample critical value at level 1e-3 for 8000 vs 8000 draws: 1.95·√(2/8000) ≈ 0.031
    for stat in (lambda w: w[:, 0], lambda w: w[:, 1], lambda w: np.linalg.norm(w, axis=1)):
        assert _ks(stat(flat), stat(ref)) < 0.031
    with jax.enable_x64(False):
        assert robust.verbosity_features(jax.random.key(0), 2, 2, 2).dtype == jnp.float32


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_contexts=0), "num_contexts"),
        (dict(num_responses=1.5), "num_responses"),
        (dict(dim=1), "dim"),
        (dict(noise_scale=0.0), "noise_scale"),
        (dict(dtype=jnp.int32), "dtype"),
    ],
)
def test_bad_feature_arguments_are_named(kwargs, match, library_checks_only):
    args = dict(num_contexts=2, num_responses=3, dim=2) | kwargs
    with pytest.raises(ValueError, match=match):
        robust.verbosity_features(jax.random.key(0), **args)


def _normal_cdf(z):
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


@pytest.fixture(scope="module")
def testbed():
    """One world for the testbed tests (d = 401: its θ coordinates are the KS samples)."""
    return robust.verbosity_testbed(jax.random.key(3), 3, 4, 3, 401, reward_scale=2.5)


def test_verbosity_testbed_is_the_documented_world(testbed):
    """θ* of norm B with θ*₀ = 0 (the true reward ignores the verbosity coordinate), θ_ref and
    θ*'s direction of the documented Gaussian laws (one-sample KS against the normal CDF), the
    features of `verbosity_features` on the documented key split, and the optimum θ_ref + θ*/β
    with zero regret on the held-out contexts."""
    tb, d = testbed, 401
    assert tb.phi_train.shape == (3, 3, d) and tb.phi_test.shape == (4, 3, d)
    assert float(tb.theta_star[0]) == 0.0
    assert float(jnp.linalg.norm(tb.theta_star)) == pytest.approx(2.5, rel=1e-12)
    keys = jax.random.split(jax.random.key(3), 4)
    np.testing.assert_array_equal(tb.phi_test, robust.verbosity_features(keys[3], 4, 3, d))
    # KS critical value at level 1e-3 for 400 draws: 1.95/√400 ≈ 0.098
    for sample in (np.asarray(tb.theta_ref) / 0.3, np.asarray(tb.theta_star[1:]) * 20.0 / 2.5):
        s = np.sort(sample)
        cdf = np.array([_normal_cdf(v) for v in s])
        grid = np.arange(1, len(s) + 1) / len(s)
        assert max(np.max(grid - cdf), np.max(cdf - (grid - 1 / len(s)))) < 0.098
    theta_opt = tb.theta_ref + tb.theta_star / 0.7
    opt = robust.true_oracle_metrics(theta_opt, tb.phi_test, tb.theta_ref, tb.theta_star, 0.7)
    assert abs(float(opt["regret"])) < 1e-12 and float(opt["accuracy"]) == 1.0
    with pytest.raises(ValueError, match="num_test_contexts"):
        robust.verbosity_testbed(jax.random.key(0), 3, 0, 3, 3)
    with pytest.raises(ValueError, match="reward_scale"):
        robust.verbosity_testbed(jax.random.key(0), 3, 4, 3, 3, reward_scale=0.0)


def _sail_loop(theta, phi, b, p, beta):
    """Σ_x (1/n) Σ_{y,y'} π_θ(y|x) π_θ(y'|x) ℓ(h; p), ℓ the textbook logistic loss, scalar by
    scalar (p a function of (i, y, z, h))."""
    total, n, k = 0.0, phi.shape[0], phi.shape[1]
    for i in range(n):
        s = phi[i] @ theta
        pi = np.exp(s - max(s)) / sum(math.exp(v - max(s)) for v in s)
        for y, z in itertools.product(range(k), repeat=2):
            h = beta * ((phi[i, y] - phi[i, z]) @ theta - (b[i, y] - b[i, z]))
            q = p(i, y, z, h)
            ell = -q * math.log(_sigmoid(h)) - (1 - q) * math.log(_sigmoid(-h))
            total += pi[y] * pi[z] * ell / n
    return total


def test_testbed_problem_and_metrics_against_loops(testbed):
    """The problem's reference log-probs are log π_{θ_ref} (a log-softmax by hand); the true
    SAIL loss is the loop under P*; the robust objective is the loop with each pair's p at the
    worse end of [P° − ρ, P° + ρ] ∩ [0, 1] (ℓ is affine in p: no closed form used); and the
    adversarial shift puts P* in U_ρ(P°), so the true loss is at most the robust one."""
    tb = testbed
    rho, beta = 0.2, 0.7
    p_obs = robust.shifted_preferences(tb.phi_train, tb.theta_star, rho, "adversarial")
    prob = robust.testbed_problem(tb, p_obs, beta=beta)
    phi, ref = np.asarray(tb.phi_train), np.asarray(tb.theta_ref)
    for i in range(3):
        s = phi[i] @ ref
        want = s - math.log(sum(math.exp(v) for v in s))
        np.testing.assert_allclose(np.asarray(prob.ref_logp[i]), want, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(prob.pref, p_obs)
    np.testing.assert_allclose(prob.weights, 1 / 3)
    theta = tb.theta_ref + 0.3 * tb.theta_star
    m = robust.testbed_metrics(theta, tb, prob, rho)
    b, po, th = np.asarray(prob.ref_logp), np.asarray(p_obs), np.asarray(theta)
    r = phi @ np.asarray(tb.theta_star)
    true = _sail_loop(th, phi, b, lambda i, y, z, h: _sigmoid(r[i, y] - r[i, z]), beta)

    def worse_end(i, y, z, h):
        ends = (max(0.0, po[i, y, z] - rho), min(1.0, po[i, y, z] + rho))
        return max(
            ends, key=lambda q: -q * math.log(_sigmoid(h)) - (1 - q) * math.log(_sigmoid(-h))
        )

    worst = _sail_loop(th, phi, b, worse_end, beta)
    assert float(m["true_sail_loss"]) == pytest.approx(true, rel=1e-12)
    assert float(m["robust_objective"]) == pytest.approx(worst, rel=1e-12)
    assert true <= worst
    held_out = robust.true_oracle_metrics(theta, tb.phi_test, tb.theta_ref, tb.theta_star, beta)
    assert {k: float(m[k]) for k in held_out} == {k: float(v) for k, v in held_out.items()}


def test_bt_set_coverage_against_a_loop():
    """The fraction of pairs with |σ(Δs*) − σ(Δs°)| ≤ ρ, counted pair by pair in float64 with
    math.exp; monotone in ρ, 1 at ρ = 1 and for identical scores at ρ = 0."""
    rng = np.random.default_rng(7)
    true, obs = rng.normal(size=(50, 2)), rng.normal(size=(50, 2))
    rhos = [0.0, 0.05, 0.2, 0.5, 1.0]
    got = robust.bt_set_coverage(true, obs, rhos)
    for rho, frac in zip(rhos, got):
        inside = sum(
            abs(_sigmoid(a[0] - a[1]) - _sigmoid(b[0] - b[1])) <= rho for a, b in zip(true, obs)
        )
        assert frac == inside / 50
    assert got == sorted(got) and got[-1] == 1.0 and 0.0 < got[2] < 1.0
    assert robust.bt_set_coverage(true, true, [0.0]) == [1.0]
    with pytest.raises(ValueError, match="true_scores: expected shape"):
        robust.bt_set_coverage(true[:, :1], obs[:, :1], [0.1])
    with pytest.raises(ValueError, match="shape mismatch"):
        robust.bt_set_coverage(true, obs[:10], [0.1])
    with pytest.raises(ValueError, match="rhos"):
        robust.bt_set_coverage(true, obs, [1.5])

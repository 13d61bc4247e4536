"""Pair loss, worst-case loss, SAIL and robust-SAIL objectives (jaxpref.robust.objective)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxpref import robust


def random_problem(seed, n=2, k=3, d=2, dtype=np.float64, extreme=False, beta=0.8):
    """Random problem, antisymmetric oracle; ``extreme`` puts P° near 0/1 (clipping binds)."""
    rng = np.random.default_rng(seed)
    phi = rng.normal(size=(n, k, d))
    ref = rng.normal(size=(n, k))
    size = (n, k, k)
    upper = rng.choice([0.02, 0.97, 0.5], size=size) if extreme else rng.uniform(size=size)
    pref = np.full((n, k, k), 0.5)
    iu = np.triu_indices(k, 1)
    for i in range(n):
        pref[i][iu] = upper[i][iu]
        pref[i][(iu[1], iu[0])] = 1 - upper[i][iu]
    weights = rng.uniform(0.5, 1.5, size=n)
    return robust.preference_problem(
        *(np.asarray(a, dtype) for a in (phi, ref, pref, weights)), beta=beta
    )


def brute_force_sup(theta, problem, rho, antisymmetric=False):
    """max over vertices of the box U_ρ(P°) (∩ [0, 1]) of L_SAIL(θ; P), by enumeration."""
    lo = np.clip(np.asarray(problem.pref) - rho, 0, 1)
    hi = np.clip(np.asarray(problem.pref) + rho, 0, 1)
    n, k, _ = lo.shape
    if antisymmetric:  # P(y'≻y) = 1 − P(y≻y'): one free entry per unordered pair
        slots = [(i, a, b) for i in range(n) for a in range(k) for b in range(k) if a < b]
    else:
        slots = [(i, a, b) for i in range(n) for a in range(k) for b in range(k)]
    prefs = []
    for choice in itertools.product((0, 1), repeat=len(slots)):
        p = np.asarray(problem.pref).copy()
        for (i, a, b), c in zip(slots, choice):
            p[i, a, b] = hi[i, a, b] if c else lo[i, a, b]
            if antisymmetric:
                p[i, b, a] = 1 - p[i, a, b]
        prefs.append(p)
    values = jax.vmap(lambda p: robust.expectation(theta, problem._replace(pref=p), 0.0))(
        jnp.asarray(np.stack(prefs))
    )
    return float(jnp.max(values))


# ----------------------------------------------------------------------------- pair level


def test_pair_loss_hand_values():
    assert float(robust.pair_loss(jnp.array(0.0), 0.3)) == pytest.approx(np.log(2))
    assert float(robust.pair_loss(jnp.array(2.0), 1.0)) == pytest.approx(np.log1p(np.exp(-2)))
    # p = 0.25, h = 1: −0.25 log σ(1) − 0.75 log σ(−1)
    want = -0.25 * np.log(1 / (1 + np.exp(-1))) - 0.75 * np.log(1 / (1 + np.exp(1)))
    assert float(robust.pair_loss(jnp.array(1.0), 0.25)) == pytest.approx(want)


def test_worst_case_pair_loss_hand_values_with_clipping():
    wc = robust.worst_case_pair_loss
    assert float(wc(jnp.array(2.0), 0.9, 0.1)) == pytest.approx(float(robust.pair_loss(2.0, 0.8)))
    assert float(wc(jnp.array(2.0), 0.05, 0.1)) == pytest.approx(np.log1p(np.exp(2.0)))  # p* = 0
    assert float(wc(jnp.array(-1.0), 0.95, 0.1)) == pytest.approx(np.log1p(np.exp(1.0)))  # p* = 1
    assert float(robust.worst_case_preference(jnp.array(-1.0), 0.95, 0.1)) == 1.0
    assert float(robust.sensitivity_excess(jnp.array(-3.0), 0.2, 0.1)) == pytest.approx(0.3)


def test_worst_case_pair_loss_matches_grid_maximisation():
    rng = np.random.default_rng(1)
    h, p0, rho = rng.normal(0, 3, 200), rng.uniform(size=200), rng.uniform(0, 0.6, 200)
    grid = np.linspace(0, 1, 4001)[:, None]
    inside = (grid >= p0 - rho - 1e-12) & (grid <= p0 + rho + 1e-12)
    grid_vals = np.where(inside, np.log1p(np.exp(h)) - grid * h, -np.inf)
    want = np.max(
        np.concatenate(
            [grid_vals, [np.log1p(np.exp(h)) - np.clip(p0 + s * rho, 0, 1) * h for s in (-1, 1)]]
        ),
        axis=0,
    )
    got = robust.worst_case_pair_loss(jnp.asarray(h), jnp.asarray(p0), jnp.asarray(rho))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- decomposition


@pytest.mark.parametrize(
    "seed,n,k,rho,extreme",
    [
        (0, 1, 3, 0.05, False),
        (1, 1, 3, 0.3, True),
        (2, 2, 2, 0.1, True),
        (3, 2, 2, 0.45, False),
    ],
)
def test_decomposition_equals_brute_force_sup_over_box(seed, n, k, rho, extreme):
    problem = random_problem(seed, n=n, k=k, extreme=extreme)
    theta = jnp.asarray(np.random.default_rng(seed + 10).normal(size=2))
    closed = float(robust.robust_sail_objective(theta, problem, rho))
    decomposed = float(
        robust.sail_objective(theta, problem) + robust.robust_penalty(theta, problem, rho)
    )
    assert closed == pytest.approx(brute_force_sup(theta, problem, rho), rel=1e-12)
    assert closed == pytest.approx(
        brute_force_sup(theta, problem, rho, antisymmetric=True), rel=1e-12
    )
    assert decomposed == pytest.approx(closed, rel=1e-12)


def test_random_oracles_in_box_never_exceed_robust_objective():
    problem = random_problem(4, extreme=True)
    theta, rho = jnp.array([0.7, -1.1]), 0.2
    rng = np.random.default_rng(0)
    lo = np.clip(np.asarray(problem.pref) - rho, 0, 1)
    hi = np.clip(np.asarray(problem.pref) + rho, 0, 1)
    prefs = jnp.asarray(rng.uniform(lo, hi, size=(500,) + lo.shape))
    vals = jax.vmap(lambda p: robust.sail_objective(theta, problem._replace(pref=p)))(prefs)
    assert float(jnp.max(vals)) <= float(robust.robust_sail_objective(theta, problem, rho)) + 1e-12


def test_unclipped_penalty_is_rho_times_expected_abs_logit():
    problem = random_problem(5)._replace(pref=jnp.full((2, 3, 3), 0.5))
    theta, rho = jnp.array([0.3, 0.9]), 0.2
    pen = robust.robust_penalty(theta, problem, rho)
    np.testing.assert_allclose(pen, rho * robust.sensitivity_penalty(theta, problem), rtol=1e-12)
    # and E|h| by explicit enumeration
    pi = jax.nn.softmax(problem.phi @ theta, axis=-1)
    h = jax.vmap(robust.pair_logits, in_axes=(None, 0, 0, None))(
        theta, problem.phi, problem.ref_logp, problem.beta
    )
    want = jnp.einsum("n,ny,nyz,nz->", problem.weights, pi, jnp.abs(h), pi)
    np.testing.assert_allclose(robust.sensitivity_penalty(theta, problem), want, rtol=1e-12)


def test_rho_zero_and_uniform_policy_special_cases():
    problem = random_problem(6)
    theta = jnp.array([0.4, -0.2])
    assert float(robust.robust_sail_objective(theta, problem, 0.0)) == pytest.approx(
        float(robust.sail_objective(theta, problem)), rel=1e-14
    )
    # identical responses: every logit is 0, so the loss is log 2 whatever θ and ρ
    flat = problem._replace(phi=jnp.ones_like(problem.phi), ref_logp=jnp.zeros((2, 3)))
    assert float(robust.robust_sail_objective(theta, flat, 0.3)) == pytest.approx(np.log(2))


# ----------------------------------------------------------------------------- transforms


def test_jit_vmap_grads_and_float32():
    problem = random_problem(7)
    thetas = jnp.asarray(np.random.default_rng(2).normal(size=(4, 2)))
    f = lambda t: robust.robust_sail_objective(t, problem, 0.15)  # noqa: E731
    loop = np.array([float(f(t)) for t in thetas])
    np.testing.assert_allclose(jax.vmap(jax.jit(f))(thetas), loop, rtol=1e-12)
    check_grads(
        lambda t: robust.sail_objective(t, problem), (thetas[0],), order=2, modes=("fwd", "rev")
    )
    problem32 = random_problem(7, dtype=np.float32)
    v32 = robust.robust_sail_objective(thetas[0].astype(jnp.float32), problem32, 0.15)
    assert v32.dtype == jnp.float32
    np.testing.assert_allclose(v32, loop[0], rtol=1e-5)


# ----------------------------------------------------------------------------- bad input


def test_bad_input_raises_value_error_naming_argument():
    problem = random_problem(8)
    theta = jnp.zeros(2)
    with pytest.raises(ValueError, match="rho"):
        robust.robust_sail_objective(theta, problem, -0.1)
    with pytest.raises(ValueError, match="p_nominal"):
        robust.worst_case_pair_loss(jnp.array(1.0), 1.2, 0.1)
    with pytest.raises(ValueError, match="rho"):
        robust.worst_case_pair_loss(jnp.array(1.0), 0.5, -1.0)
    with pytest.raises(ValueError, match="pref"):
        robust.preference_problem(problem.phi, problem.ref_logp, problem.pref - 0.7)
    with pytest.raises(ValueError, match="phi"):
        robust.preference_problem(
            problem.phi.at[0, 0, 0].set(jnp.nan), problem.ref_logp, problem.pref
        )
    with pytest.raises(ValueError, match="theta"):
        robust.sail_objective(jnp.zeros(3), problem)
    with pytest.raises(ValueError, match="theta"):
        robust.sail_objective(jnp.array([jnp.inf, 0.0]), problem)
    with pytest.raises(ValueError, match="beta"):
        robust.preference_problem(problem.phi, problem.ref_logp, problem.pref, beta=0.0)

"""Greedy D-optimal design and the active-selection rules against brute force."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpref import design, linalg
from jaxpref.losses import fit_dpo_mle


def brute_force_greedy(V, n, gamma):
    """Greedy on slogdet(H + vvᵀ) for every unselected candidate, in float64 NumPy."""
    H = gamma * np.eye(V.shape[1])
    chosen, logdets = [], []
    for _ in range(n):
        vals = np.array(
            [
                np.linalg.slogdet(H + np.outer(v, v))[1] if i not in chosen else -np.inf
                for i, v in enumerate(V)
            ]
        )
        i = int(np.argmax(vals))  # first maximum: ties to the lowest index
        chosen.append(i)
        logdets.append(vals[i])
        H += np.outer(V[i], V[i])
    return np.array(chosen), np.array(logdets)


@pytest.mark.parametrize(
    "seed,N,d,n,gamma", [(0, 60, 3, 20, 1.0), (1, 120, 6, 40, 0.1), (2, 40, 5, 40, 3.0)]
)
def test_greedy_equals_brute_force_slogdet(seed, N, d, n, gamma):
    V = np.random.default_rng(seed).normal(size=(N, d)) * np.linspace(0.2, 2.0, d)
    res = design.greedy_doptimal(V, n, gamma=gamma)
    idx, logdets = brute_force_greedy(V, n, gamma)
    np.testing.assert_array_equal(res.indices, idx)
    np.testing.assert_allclose(res.logdets, logdets, rtol=1e-12, atol=1e-12)


def test_low_rank_inverse_equals_the_dense_inverse():
    """I/γ − ŨŨᵀ after t additions against inv(γI + Σ vvᵀ) in float64, at every fill level
    (the used-row buckets n/16 … n switch at 1, 2, 4, 8 of n = 16), and the same u, q and
    log-det as Sherman–Morrison on the dense inverse."""
    rng = np.random.default_rng(5)
    d, n, gamma = 24, 16, 0.7
    V, X = rng.normal(size=(n, d)), rng.normal(size=(9, d))
    inv, dense = linalg.low_rank_inverse(d, n, gamma, jnp.float64), np.eye(d) / gamma
    logdet = logdet_dense = d * np.log(gamma)
    for t in range(n):
        H_inv = np.linalg.inv(gamma * np.eye(d) + V[:t].T @ V[:t])
        np.testing.assert_allclose(linalg.inverse_apply(inv, X[0]), H_inv @ X[0], atol=1e-12)
        np.testing.assert_allclose(
            linalg.inverse_quad_form(inv, X), np.einsum("nd,de,ne->n", X, H_inv, X), atol=1e-12
        )
        inv, u, q = linalg.inverse_rank_one(inv, V[t])
        dense, u_dense, q_dense = linalg.inverse_rank_one(dense, V[t])
        np.testing.assert_allclose(u, u_dense, atol=1e-12)
        logdet, logdet_dense = linalg.logdet_rank_one(logdet, q), np.log1p(q_dense) + logdet_dense
    np.testing.assert_allclose(logdet, np.linalg.slogdet(gamma * np.eye(d) + V.T @ V)[1])
    np.testing.assert_allclose(logdet, logdet_dense, rtol=1e-13)
    assert int(inv.count) == n


@pytest.mark.parametrize("method", ["plain", "lazy"])
def test_greedy_with_fewer_picks_than_dimensions(method):
    """n < d keeps the low-rank inverse: same picks and log-dets as the slogdet brute force."""
    rng = np.random.default_rng(6)
    V = rng.normal(size=(90, 40)) * np.geomspace(2.0, 0.2, 40)
    res = design.greedy_doptimal(V, 25, gamma=0.3, method=method)
    idx, logdets = brute_force_greedy(V, 25, 0.3)
    np.testing.assert_array_equal(res.indices, idx)
    np.testing.assert_allclose(res.logdets, logdets, rtol=1e-12)
    state = design.doptimal_init(jnp.asarray(V), gamma=0.3, max_picks=25)
    assert isinstance(state.H_inv, linalg.LowRankInverse)


def test_hand_case_and_ties_to_lowest_index():
    res = design.greedy_doptimal(jnp.diag(jnp.array([1.0, 3.0, 2.0])), 3)
    np.testing.assert_array_equal(res.indices, [1, 2, 0])
    np.testing.assert_allclose(res.logdets, np.log([10.0, 50.0, 100.0]))
    V = np.random.default_rng(3).normal(size=(10, 4))
    V = np.concatenate([V, V])  # every candidate twice: exactly equal scores
    res = design.greedy_doptimal(V, 6)
    first = brute_force_greedy(V, 6, 1.0)[0]
    np.testing.assert_array_equal(res.indices, first)
    assert len(set(np.asarray(res.indices).tolist())) == 6  # without replacement


def test_batches_and_state_pair_continue_the_same_greedy_run():
    V = jnp.asarray(np.random.default_rng(4).normal(size=(80, 5)))
    full = design.greedy_doptimal(V, 30, gamma=0.5)
    state = design.doptimal_init(V, gamma=0.5)
    picks = []
    for size in (7, 13, 10):
        state, res = design.greedy_doptimal_batch(state, V, size)
        picks.append(res.indices)
    np.testing.assert_array_equal(np.concatenate(picks), full.indices)
    np.testing.assert_allclose(state.logdet, full.logdets[-1], rtol=1e-12)
    state2, _ = jax.lax.scan(
        lambda s, _: design.doptimal_update(s, V),
        design.doptimal_init(V, gamma=0.5),
        None,
        length=30,
    )
    np.testing.assert_allclose(state2.H_inv, state.H_inv, atol=1e-12)
    H = (
        0.5 * np.eye(5)
        + np.asarray(V)[np.asarray(full.indices)].T @ np.asarray(V)[np.asarray(full.indices)]
    )
    np.testing.assert_allclose(state.H_inv, np.linalg.inv(H), atol=1e-10)
    np.testing.assert_allclose(
        state.scores, np.einsum("nd,de,ne->n", V, np.linalg.inv(H), V), atol=1e-10
    )


@pytest.mark.parametrize(
    "seed,N,d,n,gamma,block,chunk,shortlist",
    [
        (1, 500, 6, 120, 0.1, 8, 16, None),
        (2, 2000, 8, 200, 1.0, 32, 128, None),
        (3, 300, 12, 300, 3.0, 4, 8, None),  # every candidate; tiny chunks and blocks
        (4, 700, 10, 150, 0.5, 16, 24, 100),  # 24 ∤ 100: clamped last chunk; many run-outs
        (5, 200, 5, 120, 1.0, 64, 32, 200),  # the list holds every row: it never runs out
    ],
)
def test_lazy_greedy_picks_identical_to_plain(seed, N, d, n, gamma, block, chunk, shortlist):
    """The default lazy method against plain greedy in float64: same picks, log-dets and κ
    (guards the stale-bound stopping rule, the block correction and the refresh)."""
    rng = np.random.default_rng(seed)
    V = rng.normal(size=(N, d)) * np.geomspace(3.0, 0.1, d) * rng.uniform(0.2, 1.0, (N, 1))
    plain = design.greedy_doptimal(V, n, gamma=gamma, method="plain")
    (idx, logdets, kappa), stats = design.lazy_greedy_doptimal(
        jnp.asarray(V), n, gamma=gamma, block=block, chunk=chunk, shortlist=shortlist
    )
    np.testing.assert_array_equal(idx, plain.indices)
    np.testing.assert_allclose(logdets, plain.logdets, rtol=1e-12)
    np.testing.assert_allclose(kappa, plain.kappa, rtol=1e-9)
    assert int(stats.refreshes) >= n // block and int(stats.rescored) >= n
    np.testing.assert_array_equal(design.greedy_doptimal(V, n, gamma=gamma).indices, idx)


def test_lazy_greedy_adversarial_ties():
    """Ties go to the lowest index. A constant pool, zero rows and one dominant direction: same
    picks as plain greedy. Exact triplicates (equal scores at every step): same picks as the
    slogdet brute force, which scores equal rows bitwise equally; plain greedy's accumulated
    rank-one updates round differently for equal rows at different positions and can pick a
    later copy (it does here at step 15), so plain is not the reference for exact duplicates."""
    rng = np.random.default_rng(11)
    base = rng.normal(size=(20, 4))
    spike = np.concatenate([np.outer(rng.uniform(1, 2, 56), [1.0, 0, 0, 0]), np.eye(4) * 0.1])
    pools = [  # one shape (60, 4), so each method compiles once
        np.ones((60, 4)),  # all rows equal
        np.concatenate([np.zeros((45, 4)), rng.normal(size=(15, 4))]),  # zero rows go last
        spike,  # one dominant direction
        np.concatenate([base, base, base]),  # every score appears three times
    ]
    for k, V in enumerate(pools):
        n = 50
        ref = (
            brute_force_greedy(V, n, 1.0)[0]
            if k == 3
            else design.greedy_doptimal(V, n, method="plain").indices
        )
        for block, chunk, shortlist in ((64, 128, None), (4, 8, None), (8, 7, 20)):
            (idx, _, _), _ = design.lazy_greedy_doptimal(
                jnp.asarray(V), n, block=block, chunk=chunk, shortlist=shortlist
            )
            np.testing.assert_array_equal(idx, ref, err_msg=f"pool {k}, block {block}")


def test_kappa_is_the_assumption_4_ratio():
    V = np.random.default_rng(5).normal(size=(50, 3))
    res = design.greedy_doptimal(V, 10)
    H, worst = np.eye(3), 0.0
    for i in np.asarray(res.indices):
        s = np.einsum("nd,de,ne->n", V, np.linalg.inv(H), V)
        worst = max(worst, s.max() / s[i])
        H += np.outer(V[i], V[i])
    np.testing.assert_allclose(res.kappa, worst, rtol=1e-10)


def test_step_cost_is_linear_in_d():
    """Compiled FLOPs of one greedy step grow like N·d (a rescoring would grow like N·d²)."""

    def step_flops(N, d):
        V = jnp.ones((N, d), jnp.float32)
        state = design.doptimal_init(V)
        compiled = jax.jit(design.doptimal_update).lower(state, V).compile()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        return cost["flops"]

    f32, f64 = step_flops(8192, 32), step_flops(8192, 64)
    assert f32 > 8192 * 32  # at least the matrix–vector product
    assert f64 / f32 < 2.5, (f32, f64)  # O(N d² ) would give ≈ 4


def test_float32_path():
    V = np.random.default_rng(6).normal(size=(100, 4))
    r32 = design.greedy_doptimal(V.astype(np.float32), 10)
    assert r32.logdets.dtype == jnp.float32
    np.testing.assert_array_equal(r32.indices, design.greedy_doptimal(V, 10).indices)


def test_greedy_bad_input(library_checks_only):
    V = np.ones((5, 2))
    with pytest.raises(ValueError, match="n: must lie in"):
        design.greedy_doptimal(V, 6)
    with pytest.raises(ValueError, match="gamma"):
        design.greedy_doptimal(V, 2, gamma=0.0)
    with pytest.raises(ValueError, match="features.*non-finite"):
        design.greedy_doptimal(np.where(np.eye(5, 2) > 0, np.nan, V), 2)
    with pytest.raises(ValueError, match="features: expected a 2-D"):
        design.greedy_doptimal(np.ones(5), 2)
    state = design.doptimal_init(jnp.asarray(V))
    with pytest.raises(ValueError, match="batch_size"):
        design.greedy_doptimal_batch(state, jnp.asarray(V), 6)
    state, _ = design.greedy_doptimal_batch(state, jnp.asarray(V), 3)  # 2 rows left
    with pytest.raises(ValueError, match="batch_size: 3 picks exceed the unselected rows"):
        design.greedy_doptimal_batch(state, jnp.asarray(V), 3)
    batch = jax.jit(design.greedy_doptimal_batch, static_argnums=2)  # in the graph
    with pytest.raises(jax.errors.JaxRuntimeError, match="exceed the unselected rows"):
        jax.block_until_ready(batch(state, jnp.asarray(V), 3))
    assert batch(state, jnp.asarray(V), 2)[1].indices.shape == (2,)


# ------------------------------------------------------------------ active rules
@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(7)
    N, d = 200, 4
    phi = rng.normal(size=(N, d)) * np.array([1.0, 0.6, 0.3, 0.1])
    phi /= np.linalg.norm(phi, axis=1).max()
    theta = rng.normal(size=d) * 2
    b = phi @ (theta + rng.normal(size=d) * 0.5)
    s = (rng.random(N) < 1 / (1 + np.exp(-phi @ theta))).astype(float)
    return phi, s, b


def _mu(x):
    return 1 / (1 + np.exp(-x))


def adpo_reference(phi, s, b, n, beta, gamma, alpha=0.0, key=None, num_candidates=None):
    """ADPO written out directly: re-fit at t = 2^i on queried labels, full rescoring, slogdet.

    UCB (App. B, Eq. 13): z_i = max(|β(φ_iᵀθ̂ − b_i)| − α√(φ_iᵀP⁻¹φ_i), 0) with P the
    regularised Hessian at θ̂ on the queried pairs. Candidate subsets: at each step the m
    unselected pairs with the smallest uniform draw u_i (the same keys as the library's draws).
    """
    N, d = phi.shape
    H, chosen, theta = gamma * np.eye(d), [], np.zeros(d)
    P = gamma * np.eye(d)
    for t in range(1, n + 1):
        if t & (t - 1) == 0:
            w = np.isin(np.arange(N), chosen).astype(float)
            fit = fit_dpo_mle(phi, s, beta=beta, gamma=gamma, ref_logratio=b, weights=w)
            theta, P = np.asarray(fit.theta), np.asarray(fit.hessian) + gamma * np.eye(d)
        z = np.abs(beta * (phi @ theta - b))
        if alpha:
            z = np.maximum(
                z - alpha * np.sqrt(np.einsum("nd,de,ne->n", phi, np.linalg.inv(P), phi)), 0
            )
        m = _mu(z)
        V = beta * np.sqrt(m * (1 - m))[:, None] * phi
        allowed = np.ones(N, bool)
        if num_candidates is not None:
            key, sub = jax.random.split(key)
            u = np.array(jax.random.uniform(sub, (N,)), np.float64)
            u[chosen] = np.inf
            allowed[:] = False
            allowed[np.argsort(u, kind="stable")[:num_candidates]] = True
        vals = [
            np.linalg.slogdet(H + np.outer(v, v))[1] if allowed[i] and i not in chosen else -np.inf
            for i, v in enumerate(V)
        ]
        i = int(np.argmax(vals))
        chosen.append(i)
        H += np.outer(V[i], V[i])
    return np.array(chosen)


def test_adpo_equals_direct_implementation(pool):
    phi, s, b = pool
    res = design.adpo(jax.random.key(0), phi, s, b, 24, beta=1.5, gamma=0.5)
    np.testing.assert_array_equal(res.indices, adpo_reference(phi, s, b, 24, 1.5, 0.5))


def test_adpo_only_reads_queried_labels(pool):
    phi, s, b = pool
    res = design.adpo(jax.random.key(0), phi, s, b, 40)
    never_seen = np.setdiff1d(
        np.arange(len(s)), np.asarray(res.indices)[:32]
    )  # fits use picks < 32
    s2 = s.copy()
    s2[never_seen] = 1 - s2[never_seen]
    np.testing.assert_array_equal(
        design.adpo(jax.random.key(0), phi, s2, b, 40).indices, res.indices
    )


def test_adpo_candidate_subsets_and_ucb(pool):
    """The UCB stabiliser and the random candidate subsets against the direct implementation
    (a wrong Σ̂, a wrong width or a subset drawn differently would change the picks)."""
    phi, s, b = pool
    for alpha, m in ((3.0, None), (0.0, 16), (3.0, 16)):
        key = jax.random.key(1)
        res = design.adpo(key, phi, s, b, 30, alpha=alpha, num_candidates=m, gamma=0.5)
        ref = adpo_reference(phi, s, b, 30, 1.0, 0.5, alpha=alpha, key=key, num_candidates=m)
        np.testing.assert_array_equal(res.indices, ref, err_msg=f"alpha={alpha}, m={m}")
    with pytest.raises(ValueError, match="num_candidates"):
        design.adpo(jax.random.key(1), phi, s, b, 30, num_candidates=len(s) - 28)


def test_adpo_with_fewer_picks_than_dimensions():
    """d > n: ADPO runs on the low-rank inverse; same picks as the direct implementation, with
    and without candidate subsets."""
    rng = np.random.default_rng(8)
    N, d = 80, 30
    phi = rng.normal(size=(N, d)) * np.geomspace(1.0, 0.1, d)
    phi /= np.linalg.norm(phi, axis=1).max()
    theta = rng.normal(size=d)
    b = phi @ (theta + rng.normal(size=d) * 0.3)
    s = (rng.random(N) < 1 / (1 + np.exp(-phi @ theta))).astype(float)
    for m in (None, 12):
        key = jax.random.key(2)
        res = design.adpo(key, phi, s, b, 20, alpha=3.0, num_candidates=m, gamma=0.5)
        ref = adpo_reference(phi, s, b, 20, 1.0, 0.5, alpha=3.0, key=key, num_candidates=m)
        np.testing.assert_array_equal(res.indices, ref, err_msg=f"m={m}")


def test_adpo_plus_is_greedy_on_design_vectors_of_the_full_fit(pool):
    phi, s, b = pool
    res = design.adpo_plus(phi, s, b, 25, beta=2.0, gamma=0.3)
    theta = fit_dpo_mle(phi, s, beta=2.0, gamma=0.3, ref_logratio=b).theta
    np.testing.assert_allclose(res.theta_hat, theta, atol=1e-10)
    m = _mu(2.0 * (phi @ np.asarray(theta) - b))
    V = 2.0 * np.sqrt(m * (1 - m))[:, None] * phi
    np.testing.assert_array_equal(res.indices, brute_force_greedy(V, 25, 0.3)[0])


def test_ucb_weights(pool):
    phi, s, b = pool
    theta = jnp.asarray(np.random.default_rng(8).normal(size=4))
    P = jnp.eye(4) * 2.0
    V0 = design.design_vectors(theta, phi, b, beta=1.0)
    np.testing.assert_allclose(
        design.design_vectors(theta, phi, b, beta=1.0, alpha=0.0, precision=P), V0
    )
    V = design.design_vectors(theta, phi, b, beta=1.0, alpha=3.0, precision=P)
    z = np.maximum(
        np.abs(phi @ np.asarray(theta) - b) - 3.0 * np.linalg.norm(phi, axis=1) / np.sqrt(2), 0
    )
    np.testing.assert_allclose(V, np.sqrt(_mu(z) * (1 - _mu(z)))[:, None] * phi, rtol=1e-10)


def test_apo_certainty_uniform(pool):
    phi, s, b = pool
    np.testing.assert_array_equal(
        design.apo(phi, 15, gamma=0.2).indices, brute_force_greedy(phi, 15, 0.2)[0]
    )
    cert = np.asarray(design.certainty(phi, s, b, 3, beta=1.0).indices)
    assert cert[0] == np.argmax(np.abs(b))  # θ̂_0 = 0: the largest |β(0 − b_i)|
    theta1 = np.asarray(fit_dpo_mle(phi, s, ref_logratio=b, weights=np.eye(len(s))[cert[0]]).theta)
    gap = np.abs(phi @ theta1 - b)
    gap[cert[0]] = -np.inf
    assert cert[1] == np.argmax(gap)
    u = np.asarray(design.uniform(jax.random.key(2), 50, 50).indices)
    np.testing.assert_array_equal(np.sort(u), np.arange(50))


def test_active_bad_input(pool, library_checks_only):
    phi, s, b = pool
    with pytest.raises(ValueError, match="ref_logratio: expected shape"):
        design.adpo_plus(phi, s, b[:-1], 5)
    with pytest.raises(ValueError, match="n: must lie in"):
        design.certainty(phi, s, b, len(s) + 1)
    with pytest.raises(ValueError, match="beta"):
        design.adpo(jax.random.key(0), phi, s, b, 5, beta=0.0)
    with pytest.raises(ValueError, match="alpha"):
        design.adpo(jax.random.key(0), phi, s, b, 5, alpha=-1.0)


def test_adpo_plus_kappa_is_the_assumption_4_ratio_of_its_run(pool):
    """ADPO+ returns κ of its own greedy run, recomputed here from the picks with explicit
    inverses of H_t on the design vectors of the full fit (NumPy, float64)."""
    phi, s, b = pool
    res = design.adpo_plus(phi, s, b, 25, beta=1.5, gamma=0.4)  # n as above: one compile
    theta = np.asarray(fit_dpo_mle(phi, s, beta=1.5, gamma=0.4, ref_logratio=b).theta)
    m = _mu(1.5 * (phi @ theta - b))
    V = 1.5 * np.sqrt(m * (1 - m))[:, None] * phi
    H, worst = 0.4 * np.eye(phi.shape[1]), 0.0
    for i in np.asarray(res.indices):
        score = np.einsum("nd,de,ne->n", V, np.linalg.inv(H), V)
        worst = max(worst, score.max() / score[i])
        H += np.outer(V[i], V[i])
    assert worst >= 1.0
    np.testing.assert_allclose(res.kappa, worst, rtol=1e-8)
    assert design.adpo(jax.random.key(0), phi, s, b, 4).kappa is None


def test_select_runs_each_named_rule(pool, library_checks_only):
    """``select`` by name against direct implementations (brute-force greedy for ADPO+ and APO,
    ``adpo`` itself, tested against brute force above, with the same α and subsets, the
    certainty rule's first pick, the key's permutation for uniform). Budgets as in the tests
    above, so that each rule compiles once."""
    phi, s, b = pool
    key, kw = jax.random.key(3), dict(beta=1.0, gamma=0.5, alpha=3.0, num_candidates=16)
    budgets = {"ADPO": 30, "ADPO+": 25, "APO": 15, "certainty": 3, "uniform": 12}
    assert set(budgets) == set(design.METHODS)
    picks = {
        m: np.asarray(design.select(m, key, phi, s, b, n, **kw).indices) for m, n in budgets.items()
    }
    ref = design.adpo(key, phi, s, b, 30, beta=1.0, gamma=0.5, alpha=3.0, num_candidates=16)
    np.testing.assert_array_equal(picks["ADPO"], ref.indices)
    fit = fit_dpo_mle(phi, s, gamma=0.5, ref_logratio=b)
    theta, P_inv = np.asarray(fit.theta), np.linalg.inv(np.asarray(fit.hessian) + 0.5 * np.eye(4))
    z = np.maximum(
        np.abs(phi @ theta - b) - 3.0 * np.sqrt(np.einsum("nd,de,ne->n", phi, P_inv, phi)), 0
    )
    V = np.sqrt(_mu(z) * (1 - _mu(z)))[:, None] * phi
    np.testing.assert_array_equal(picks["ADPO+"], brute_force_greedy(V, 25, 0.5)[0])
    np.testing.assert_array_equal(picks["APO"], brute_force_greedy(phi, 15, 0.5)[0])
    assert picks["certainty"][0] == np.argmax(np.abs(b))
    np.testing.assert_array_equal(
        picks["uniform"], np.asarray(jax.random.permutation(key, len(s)))[:12]
    )
    assert set(design.DETERMINISTIC) < set(design.METHODS)
    # uses_key against behaviour: another key changes the picks exactly when it says so (ADPO
    # without subsets at the budget of test_adpo_only_reads_queried_labels, compiled there)
    other = jax.random.key(4)
    for m, n in budgets.items():
        again = np.asarray(design.select(m, other, phi, s, b, n, **kw).indices)
        assert design.uses_key(m, 16) == (not np.array_equal(again, picks[m])), m
    no_subsets = [design.adpo(k, phi, s, b, 40).indices for k in (key, other)]
    assert not design.uses_key("ADPO", None)
    np.testing.assert_array_equal(*no_subsets)
    with pytest.raises(ValueError, match="method: must be one of"):
        design.uses_key("ADPO++")
    with pytest.raises(ValueError, match=r"method: unknown 'ADPO\+\+'; known"):
        design.select("ADPO++", key, phi, s, b, 5)
    with pytest.raises(ValueError, match="phi_diff"):
        design.select("uniform", key, phi[0], s, b, 5)


def test_prefix_fits_equal_fits_on_the_selected_subsets(pool):
    """θ̂_n of every prefix is the minimiser of the ridge DPO objective on the materialised
    subset φ[order[:n]]: its gradient, written out in float64 NumPy, vanishes there (the
    objective is strictly convex, so that point is the unique minimiser)."""
    phi, s, b = pool
    order = np.asarray(design.apo(phi, 40, gamma=0.3).indices)
    budgets = np.array([1, 5, 17, 40])
    thetas = np.asarray(design.prefix_fits(order, budgets, phi, s, b, beta=2.0, gamma=0.3))
    assert thetas.shape == (4, phi.shape[1]) and np.all(np.diff(thetas, axis=0) != 0)
    for n, theta in zip(budgets, thetas):
        sub = order[:n]
        h = 2.0 * (phi[sub] @ theta - b[sub])
        grad = -2.0 * phi[sub].T @ (s[sub] - _mu(h)) + 0.3 * theta
        np.testing.assert_allclose(grad, 0.0, atol=1e-9)


def test_prefix_fits_bad_input(pool, library_checks_only):
    phi, s, b = pool
    order = np.arange(10)
    with pytest.raises(ValueError, match="order: expected integer"):
        design.prefix_fits(order.astype(float), [5], phi, s, b)
    with pytest.raises(ValueError, match="order: indices must lie in"):
        design.prefix_fits(order + len(s) - 5, [5], phi, s, b)
    with pytest.raises(ValueError, match="order: indices must be distinct"):
        design.prefix_fits(np.zeros(10, int), [5], phi, s, b)
    with pytest.raises(ValueError, match="budgets: each must be in"):
        design.prefix_fits(order, [0, 5], phi, s, b)
    with pytest.raises(ValueError, match="budgets: each must be in"):
        design.prefix_fits(order, [11], phi, s, b)
    with pytest.raises(ValueError, match="ref_logratio"):
        design.prefix_fits(order, [5], phi, s, b[:-1])

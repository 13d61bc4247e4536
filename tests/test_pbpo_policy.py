"""Min-max step, exploration rules, Stackelberg game, testbeds and loop of jaxpref.pbpo."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpref import linalg
from jaxpref.pbpo import confidence as C
from jaxpref.pbpo import envs, exploration, loop, minmax


def _gram(d=2, seed=0):
    X = np.random.default_rng(seed).normal(size=(6, d))
    return jnp.asarray(np.eye(d) + X.T @ X)


def test_minmax_finite_against_boundary_enumeration():
    rng = np.random.default_rng(1)
    gram, th, r = _gram(), jnp.array([0.5, -0.3]), 0.9
    feats = jnp.asarray(rng.normal(size=(7, 2)))
    ref = jnp.asarray(rng.normal(size=2))
    idx, values = minmax.minmax_finite(th, gram, r, feats, ref)
    ang = np.linspace(0, 2 * np.pi, 20001)
    L = np.linalg.cholesky(np.asarray(gram))
    thetas = np.asarray(th) + r * np.linalg.solve(L.T, np.stack([np.cos(ang), np.sin(ang)])).T
    brute = (thetas @ (np.asarray(feats) - np.asarray(ref)).T).min(0)  # min over θ per policy
    np.testing.assert_allclose(values, brute, atol=1e-6)
    assert int(idx) == int(np.argmax(brute))


def test_minmax_responses_keep_reference_and_switch():
    phi = jnp.array([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])  # one context, three responses
    ref = jnp.array([[1.0, 0.0, 0.0]])
    th = jnp.array([0.3, 0.1])
    wide = minmax.minmax_responses_unchecked(th, jnp.eye(2), 5.0, phi, ref)
    np.testing.assert_array_equal(wide, ref)  # no confident improvement: stay with π_ref
    narrow = minmax.minmax_responses_unchecked(th, 100 * jnp.eye(2), 1.0, phi, ref)
    np.testing.assert_array_equal(narrow, [[0.0, 1.0, 0.0]])  # 0.3 − 0.1 > 0
    opt = minmax.minmax_responses_unchecked(th, jnp.eye(2), 5.0, phi, ref, sign=1.0)
    np.testing.assert_array_equal(opt, [[0.0, 1.0, 0.0]])  # optimism ties broken by θ̂


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_enhancer_scores_hand_and_loop(dtype):
    phi = jnp.asarray([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype)
    s = exploration.enhancer_scores(jnp.eye(2, dtype=dtype), phi, jnp.asarray([1.0, 0, 0], dtype))
    np.testing.assert_allclose(s, [0.0, 1.0, 4.0], rtol=1e-6)
    assert s.dtype == dtype
    gram, p = _gram().astype(dtype), jnp.asarray([0.2, 0.5, 0.3], dtype)
    got = exploration.enhancer_scores(gram, phi, p)
    ginv = np.linalg.inv(np.asarray(gram, np.float64))  # independent float64 reference
    ref = [
        sum(p[i] * (phi[i] - phi[j]) @ ginv @ (phi[i] - phi[j]) for i in range(3)) for j in range(3)
    ]
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_optimistic_scores_are_optimistic_values():
    phi = jnp.asarray(np.random.default_rng(2).normal(size=(4, 2)))
    p, th, gram = jnp.full(4, 0.25), jnp.array([0.1, 0.4]), _gram()
    got = exploration.optimistic_scores(th, gram, 0.7, phi, p)
    want = C.optimistic_value(th, gram, 0.7, phi - (p @ phi)[None, :])
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_exploration_bad_input(library_checks_only):
    with pytest.raises(ValueError, match="ref_probs"):
        exploration.enhancer_scores(jnp.eye(2), jnp.ones((3, 2)), jnp.ones(4))
    with pytest.raises(ValueError, match="gram"):
        exploration.enhancer_scores(jnp.zeros((2, 2)), jnp.ones((3, 2)), jnp.ones(3))
    with pytest.raises(ValueError, match="radius"):
        exploration.optimistic_scores(jnp.zeros(2), jnp.eye(2), -1.0, jnp.ones((3, 2)), jnp.ones(3))
    with pytest.raises(ValueError, match="ref_features"):
        minmax.minmax_finite(jnp.zeros(2), jnp.eye(2), 1.0, jnp.ones((3, 2)), jnp.ones(3))


def test_stackelberg_converges_to_penalised_saddle():
    """Softmax policy over 3 responses; penalty ½‖θ − θ̂‖²_Σ. The follower's best response is
    θ̂ − Σ⁻¹u/η, so the game value is max_p ⟨θ̂, u(p)⟩ − ‖u(p)‖²_{Σ⁻¹}/(2η), u(p) = Φᵀp − φ_ref;
    compared with a dense grid over the simplex."""
    phi = jnp.array([[2.0, 0.0], [0.0, 2.0], [-2.0, -2.0]])  # interior optimum (p ≈ .45,.36,.19)
    phi_ref, th_hat, gram, eta = jnp.zeros(2), jnp.array([0.5, 0.2]), _gram(), 0.2
    params = {"policy": {"logits": jnp.zeros(3)}, "reward": {"theta": th_hat}}

    def adv(psi, rew):
        return jnp.dot(rew["theta"], jax.nn.softmax(psi["logits"]) @ phi - phi_ref)

    def penalty(rew):
        return 0.5 * linalg.quad_form(gram, rew["theta"] - th_hat)

    step = jax.jit(
        functools.partial(
            minmax.stackelberg_update,
            advantage_fn=adv,
            penalty_fn=penalty,
            penalty_weight=eta,
            policy_lr=0.5,
            reward_lr=0.05,
            reward_steps=200,
        )
    )
    state = minmax.stackelberg_init(params["policy"], params["reward"])
    for _ in range(300):
        state = step(state)
    grid = np.array(
        [
            (a, b, 1 - a - b)
            for a, b in itertools.product(np.linspace(0, 1, 301), repeat=2)
            if a + b <= 1
        ]
    )
    u = grid @ np.asarray(phi) - np.asarray(phi_ref)
    ginv = np.linalg.inv(np.asarray(gram))
    game = u @ np.asarray(th_hat) - np.einsum("ni,ij,nj->n", u, ginv, u) / (2 * eta)
    u_p = jax.nn.softmax(state.policy_params["logits"]) @ phi - phi_ref
    achieved = float(u_p @ th_hat - linalg.mahalanobis_sq(gram, u_p) / (2 * eta))
    assert achieved == pytest.approx(game.max(), abs=2e-3)
    np.testing.assert_allclose(
        state.reward_params["theta"], th_hat - linalg.psd_solve(gram, u_p) / eta, atol=1e-4
    )
    assert int(state.step) == 300


def test_envs_values_and_token_features():
    env = envs.token_mdp(
        jax.random.PRNGKey(0), num_contexts=3, vocab=2, horizon=3, d=4, dtype=jnp.float64
    )
    assert env.features.shape == (3, 8, 4)
    tok = envs.token_features(
        jax.random.PRNGKey(0), num_contexts=3, vocab=2, horizon=3, d=4, dtype=jnp.float64
    )
    np.testing.assert_allclose(jnp.linalg.norm(tok, axis=-1), 1.0, rtol=1e-12)
    # sequences sharing a prefix share the per-step features of that prefix
    np.testing.assert_allclose(tok[:, 0, :2], tok[:, 1, :2])
    r = np.asarray(env.features @ env.theta_star)
    uniform = jnp.full((3, 8), 1 / 8)
    assert float(envs.policy_value(env, uniform)) == pytest.approx(r.mean())
    assert float(envs.optimal_value(env)) == pytest.approx(r.max(1).mean())
    labels = jax.vmap(
        lambda k: envs.btl_label(k, jnp.array([1.0]), jnp.array([1.0]), jnp.array([0.0]))
    )(jax.random.split(jax.random.PRNGKey(1), 4000))
    assert float(labels.mean()) == pytest.approx(float(jax.nn.sigmoid(1.0)), abs=0.03)


@pytest.fixture(scope="module")
def small_runs():
    env = envs.dueling_bandit(jax.random.PRNGKey(3), num_contexts=8, num_arms=5, d=3)
    cfg = loop.LoopConfig(num_episodes=96, kappa=1.0)
    run = jax.jit(jax.vmap(loop.run_loop, in_axes=(None, None, None, 0)), static_argnums=2)
    prms = jax.tree.map(
        lambda *a: jnp.stack(a), *[loop.loop_params(m, dim=3) for m in ("pbpo", "greedy")]
    )
    return env, cfg, run(jax.random.PRNGKey(4), env, cfg, prms)


def test_loop_regret_properties(small_runs):
    env, cfg, regrets = small_runs
    assert regrets.shape == (2, cfg.num_episodes)
    assert float(regrets.min()) >= -1e-6  # J(π*) ≥ J(π_k)
    first = float(envs.optimal_value(env) - envs.policy_value(env, jnp.full((8, 5), 0.2)))
    np.testing.assert_allclose(regrets[:, 0], first, rtol=1e-5)  # π_1 is uniform
    pbpo, greedy = np.asarray(regrets).sum(1)
    assert pbpo < greedy


def test_loop_single_equals_batched(small_runs):
    env, cfg, regrets = small_runs
    single = loop.run_loop(jax.random.PRNGKey(4), env, cfg, loop.loop_params("pbpo", dim=3))
    np.testing.assert_allclose(single, regrets[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="method"):
        loop.loop_params("nope", dim=3)


def test_joint_minmax_over_deterministic_tabular_policies():
    """Y^X enumeration: features by hand; the joint min-max optimum is at least as good (in the
    joint worst case) as the per-context step, and equal to it with one context."""
    rng = np.random.default_rng(7)
    phi = jnp.asarray(rng.normal(size=(2, 3, 2)))
    d0 = jnp.array([0.3, 0.7])
    feats, choices = minmax.deterministic_policy_features(phi, d0)
    assert feats.shape == (9, 2) and choices.shape == (9, 2)
    n = 5  # policy x0 ↦ 1, x1 ↦ 2
    np.testing.assert_allclose(feats[n], 0.3 * phi[0, choices[n, 0]] + 0.7 * phi[1, choices[n, 1]])
    th, gram, r, ref = jnp.array([1.5, -1.0]), _gram(), 0.3, jnp.full((2, 3), 1 / 3)
    ref_feat = jnp.einsum("x,xy,xyd->d", d0, ref, phi)
    idx, values = minmax.minmax_finite(th, gram, r, feats, ref_feat)
    per_ctx = minmax.minmax_responses_unchecked(th, gram, r, phi, ref)
    u = jnp.einsum("x,xy,xyd->d", d0, per_ctx, phi) - ref_feat
    assert float(values[idx]) >= float(C.pessimistic_value(th, gram, r, u)) - 1e-12
    one, _ = minmax.deterministic_policy_features(phi[:1], jnp.ones(1))
    j1, _ = minmax.minmax_finite(th, gram, r, one, ref[0] @ phi[0])
    pc1 = minmax.minmax_responses_unchecked(th, gram, r, phi[:1], ref[:1])
    assert float(pc1.max()) == 1.0  # the step moved away from the uniform reference ...
    assert int(jnp.argmax(pc1[0])) == int(j1)  # ... to the joint step's response
    with pytest.raises(ValueError, match="context_probs"):
        minmax.deterministic_policy_features(phi, jnp.ones(3))


def test_pad_env_keeps_every_value():
    """Padding to more responses (tiled) and more coordinates (zeros) keeps each reward, the
    value of any policy copied across the tiles and J(π*), computed here by NumPy enumeration;
    a stacked batch pads the same as one environment."""
    env = envs.dueling_bandit(jax.random.PRNGKey(5), num_contexts=4, num_arms=3, d=2)
    big = envs.pad_env(env, 9, 5)
    assert big.features.shape == (4, 9, 5) and big.theta_star.shape == (5,)
    r = np.asarray(env.features) @ np.asarray(env.theta_star)  # (X, Y) rewards
    np.testing.assert_allclose(np.asarray(big.features) @ np.asarray(big.theta_star), np.tile(r, 3))
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=4)
    value = (np.asarray(env.context_probs) * (probs * r).sum(1)).sum()
    padded_value = envs.policy_value(big, jnp.asarray(np.tile(probs, 3) / 3))
    np.testing.assert_allclose(padded_value, value, rtol=1e-6)
    np.testing.assert_allclose(envs.optimal_value(big), (r.max(1) / 4).sum(), rtol=1e-6)
    assert np.all(np.argmax(np.asarray(big.features) @ np.asarray(big.theta_star), 1) < 3)
    batch = jax.vmap(lambda k: envs.dueling_bandit(k, num_contexts=4, num_arms=3, d=2))(
        jax.random.split(jax.random.PRNGKey(5), 2)
    )
    one, _ = envs.pad_to_common([jax.tree.map(lambda a: a[0], batch), env])
    np.testing.assert_array_equal(envs.pad_to_common([batch])[0].features, batch.features)
    np.testing.assert_array_equal(
        envs.pad_env(batch, 6, 3).features[0], envs.pad_env(one, 6, 3).features
    )
    with pytest.raises(ValueError, match="num_responses: must be a multiple"):
        envs.pad_env(env, 4, 5)
    with pytest.raises(ValueError, match="dim"):
        envs.pad_env(env, 3, 1)
    with pytest.raises(ValueError, match="env_list"):
        envs.pad_to_common([])


def test_run_loops_is_run_loop_per_row(small_runs):
    env, cfg, regrets = small_runs
    batch = jax.tree.map(lambda a: jnp.stack([a, a]), env)
    prms = jax.tree.map(
        lambda *a: jnp.stack(a), *[loop.loop_params(m, dim=3) for m in ("pbpo", "greedy")]
    )
    keys = jnp.stack([jax.random.PRNGKey(4)] * 2)
    np.testing.assert_allclose(
        loop.run_loops(keys, batch, prms, cfg), regrets, rtol=1e-5, atol=1e-6
    )


def test_run_settings_is_run_loop_per_setting_and_seed():
    """Settings of different sizes (5 arms in d = 3, 10 arms in d = 2) × two seeds: each row is
    run_loop on that seed's padded environment with that setting's parameters and seed key."""
    cfg = loop.LoopConfig(num_episodes=12, kappa=1.0)
    keys = jax.random.split(jax.random.PRNGKey(5), 2)
    make = lambda arms, d: jax.vmap(  # noqa: E731
        lambda k: envs.dueling_bandit(k, num_contexts=4, num_arms=arms, d=d)
    )(jax.random.split(jax.random.PRNGKey(arms), 2))
    batches = [make(5, 3), make(10, 2)]
    params = [loop.loop_params("pbpo", dim=3), loop.loop_params("greedy", dim=2)]
    got = loop.run_settings(keys, batches, params, cfg)
    assert got.shape == (2, 2, 12)
    for g, (batch, prm) in enumerate(zip(batches, params)):
        for s in range(2):
            env = envs.pad_env(jax.tree.map(lambda a, s=s: a[s], batch), 10, 3)
            want = loop.run_loop(keys[s], env, cfg, prm)
            np.testing.assert_allclose(got[g, s], want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="one batch per setting"):
        loop.run_settings(keys, batches, params[:1], cfg)
    with pytest.raises(ValueError, match="each must stack 1 environments"):
        loop.run_settings(keys[:1], batches, params, cfg)


def test_env_batch_stacks_one_environment_per_split_key():
    key = jax.random.PRNGKey(9)
    kw = dict(num_contexts=3, num_arms=4, d=3)
    batch = envs.env_batch(envs.dueling_bandit, key, 3, **kw)
    assert batch.features.shape == (3, 3, 4, 3)
    for i, k in enumerate(jax.random.split(key, 3)):
        one = envs.dueling_bandit(k, **kw)
        for got, want in zip(batch, one):
            np.testing.assert_allclose(got[i], want, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="num"):
        envs.env_batch(envs.dueling_bandit, key, 0, **kw)
    with pytest.raises(ValueError, match="bound_theta: .* hashable"):  # static in the compile
        envs.env_batch(envs.dueling_bandit, key, 3, **kw, bound_theta=jnp.asarray(2.0))


@pytest.mark.parametrize("base", [None, 4.0, 1.0])
def test_radius_scale_gives_the_named_radius_in_the_compiled_loop(base):
    """β of a loop compiled with κ = ``base`` (None: certified) times `radius_scale` equals
    `ellipsoid_radius` with the named radius's κ, at several k and L (β is linear in κ)."""
    cfg = loop.LoopConfig(kappa=base)
    for name in C.RADII:
        for bound_delta_phi in (2.0, 6.0):
            scale = loop.radius_scale(name, cfg, bound_delta_phi)
            prm = loop.loop_params(dim=3, bound_delta_phi=bound_delta_phi, radius_scale=scale)
            kappa = C.radius_kappa(name, cfg.bound_theta, bound_delta_phi)
            for k in (0, 7, 100):
                want = C.ellipsoid_radius(
                    cfg.delta,
                    d=3,
                    k=k,
                    lam=cfg.lam,
                    bound_theta=cfg.bound_theta,
                    bound_delta_phi=bound_delta_phi,
                    kappa=kappa,
                )
                np.testing.assert_allclose(loop._beta(cfg, prm, k), want, rtol=1e-6)
    with pytest.raises(ValueError, match="radius"):
        loop.radius_scale("tight", cfg)


def test_run_study_keeps_the_nesting_of_run_settings():
    """Each (section, label) of the study holds its row of one `run_settings` call."""
    cfg = loop.LoopConfig(num_episodes=8, kappa=1.0)
    keys = jax.random.split(jax.random.PRNGKey(5), 2)
    batch = envs.env_batch(
        envs.dueling_bandit, jax.random.PRNGKey(6), 2, num_contexts=3, num_arms=4, d=2
    )
    study = {
        "K": {m: (batch, loop.loop_params(m, dim=2)) for m in ("pbpo", "greedy")},
        "empty": {},
        "scale": {0.5: (batch, loop.loop_params(dim=2, radius_scale=0.5))},
    }
    got = loop.run_study(keys, study, cfg)
    flat = [s for group in study.values() for s in group.values()]
    want = loop.run_settings(keys, [e for e, _ in flat], [p for _, p in flat], cfg)
    assert list(got) == ["K", "empty", "scale"] and got["empty"] == {}
    assert list(got["K"]) == ["pbpo", "greedy"] and list(got["scale"]) == [0.5]
    for r, w in zip([*got["K"].values(), got["scale"][0.5]], want):
        np.testing.assert_array_equal(r, w)

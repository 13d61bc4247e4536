"""ActiveDPO's pieces against independent computations, in float64: per-example LoRA gradients of
the implicit reward (a loop of single-row ``jax.grad`` of β log π_θ/π_ref, central finite
differences, padding), the blockwise random projection (the materialised matrix; unbiased inner
products with the stated variance), the low-rank greedy selection (brute-force log-det greedy,
the direct V⁻¹, the (φ, λ) → (cφ, c²λ) invariance) and the log-linear reduction to APO."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpref import design, llm
from jaxpref.llm.grad_features import (
    lora_projection_error,
    lora_reward_grads,
    per_example_grads,
)
from jaxpref.policies import loglinear

BETA = 0.5


@pytest.fixture(scope="module")
def model():
    cfg = llm.DecoderConfig.tiny(num_layers=1, hidden_size=16, head_dim=4, intermediate_size=32)
    m = llm.create_model(cfg, seed=0, dtype=jnp.float64)
    llm.apply_lora(m, llm.LoRAConfig(rank=2, alpha=4.0, target=r"(q|v)_proj"), rngs=nnx.Rngs(1))
    _, lora, _ = nnx.split(m, llm.LoRAParam, ...)
    keys = iter(jax.random.split(jax.random.key(3), 16))
    nnx.update(m, jax.tree.map(lambda x: 0.3 * jax.random.normal(next(keys), x.shape), lora))
    return m


@pytest.fixture(scope="module")
def rows():
    ids = np.asarray(jax.random.randint(jax.random.key(0), (5, 7), 3, 90))
    mask = np.ones_like(ids)
    loss = mask.copy()
    loss[:, :3] = 0
    return ids, mask, loss


@pytest.fixture(scope="module")
def implicit_reward(model):
    """r(lora, ids, mask, loss) = β(log π_θ − log π_ref) of one row, the reference being the
    model with its adapters off (it must contribute nothing to the gradient)."""
    graphdef, _, rest = nnx.split(model, llm.LoRAParam, ...)

    @jax.jit
    def r(lora, ids, mask, loss):
        m = nnx.merge(graphdef, lora, rest)
        policy, _ = llm.sequence_logps(m, ids[None], mask[None], loss[None])
        ref, _ = llm.sequence_logps(llm.without_adapters(m), ids[None], mask[None], loss[None])
        return BETA * (policy[0] - ref[0])

    return r


def flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def flat_rows(tree):
    leaves = jax.tree.leaves(tree)
    return np.concatenate([np.asarray(x).reshape(x.shape[0], -1) for x in leaves], axis=1)


@pytest.fixture(scope="module")
def loop_grads(model, rows, implicit_reward):
    _, lora, _ = nnx.split(model, llm.LoRAParam, ...)
    grad = jax.jit(jax.grad(implicit_reward))
    return lora, np.stack([flat(grad(lora, *(jnp.asarray(a[i]) for a in rows))) for i in range(5)])


def test_per_example_grads_equal_a_loop_and_finite_differences(
    model, rows, loop_grads, implicit_reward
):
    lora, expected = loop_grads
    got = flat_rows(lora_reward_grads(model, *rows, beta=BETA, block_size=2))  # 5 = 2 + 2 + 1
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    rng = np.random.default_rng(0)
    for i in (0, 3):
        v = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)), lora)
        eps = 1e-5
        shifted = lambda s: jax.tree.map(lambda a, b: a + s * eps * b, lora, v)  # noqa: E731
        row = [jnp.asarray(a[i]) for a in rows]
        fd = (implicit_reward(shifted(1), *row) - implicit_reward(shifted(-1), *row)) / (2 * eps)
        np.testing.assert_allclose(got[i] @ flat(v), fd, rtol=1e-6)


def test_padding_changes_nothing(model, rows, loop_grads):
    ids, mask, loss = rows
    _, expected = loop_grads
    pid, pmask, ploss = (np.zeros((2, 10), np.int64) for _ in range(3))
    pid[0, 3:], pmask[0, 3:], ploss[0, 3:] = ids[1], 1, loss[1]  # left padded
    pid[1, :7], pmask[1, :7], ploss[1, :7] = ids[2], 1, loss[2]  # right padded
    got = flat_rows(lora_reward_grads(model, pid, pmask, ploss, beta=BETA, block_size=2))
    np.testing.assert_allclose(got, expected[1:3], rtol=1e-9, atol=1e-12)


def test_projected_features_equal_the_materialised_matrix(model, rows, loop_grads):
    _, expected = loop_grads
    key = jax.random.key(11)
    got = lora_reward_grads(model, *rows, beta=BETA, block_size=2, dim=12, key=key, chunk_size=40)
    grads = lora_reward_grads(model, *rows, beta=BETA, block_size=2)
    R = design.projection_matrix(grads, key, 12, chunk_size=40)
    assert R.shape == (12, expected.shape[1])
    np.testing.assert_allclose(got, expected @ np.asarray(R).T, rtol=1e-9, atol=1e-12)


def test_projection_error_against_the_loop_gradients(model, rows, loop_grads):
    """lora_projection_error (the experiment's check on a real model) reports what the loop of
    single-row gradients gives: P, max|G Rᵀ|, round-off for the blockwise features and a large
    error for features projected with another key."""
    _, expected = loop_grads
    key, opts = jax.random.key(11), dict(beta=BETA, block_size=2, chunk_size=40)  # compiled above
    raw = lora_reward_grads(model, *rows, beta=BETA, block_size=2)
    dense = expected @ np.asarray(design.projection_matrix(raw, key, 12, chunk_size=40)).T
    good = lora_reward_grads(model, *rows, dim=12, key=key, **opts)
    out = lora_projection_error(model, *rows, good, key=key, **opts)
    assert out["lora_parameters"] == expected.shape[1]
    assert out["projection_scale"] == pytest.approx(np.max(np.abs(dense)), rel=1e-12)
    assert out["projection_max_abs_error"] <= 1e-12 * out["projection_scale"]
    other = lora_reward_grads(model, *rows, dim=12, key=jax.random.key(12), **opts)
    wrong = lora_projection_error(model, *rows, other, key=key, **opts)
    assert wrong["projection_max_abs_error"] > 0.1 * wrong["projection_scale"]
    with pytest.raises(ValueError, match=r"projected: expected shape \(5, k\)"):
        lora_projection_error(model, *rows, good[:4], key=key, **opts)


@pytest.mark.parametrize("kind", design.sketch.KINDS)
def test_blockwise_projection_of_a_pytree(kind):
    rng = np.random.default_rng(1)
    tree = {"a": jnp.asarray(rng.normal(size=(3, 5, 7))), "b": jnp.asarray(rng.normal(size=(3, 9)))}
    key = jax.random.key(2)
    got = design.random_projection(tree, key, 6, kind=kind, chunk_size=4)
    R = np.asarray(design.projection_matrix(tree, key, 6, kind=kind, chunk_size=4))
    X = np.concatenate([np.asarray(tree["a"]).reshape(3, -1), np.asarray(tree["b"])], axis=1)
    np.testing.assert_allclose(got, X @ R.T, rtol=1e-12, atol=1e-12)
    values = np.unique(np.round(np.abs(R) * np.sqrt(6), 12))
    if kind == "rademacher":
        np.testing.assert_allclose(values, [1.0])
    again = design.random_projection(tree, key, 6, kind=kind, chunk_size=4)
    np.testing.assert_array_equal(got, again)  # a fixed key: the same R every call


@pytest.mark.parametrize("kind", design.sketch.KINDS)
def test_projected_inner_products_unbiased_with_the_stated_variance(kind):
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=30), rng.normal(size=30) + 0.5 * rng.normal(size=30) ** 2
    xy = jnp.asarray(np.stack([x, y]))
    k, n = 8, 20000

    def product(key):
        g = design.random_projection(xy, key, k, kind=kind, chunk_size=16)
        return g[0] @ g[1]

    z = np.asarray(jax.vmap(product)(jax.random.split(jax.random.key(0), n)))
    se_mean = z.std() / np.sqrt(n)
    assert abs(z.mean() - x @ y) < 4 * se_mean
    var = float(design.projected_inner_product_variance(x, y, k, kind))
    m4 = np.mean((z - z.mean()) ** 4)
    se_var = np.sqrt((m4 - z.var() ** 2) / n)
    assert abs(z.var() - var) < 4 * se_var, (z.var(), var, se_var)


@pytest.mark.parametrize("k, n_past", [(40, 3), (6, 0), (6, 9)])
def test_picks_equal_brute_force_greedy_logdet(k, n_past):
    rng = np.random.default_rng(k + n_past)
    phi, past = rng.normal(size=(15, k)), rng.normal(size=(n_past, k))
    lam = 0.3
    sel = design.gradient_uncertainty_batch(phi, 6, lam=lam, past=past)
    picks, logdets = design.brute_force_greedy_logdet(phi, 6, lam=lam, past=past)
    assert sel.indices.tolist() == picks
    np.testing.assert_allclose(sel.logdets, logdets, rtol=1e-10)


def test_low_rank_scores_equal_the_direct_inverse():
    rng = np.random.default_rng(3)
    phi, past = rng.normal(size=(10, 50)), rng.normal(size=(4, 50))
    lam = 0.7
    state = design.gradient_design_init(phi, past, lam=lam, capacity=7)
    V_inv = np.linalg.inv(lam * np.eye(50) + past.T @ past)
    np.testing.assert_allclose(state.scores, np.einsum("ij,jk,ik->i", phi, V_inv, phi), rtol=1e-10)
    for _ in range(3):
        state, j = design.gradient_design_update(state, jnp.asarray(phi))
        V_inv = np.linalg.inv(np.linalg.inv(V_inv) + np.outer(phi[j], phi[j]))
        direct = np.einsum("ij,jk,ik->i", phi, V_inv, phi)
        np.testing.assert_allclose(state.scores, direct, rtol=1e-9, atol=1e-12)


def test_picks_invariant_under_scaling_features_and_lambda():
    rng = np.random.default_rng(4)
    phi, past = rng.normal(size=(20, 12)), rng.normal(size=(5, 12))
    base = design.gradient_uncertainty_batch(phi, 8, lam=0.5, past=past)
    c = 7.0
    scaled = design.gradient_uncertainty_batch(c * phi, 8, lam=c * c * 0.5, past=c * past)
    assert base.indices.tolist() == scaled.indices.tolist()
    np.testing.assert_allclose(base.scores, scaled.scores, rtol=1e-10)


def test_hand_computed_pick_and_pair_features():
    phi = jnp.array([[1.0, 0.0], [0.0, 2.0], [0.0, 1.9]])
    sel = design.gradient_uncertainty_batch(phi, 2, lam=1.0)
    # V₀ = I: scores 1, 4, 3.61 → pick 1; then V = diag(1, 5): scores 1, 3.61/5 → pick 0
    assert sel.indices.tolist() == [1, 0]
    np.testing.assert_allclose(sel.scores, [4.0, 1.0])
    g = jnp.array([[3.0, 4.0], [0.0, 2.0]])
    first, second = jnp.array([0]), jnp.array([1])
    np.testing.assert_allclose(design.pair_features(g, first, second, normalize="none"), [[3, 2]])
    np.testing.assert_allclose(
        design.pair_features(g, first, second, normalize="response"), [[0.6, -0.2]]
    )
    np.testing.assert_allclose(
        design.pair_features(g, first, second, normalize="difference"),
        [[3 / np.sqrt(13), 2 / np.sqrt(13)]],
    )


def test_log_linear_reduction_to_apo():
    """On π(y|x) ∝ exp(φ(x, y)ᵀθ), ∇r_θ(x, y₁) − ∇r_θ(x, y₂) = β(φ₁ − φ₂) exactly, so
    un-normalised ActiveDPO is design.apo on β·φ_diff with γ = λ, pick for pick."""
    rng = np.random.default_rng(6)
    n_ctx, K, d = 12, 3, 5
    phi = jnp.asarray(rng.normal(size=(n_ctx, K, d)))
    theta = jnp.asarray(rng.normal(size=d))
    ctx = np.repeat(np.arange(n_ctx), 3)
    y1, y2 = np.tile([0, 0, 1], n_ctx), np.tile([1, 2, 2], n_ctx)  # C(3, 2) pairs per context
    responses = {"phi": phi[np.repeat(np.arange(n_ctx), K)], "y": jnp.tile(jnp.arange(K), n_ctx)}

    def reward(theta, row):  # β log π_θ(y|x); π_ref contributes nothing
        return BETA * loglinear.log_probs(theta, row["phi"])[row["y"]]

    g = per_example_grads(reward, theta, responses, block_size=4)
    first, second = ctx * K + y1, ctx * K + y2
    features = design.pair_features(g, first, second, normalize="none")
    phi_diff = phi[ctx, y1] - phi[ctx, y2]
    np.testing.assert_allclose(features, BETA * phi_diff, rtol=1e-12, atol=1e-12)
    lam = 0.2
    ours = design.gradient_uncertainty_batch(features, 10, lam=lam).indices
    apo = design.apo(BETA * phi_diff, 10, gamma=lam).indices
    assert ours.tolist() == apo.tolist()


def test_bad_input_names_the_argument(model, rows, library_checks_only):
    phi = jnp.ones((4, 3))
    with pytest.raises(ValueError, match="lam"):
        design.gradient_uncertainty_batch(phi, 2, lam=0.0)
    with pytest.raises(ValueError, match="batch_size"):
        design.gradient_uncertainty_batch(phi, 5, lam=1.0)
    with pytest.raises(ValueError, match="past"):
        design.gradient_uncertainty_batch(phi, 2, lam=1.0, past=jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="dim"):
        design.random_projection(phi, jax.random.key(0), 0)
    with pytest.raises(ValueError, match="dim"):
        lora_reward_grads(model, *rows, dim=0)
    with pytest.raises(ValueError, match="normalize"):
        design.pair_features(phi, jnp.array([0]), jnp.array([1]), normalize="l2")
    plain = llm.create_model(llm.DecoderConfig.tiny(num_layers=1), seed=0)
    with pytest.raises(ValueError, match="model: has no LoRA"):
        lora_reward_grads(plain, *rows)

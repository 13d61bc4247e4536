"""RLHF's estimators against the exact gradient by enumeration, α = 1 ≡ KL-RLHF, the oracle's
re-encoding, and a tiny end-to-end run of PPO and RLOO."""

import itertools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpref import llm
from jaxpref.train.config import RLHFConfig
from jaxpref.train.rlhf import RLHF, ActorCritic, penalties

V, T, PROMPT = 4, 2, [1, 2]
TOK = types.SimpleNamespace(pad_token_id=0, eos_token_id=None)


def _config(**kw):
    base = dict(
        model_name_or_path="m",
        dataset_name="d",
        output_dir="o",
        reward_model_path="r",
        max_new_tokens=T,
        beta=0.5,
        alpha=0.3,
        clip_reward_value=100.0,
        lam=1.0,
        gamma=1.0,
    )
    return RLHFConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def world():
    """A float64 policy, reference and critic over a 4-token vocabulary; every 2-token response."""
    config = llm.DecoderConfig.tiny(vocab_size=V, max_position_embeddings=8)
    actor = llm.create_model(config, seed=1, dtype=jnp.float64)
    ref = llm.create_model(config, seed=2, dtype=jnp.float64)
    backbone = llm.Decoder(
        llm.reward.reward_backbone_config(config), dtype=jnp.float64, rngs=nnx.Rngs(3)
    )
    critic = llm.RewardModel(backbone, rngs=nnx.Rngs(4))
    ys = np.array(list(itertools.product(range(V), repeat=T)))  # 16 responses
    tokens = jnp.asarray(np.concatenate([np.tile(PROMPT, (len(ys), 1)), ys], 1), jnp.int32)
    mask = jnp.ones_like(tokens)
    response = mask.at[:, : len(PROMPT)].set(0)
    scores = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, len(ys)))
    return ActorCritic(actor, critic), {"ref": ref}, tokens, mask, response, scores


def _exact_objective_grad(recipe, model, frozen, tokens, mask, response, scores):
    """∇ of J(θ) = Σ_y π_θ(y) [s(y) + β·bonus(y) − β Σ_t c_t(y; θ)], by autodiff."""
    c = recipe.config
    graphdef, params, rest = nnx.split(model.actor, nnx.Param, ...)
    ref_logp = llm.sequence_logps(frozen["ref"], tokens, mask, response)[1][:, -T:]

    def objective(p):
        actor = nnx.merge(graphdef, p, rest)
        logp = llm.sequence_logps(actor, tokens, mask, response)[1][:, -T:]
        pen, bonus = penalties(c.penalty, logp, ref_logp, jnp.ones_like(logp), c.alpha)
        prob = jnp.exp(logp.sum(-1))
        return jnp.sum(prob * (scores + c.beta * bonus - c.beta * pen.sum(-1)))

    total = jnp.exp(llm.sequence_logps(model.actor, tokens, mask, response)[0]).sum()
    assert abs(float(total) - 1) < 1e-9  # every response is enumerated
    return jax.grad(objective)(params), params


def _estimator_grad(recipe, model, frozen, batch, weight):
    """∇ of the recipe's own loss over a batch whose rows carry the probabilities as weights."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    batch = {**batch, "weight": weight}

    def loss(p):
        return recipe.stats(nnx.merge(graphdef, p, rest), frozen, batch)["loss/actor"]

    return jax.grad(loss)(params)["actor"]


@pytest.mark.parametrize("penalty", ["kl", "pm", "cond_pm_token", "cond_pm_sequence"])
def test_ppo_expected_gradient_is_the_exact_gradient(world, penalty):
    model, frozen, tokens, mask, response, scores = world
    recipe = RLHF(_config(penalty=penalty, algorithm="ppo"), TOK, oracle=None)
    ones = jnp.ones(tokens.shape[0])
    batch, _ = recipe.experience(model, frozen, tokens, mask, response, scores, ones)
    exact, _ = _exact_objective_grad(recipe, model, frozen, tokens, mask, response, scores)
    prob = jnp.exp(batch["old_logps"].sum(-1))
    expected = _estimator_grad(recipe, model, frozen, batch, prob)  # Σ_y π(y) ∇ loss(y)
    for (path, g), (_, e) in zip(
        jax.tree_util.tree_leaves_with_path(expected), jax.tree_util.tree_leaves_with_path(exact)
    ):
        np.testing.assert_allclose(
            np.asarray(g), -np.asarray(e), rtol=1e-7, atol=1e-10, err_msg=jax.tree_util.keystr(path)
        )


@pytest.mark.parametrize("penalty", ["kl", "pm", "cond_pm_token", "cond_pm_sequence"])
def test_rloo_expected_gradient_is_the_exact_gradient(world, penalty):
    model, frozen, tokens, mask, response, scores = world
    recipe = RLHF(_config(penalty=penalty, algorithm="rloo", rloo_k=2), TOK, oracle=None)
    n = tokens.shape[0]
    pairs = np.array(list(itertools.product(range(n), repeat=2))).reshape(-1)  # every (y1, y2)
    take = lambda x: x[pairs]  # noqa: E731
    ones = jnp.ones(len(pairs))
    batch, _ = recipe.experience(
        model, frozen, take(tokens), take(mask), take(response), take(scores), ones
    )
    prob = jnp.exp(batch["old_logps"].sum(-1)).reshape(-1, 2)
    weight = jnp.repeat(prob.prod(-1), 2)  # π(y1) π(y2) on both rows of a pair
    expected = _estimator_grad(recipe, model, frozen, batch, weight)
    exact, _ = _exact_objective_grad(recipe, model, frozen, tokens, mask, response, scores)
    for g, e in zip(jax.tree.leaves(expected), jax.tree.leaves(exact)):
        np.testing.assert_allclose(np.asarray(g), -2 * np.asarray(e), rtol=1e-7, atol=1e-10)


def test_alpha_one_token_gate_is_kl_rlhf_exactly(world):
    model, frozen, tokens, mask, response, scores = world
    ones = jnp.ones(tokens.shape[0])
    kl = RLHF(_config(penalty="kl"), TOK, oracle=None)
    gate = RLHF(_config(penalty="cond_pm_token", alpha=1.0), TOK, oracle=None)
    a, ma = kl.experience(model, frozen, tokens, mask, response, scores, ones)
    b, mb = gate.experience(model, frozen, tokens, mask, response, scores, ones)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
    assert ma == mb


def test_penalties_reduce_to_the_regularizers():
    from jaxpref.regularizers import pm_regularizer

    logp = jnp.log(jnp.array([[0.5, 0.2], [0.9, 0.05]]))
    ref = jnp.log(jnp.array([[0.4, 0.3], [0.5, 0.5]]))
    m = jnp.ones_like(logp)
    np.testing.assert_allclose(penalties("kl", logp, ref, m, 0.3)[0], logp - ref)
    np.testing.assert_allclose(
        penalties("pm", logp, ref, m, 0.3)[0], -pm_regularizer(jnp.exp(logp)), rtol=1e-12
    )
    gated = penalties("cond_pm_token", logp, ref, m, 0.45)[0]  # only ref 0.5 > 0.45 is gated
    np.testing.assert_allclose(
        gated, [[logp[0, 0] - ref[0, 0], logp[0, 1] - ref[0, 1]], [logp[1, 0], logp[1, 1]]]
    )
    c, bonus = penalties("cond_pm_sequence", logp, ref, m, 0.2)  # π_ref(y) = .12, .25
    np.testing.assert_allclose(bonus, [ref[0].sum(), 0.0])
    np.testing.assert_allclose(c, logp)

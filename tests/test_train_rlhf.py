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


# ---- the oracle and end-to-end runs on the synthetic task ---------------------------------

import pathlib  # noqa: E402

import llm_task  # noqa: E402

from jaxpref.train import OnlineDPOConfig, train  # noqa: E402
from jaxpref.train.oracle import RewardOracle, label_pairs  # noqa: E402


def test_oracle_reencodes_rows_of_another_tokenizer(tmp_path):
    """An oracle whose word ids differ scores the policy's rows as it would score the text."""
    policy_tok, oracle_tok = llm_task.make_tokenizer(), llm_task.make_tokenizer(permuted=True)
    config = llm.DecoderConfig.tiny(vocab_size=40, pad_token_id=0, eos_token_id=2)
    rm = llm.RewardModel(
        llm.Decoder(llm.reward.reward_backbone_config(config), rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1)
    )
    llm.save_reward_model(rm, tmp_path / "rm")
    oracle_tok.save_pretrained(str(tmp_path / "rm"))
    oracle = RewardOracle(tmp_path / "rm", policy_tokenizer=policy_tok)
    assert oracle.reencode
    row = llm_task.rows(1, 0)[0]
    p_ids = policy_tok(row["prompt"])["input_ids"]
    r_ids = policy_tok(row["chosen"], add_special_tokens=False)["input_ids"] + [2]
    ids = np.array([[0, 0] + p_ids + r_ids])  # left padding
    mask = (ids != 0).astype(np.int32)
    got = oracle.score(ids, mask, np.array([len(p_ids)]))
    direct = oracle_tok(row["prompt"] + row["chosen"])["input_ids"] + [2]
    want = rm(jnp.asarray([direct]), jnp.ones((1, len(direct)), jnp.int32))
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-6)
    assert direct != p_ids + r_ids  # the two tokenizers really differ


def test_labellers():
    s1, s2 = jnp.array([1.0, 0.0, 0.5]), jnp.array([0.0, 1.0, 0.5])
    np.testing.assert_array_equal(label_pairs(s1, s2), [1.0, 0.0, 1.0])  # ties: the first
    draws = label_pairs(
        jnp.full(4000, 1.0), jnp.zeros(4000), labeller="bradley_terry", key=jax.random.key(0)
    )
    assert abs(float(draws.mean()) - float(jax.nn.sigmoid(1.0))) < 0.03
    with pytest.raises(ValueError, match="key"):
        label_pairs(s1, s2, labeller="bradley_terry")
    with pytest.raises(ValueError, match="labeller"):
        label_pairs(s1, s2, labeller="coin")


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """The synthetic task with a tiny SFT-free policy and a trained reward model."""
    from jaxpref.train import RewardConfig

    root = tmp_path_factory.mktemp("rl_task")
    data = llm_task.write_dataset(root / "data", n_train=64, n_test=8)
    base = llm_task.make_model_dir(root / "base")
    train(
        RewardConfig(
            model_name_or_path=str(base),
            dataset_name=str(data),
            output_dir=str(root / "rm"),
            max_steps=25,
            learning_rate=3e-3,
            per_device_train_batch_size=2,
            max_length=24,
            save_steps=0,
            disable_tqdm=True,
        ),
        log=lambda _: None,
    )
    return {"root": root, "data": data, "base": base, "rm": root / "rm"}


RL = dict(
    max_new_tokens=6,
    max_prompt_length=12,
    per_device_train_batch_size=2,
    save_steps=0,
    disable_tqdm=True,
    logging_steps=1,
    dataset_test_split="none",
)


@pytest.mark.parametrize("algorithm", ["ppo", "rloo"])
def test_rlhf_runs_end_to_end(task, algorithm, tmp_path):
    out = tmp_path / algorithm
    config = RLHFConfig(
        model_name_or_path=str(task["base"]),
        reward_model_path=str(task["rm"]),
        dataset_name=str(task["data"]),
        output_dir=str(out),
        algorithm=algorithm,
        max_steps=3,
        learning_rate=1e-3,
        penalty="cond_pm_token",
        alpha=0.3,
        **RL,
    )
    result = train(config, log=lambda _: None)
    row = result.history[-1]
    assert {"rollout/score", "rollout/kl", "rollout/length", "loss"} <= set(row)
    assert ("loss/critic" in row) == (algorithm == "ppo")
    assert 1 <= row["rollout/length"] <= 6
    llm.from_pretrained(out)
    assert (out / "critic" / "config.json").exists() == (algorithm == "ppo")


def test_online_dpo_resume_with_a_refreshed_reference_is_bit_identical(task, tmp_path):
    from safetensors.numpy import load_file

    kw = dict(
        model_name_or_path=str(task["base"]),
        reward_model_path=str(task["rm"]),
        dataset_name=str(task["data"]),
        max_steps=4,
        learning_rate=1e-2,
        use_peft=True,
        ref_update_steps=2,
        **{**RL, "save_steps": 2},
    )
    train(OnlineDPOConfig(output_dir=str(tmp_path / "full"), **kw), log=lambda _: None)

    class Killed(Exception):
        pass

    def die(step, _):
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        train(
            OnlineDPOConfig(output_dir=str(tmp_path / "cut"), **kw), on_step=die, log=lambda _: None
        )
    train(OnlineDPOConfig(output_dir=str(tmp_path / "cut"), resume=True, **kw), log=lambda _: None)
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model.safetensors"))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert pathlib.Path(tmp_path / "cut" / "metrics.jsonl").read_text().count("\n") == 4


def test_rlhf_bad_options_fail_before_any_rollout(task, tmp_path):
    base = dict(
        model_name_or_path=str(task["base"]),
        dataset_name=str(task["data"]),
        output_dir=str(tmp_path / "x"),
        reward_model_path=str(task["rm"]),
    )
    for bad, msg in (
        ({"alpha": 0.0}, "alpha: must lie in \\(0, 1\\]"),
        ({"alpha": 1.5}, "alpha"),
        ({"beta": 0.0}, "beta: must be > 0"),
        ({"rloo_k": 1}, "rloo_k"),
    ):
        with pytest.raises(ValueError, match=msg):
            RLHFConfig(**{**base, **bad})
    with pytest.raises(ValueError, match="reward_model_path: .* is not a model directory"):
        train(RLHFConfig(**{**base, "reward_model_path": str(tmp_path / "nope")}))
    too_long = RLHFConfig(
        **{**base, "max_new_tokens": 100, **{k: v for k, v in RL.items() if k != "max_new_tokens"}}
    )
    with pytest.raises(ValueError, match="max_new_tokens"):
        train(too_long, log=lambda _: None)
    assert not (tmp_path / "x").exists()

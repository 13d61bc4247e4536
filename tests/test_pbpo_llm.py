"""PbPO on a language model (``jaxpref train pbpo``): the pessimistic value its policy step
trains on equals the minimum over the confidence set found by a generic constrained solver, for
every response of an enumerable policy; the episodes fill the set and refresh the reference;
bad options fail naming the argument before any work."""

import itertools
import json
import pathlib
import types

import jax.numpy as jnp
import llm_task
import numpy as np
import pytest
import scipy.optimize
from flax import nnx

from jaxpref import llm, pbpo
from jaxpref.train import train
from jaxpref.train.config import PbPOConfig
from jaxpref.train.pbpo import PbPO

V, T, PROMPT = 4, 2, [1, 2, 3]
TOK = types.SimpleNamespace(pad_token_id=0, eos_token_id=None)


def _config(**kw):
    base = dict(model_name_or_path="m", dataset_name="d", output_dir="o", reward_model_path="r")
    return PbPOConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def enumerated():
    """φ of every 2-token response (16) of a float64 reward backbone (d = 8), and a stored set
    of 12 BTL-labelled pairs among them."""
    config = llm.DecoderConfig.tiny(
        vocab_size=V, hidden_size=8, num_heads=2, num_kv_heads=1, head_dim=4
    )
    backbone = llm.Decoder(
        llm.reward.reward_backbone_config(config), dtype=jnp.float64, rngs=nnx.Rngs(0)
    )
    ys = np.array(list(itertools.product(range(V), repeat=T)))
    ids = jnp.asarray(np.concatenate([np.tile(PROMPT, (len(ys), 1)), ys], 1), jnp.int32)
    phi = np.asarray(llm.sequence_features(backbone, ids, jnp.ones_like(ids)), np.float64)
    rng = np.random.default_rng(1)
    pairs = rng.integers(0, len(ys), (12, 2))
    delta_phi = phi[pairs[:, 1]] - phi[pairs[:, 0]]
    theta_star = rng.normal(size=phi.shape[1])
    labels = (rng.random(12) < 1 / (1 + np.exp(-delta_phi @ theta_star))).astype(np.float64)
    capacity = 16  # 4 empty slots: the buffer's padding must not count
    buffer = {
        "delta_phi": jnp.zeros((capacity, phi.shape[1])).at[:12].set(delta_phi),
        "labels": jnp.zeros(capacity).at[:12].set(labels),
        "count": jnp.asarray(12, jnp.int32),
    }
    return phi, buffer, delta_phi, labels


def _recipe(**kw):
    features = types.SimpleNamespace(dim=8)
    return PbPO(_config(num_episodes=4, pairs_per_episode=4, **kw), TOK, None, features)


def _brute_force_min(theta_hat, gram, radius, u):
    """min ⟨θ, u⟩ s.t. (θ − θ̂)ᵀΣ(θ − θ̂) ≤ β², by SLSQP from θ̂ (float64, no closed form)."""
    cons = {
        "type": "ineq",
        "fun": lambda th: radius**2 - (th - theta_hat) @ gram @ (th - theta_hat),
        "jac": lambda th: -2 * gram @ (th - theta_hat),
    }
    res = scipy.optimize.minimize(
        lambda th: th @ u,
        theta_hat,
        jac=lambda th: u,
        constraints=[cons],
        method="SLSQP",
        options={"ftol": 1e-13, "maxiter": 500},
    )
    assert res.success, res.message
    return res.fun


@pytest.mark.parametrize("rule", [dict(radius=0.8), dict(radius_rule="heuristic")])
def test_pessimistic_values_equal_the_brute_force_minimum_over_the_set(enumerated, rule):
    phi, buffer, delta_phi, labels = enumerated
    recipe = _recipe(**rule)
    values = np.asarray(recipe.response_values(buffer, phi, np.tile(phi[5], (len(phi), 1))))
    # the set, from its definition, in float64 (independently of the recipe)
    res = scipy.optimize.minimize(
        lambda th: np.sum(np.logaddexp(0, -(2 * labels - 1) * (delta_phi @ th))) + 0.5 * th @ th,
        np.zeros(8),
        method="BFGS",
        options={"gtol": 1e-10},
    )
    theta_hat, gram = res.x, np.eye(8) + delta_phi.T @ delta_phi
    s = recipe.confidence_set(buffer)
    np.testing.assert_allclose(np.asarray(s.theta_hat), theta_hat, atol=1e-5)
    np.testing.assert_allclose(np.asarray(s.gram), gram, rtol=1e-6)
    radius = s.radius
    if "radius" in rule:
        assert radius == 0.8
    else:  # κ = 1: ½√(2 log(1/δ) + d log(1 + k L²/(dλ))) + √λ B, L = the largest ‖Δφ‖
        big_l = np.linalg.norm(delta_phi, axis=1).max()
        expect = 0.5 * np.sqrt(2 * np.log(20) + 8 * np.log1p(12 * big_l**2 / 8)) + 1.0
        np.testing.assert_allclose(radius, expect, rtol=1e-5)
    for y in range(len(phi)):
        u = phi[y] - phi[5]
        brute = 0.0 if y == 5 else _brute_force_min(theta_hat, gram, radius, u)
        np.testing.assert_allclose(values[y], brute, rtol=1e-4, atol=1e-5)
    # and no point of the set (sampled inside and on the boundary) goes below the value
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4000, 8))
    z *= (rng.random((4000, 1)) ** (1 / 8)) / np.linalg.norm(z, axis=1, keepdims=True)
    thetas = theta_hat + radius * np.linalg.solve(np.linalg.cholesky(gram).T, z.T).T
    u = phi - phi[5]
    assert np.all(thetas @ u.T >= values[None, :] - 1e-4)


def test_greedy_value_is_the_plug_in_reward(enumerated):
    phi, buffer, _, _ = enumerated
    recipe = _recipe(policy_objective="greedy", radius=0.8)
    s = recipe.confidence_set(buffer)
    values = recipe.response_values(buffer, phi, np.tile(phi[0], (len(phi), 1)))
    np.testing.assert_allclose(
        np.asarray(values), (phi - phi[0]) @ np.asarray(s.theta_hat), rtol=1e-6, atol=1e-9
    )


def test_stackelberg_follower_reaches_the_penalised_minimum(enumerated):
    """The follower of ``policy_objective=stackelberg`` descends G(θ) = mean_i⟨θ, u_i⟩ + η ℓ_λ(θ)
    monotonically with its default step 1/L and ends at G's minimiser (BFGS in float64)."""
    phi, buffer, delta_phi, labels = enumerated
    eta, steps = 2.0, 400
    recipe = _recipe(policy_objective="stackelberg", penalty_weight=eta, reward_steps=steps)
    buffer = buffer | {"theta": jnp.zeros(8), "theta_pairs": jnp.asarray(0, jnp.int32)}
    u, weight = phi - phi[5], np.ones(len(phi))
    weight[[3, 9]] = 0.0  # padding rows of the batch do not count

    def objective(th):  # G from its definition, float64
        nll = np.sum(np.logaddexp(0, -(2 * labels - 1) * (delta_phi @ th))) + 0.5 * th @ th
        return weight @ (u @ th) / weight.sum() + eta * nll

    best = scipy.optimize.minimize(objective, np.zeros(8), method="BFGS", options={"gtol": 1e-12})
    theta_hat = np.asarray(recipe.confidence_set(buffer).theta_hat)
    values = [objective(theta_hat)]
    for _ in range(20):  # warm-started: each call continues from the stored θ
        theta, buffer, metrics = recipe.follower(buffer, jnp.asarray(u), jnp.asarray(weight))
        values.append(objective(np.asarray(theta)))
    assert np.all(np.diff(values) <= 1e-9), values  # step 1/L: G never increases
    np.testing.assert_allclose(np.asarray(theta), best.x, atol=1e-5)
    np.testing.assert_allclose(values[-1], best.fun, rtol=1e-9)
    assert metrics["stackelberg/grad_norm"] < 1e-5 and metrics["stackelberg/penalty"] > 0
    # the shift away from θ̂ is the pessimism: the policy's responses look worse to θ_f
    assert weight @ (u @ best.x) < weight @ (u @ theta_hat)
    with pytest.raises(ValueError, match="policy_objective: stackelberg values"):
        recipe.response_values(buffer, phi, phi)


def test_default_radius_carries_kappa():
    assert _config().radius_rule == "certified"
    recipe = _recipe()
    x = jnp.ones((16, 8)) * 0.1
    guaranteed, free = recipe.radius_rule(x, 4), _recipe(radius_rule="heuristic").radius_rule(x, 4)
    kappa = float(pbpo.kappa_btl(1.0, float(jnp.linalg.norm(x[0]))))
    np.testing.assert_allclose(guaranteed, kappa * free, rtol=1e-6)
    local = _recipe(radius_rule="local").radius_rule(x, 4)
    np.testing.assert_allclose(local, 4.0 * free, rtol=1e-6)  # κ = 1/max σ′
    with pytest.raises(ValueError, match="radius_rule: must be one of"):
        _config(radius_rule="kappa_free")


def test_bad_options_fail_naming_the_argument():
    for bad, msg in (
        ({"delta": 0.0}, "delta: the confidence level must lie in \\(0, 1\\)"),
        ({"delta": 1.0}, "delta"),
        ({"radius": 0.0}, "radius: must be > 0"),
        ({"radius": -1.0}, "radius"),
        ({"num_episodes": 0}, "num_episodes: must be > 0"),
        ({"num_candidates": 0}, "num_candidates"),
        ({"feature_dim": 0}, "feature_dim"),
        ({"max_steps": 5}, "max_steps: must equal num_episodes"),
        ({"penalty_weight": 0.0}, "penalty_weight: must be > 0"),
        ({"reward_steps": 0}, "reward_steps: must be > 0"),
        ({"reward_lr": -0.1}, "reward_lr: must be > 0"),
        ({"policy_objective": "minimax"}, "policy_objective: must be one of"),
    ):
        with pytest.raises(ValueError, match=msg):
            _config(**bad)
    assert _config(num_episodes=3, episode_steps=2).max_steps == 6


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """The synthetic task, a tiny policy and an untrained reward-model oracle (d = 32)."""
    root = tmp_path_factory.mktemp("pbpo_task")
    data = llm_task.write_dataset(root / "data", n_train=8, n_test=2)
    base = llm_task.make_model_dir(root / "base")
    llm.save_reward_model(llm.reward_model_from_pretrained(base, seed=3), root / "rm")
    llm_task.make_tokenizer().save_pretrained(str(root / "rm"))
    from test_train_rlhf import RL  # the online trainers' tiny settings

    kw = dict(
        model_name_or_path=str(base),
        reward_model_path=str(root / "rm"),
        dataset_name=str(data),
        use_peft=True,
        pairs_per_episode=2,  # padded to the 8 test devices: rows of 8 and 16 only
        num_candidates=2,
        **{**RL, "max_new_tokens": 4, "per_device_train_batch_size": 1, "report_to": "none"},
    )
    return root, kw


def test_feature_dim_mismatch_fails_before_any_work(task, tmp_path):
    _, kw = task
    with pytest.raises(ValueError, match="feature_dim: 16 does not match the hidden size 32"):
        train(PbPOConfig(output_dir=str(tmp_path / "x"), feature_dim=16, **kw))
    assert not (tmp_path / "x").exists()


@pytest.mark.slow  # one 4-step run with sampling in the loop (~30 s quiet, ~3 min loaded)
@pytest.mark.parametrize("objective", ["pessimistic", "stackelberg"])
def test_episodes_fill_the_set_and_train(task, tmp_path, objective):
    _, kw = task
    out = tmp_path / "run"
    config = PbPOConfig(
        output_dir=str(out),
        num_episodes=2,
        episode_steps=2,
        radius_rule="heuristic",
        policy_objective=objective,
        **kw
        | ({"dataset_test_split": "test", "eval_steps": 2} if objective == "stackelberg" else {}),
    )
    result = train(config, log=lambda _: None)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in logged if "loss" in r]
    assert [r["confidence/pairs"] for r in rows] == [2, 2, 4, 4]
    first = [r for r in rows if "explore/bonus" in r]
    assert len(first) == 2 and all(r["explore/bonus"] >= r["explore/bonus_all"] for r in first)
    assert rows[2]["confidence/radius"] > rows[0]["confidence/radius"]  # grows with k
    assert all(np.isfinite(r["loss"]) and "rollout/oracle_score" in r for r in rows)
    if objective == "stackelberg":  # the follower moved off θ̂ and stayed finite
        assert all(
            r["stackelberg/shift"] > 0 and np.isfinite(r["stackelberg/penalty"]) for r in rows
        )
        evals = [r for r in logged if "eval_value" in r]  # evaluation does not move it
        assert evals and not any("eval_stackelberg/shift" in r for r in evals)
    assert rows[0]["rollout/kl"] == 0.0  # π_ref^0 is the initial policy
    llm.from_pretrained(pathlib.Path(result.output_dir))

"""Oracle-robust online DPO on a language model (``online-dpo --robust_rho``): the step's loss is
the worst case of the pair loss over the uncertainty set, found here by brute force over the
set from independently computed log-probs; ρ = 0 is nominal online DPO exactly; bad ρ fails
before any work."""

import json
import types

import jax
import jax.numpy as jnp
import llm_task
import numpy as np
import pytest
from flax import nnx

from jaxpref import llm
from jaxpref.train import train
from jaxpref.train.config import OnlineDPOConfig
from jaxpref.train.online_dpo import OnlineDPO

TOK = types.SimpleNamespace(pad_token_id=0, eos_token_id=None)
BETA, B, L, V = 0.7, 6, 7, 12


def _config(**kw):
    base = dict(
        model_name_or_path="m", dataset_name="d", output_dir="o", reward_model_path="r", beta=BETA
    )
    return OnlineDPOConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def pairs():
    """A float64 policy and reference and B random (chosen, rejected) rows with a 3-token prompt."""
    config = llm.DecoderConfig.tiny(vocab_size=V, max_position_embeddings=16)
    policy = llm.create_model(config, seed=1, dtype=jnp.float64)
    ref = llm.create_model(config, seed=2, dtype=jnp.float64)
    rng = np.random.default_rng(0)
    micro = {"weight": jnp.ones(B)}
    for side in ("chosen", "rejected"):
        ids = rng.integers(3, V, (B, L))
        mask = np.ones((B, L), np.int32)
        mask[:2, -2:] = 0  # two right-padded rows
        loss = mask.copy()
        loss[:, :3] = 0
        micro |= {
            f"{side}_input_ids": jnp.asarray(ids, jnp.int32),
            f"{side}_attention_mask": jnp.asarray(mask),
            f"{side}_loss_mask": jnp.asarray(loss),
        }
    return policy, ref, micro


def _summed_logps(model, ids, mask, loss_mask):
    """Σ_t log π(y_t | y_<t) over the loss mask, straight from the logits (float64)."""
    logits = np.asarray(model(ids, mask), np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
    logp = logp - logits.max(-1, keepdims=True)
    ids, loss_mask = np.asarray(ids), np.asarray(loss_mask)
    token = np.take_along_axis(logp[:, :-1], ids[:, 1:, None], -1)[..., 0]
    return (token * loss_mask[:, 1:]).sum(-1)


def _logits_h(policy, ref, micro):
    """h = β[(log π − log π_ref)(chosen) − (log π − log π_ref)(rejected)], independently."""

    def ratio(side):
        args = [micro[f"{side}_{k}"] for k in ("input_ids", "attention_mask", "loss_mask")]
        return _summed_logps(policy, *args) - _summed_logps(ref, *args)

    return BETA * (ratio("chosen") - ratio("rejected"))


def _brute_force_worst(h, p0, rho):
    """max over a grid of [p₀ − ρ, p₀ + ρ] ∩ [0, 1] (ends included) of the expected logistic
    loss −p log σ(h) − (1 − p) log σ(−h), float64."""
    p = np.linspace(max(0.0, p0 - rho), min(1.0, p0 + rho), 4001)
    return np.max(p * np.logaddexp(0.0, -h) + (1 - p) * np.logaddexp(0.0, h))


def _step_loss(recipe, policy, ref, micro):
    """The recipe's step loss of one micro-batch (jitted once per recipe)."""
    if not hasattr(recipe, "_test_loss"):

        def loss(micro):
            stats = recipe.stats(policy, {"ref": ref}, micro)
            return recipe.finalize(stats, recipe.counts(micro))["loss"]

        recipe._test_loss = jax.jit(loss)
    return float(recipe._test_loss(micro))


def _one_pair(micro, i, flip=False):
    """Pair i alone (weight one-hot); ``flip`` swaps chosen and rejected and p₀ ↔ 1 − p₀."""
    out = dict(micro, weight=jnp.zeros(B).at[i].set(1.0))
    if flip:
        for k in ("input_ids", "attention_mask", "loss_mask"):
            out[f"chosen_{k}"], out[f"rejected_{k}"] = micro[f"rejected_{k}"], micro[f"chosen_{k}"]
        out["p_nominal"] = 1.0 - micro["p_nominal"]
    return out


@pytest.mark.parametrize("rho", [0.05, 0.3, 0.5])
def test_argmax_step_loss_is_the_brute_force_worst_case(pairs, rho):
    policy, ref, micro = pairs
    recipe = OnlineDPO(_config(robust_rho=rho), TOK, None, reference="frozen")
    micro = dict(micro, p_nominal=jnp.ones(B))  # the argmax oracle: P°(chosen ≻ rejected) = 1
    h = _logits_h(policy, ref, micro)
    assert (h > 0).any() and (h < 0).any()  # both sides of the kink are exercised
    worst = np.mean([_brute_force_worst(hi, 1.0, rho) for hi in h])
    np.testing.assert_allclose(_step_loss(recipe, policy, ref, micro), worst, rtol=1e-9)


def test_bradley_terry_step_loss_is_unbiased_for_the_worst_case(pairs):
    """With a sampled label, E_label[step loss] = max_{p ∈ U_ρ(p₀)} ℓ(h; p), p₀ = σ(Δs)."""
    policy, ref, micro = pairs
    rho = 0.2
    recipe = OnlineDPO(
        _config(robust_rho=rho, labeller="bradley_terry"), TOK, None, reference="frozen"
    )
    p0 = np.array([0.02, 0.1, 0.35, 0.5, 0.8, 0.97])  # clipping binds for some pairs
    micro = dict(micro, p_nominal=jnp.asarray(p0))
    h = _logits_h(policy, ref, micro)
    for i in range(B):
        as_labelled = _step_loss(recipe, policy, ref, _one_pair(micro, i))
        flipped = _step_loss(recipe, policy, ref, _one_pair(micro, i, flip=True))
        expected = p0[i] * as_labelled + (1 - p0[i]) * flipped
        np.testing.assert_allclose(expected, _brute_force_worst(h[i], p0[i], rho), rtol=1e-9)
    np.testing.assert_allclose(
        np.asarray(recipe.nominal_probability(jnp.array([1.0, -2.0]), jnp.array([0.0, 0.0]))),
        1 / (1 + np.exp([-1.0, 2.0])),
    )


def test_rho_zero_step_is_the_nominal_step(pairs):
    policy, ref, micro = pairs
    micro = dict(micro, p_nominal=jnp.ones(B))
    nominal = OnlineDPO(_config(), TOK, None, reference="frozen")
    robust0 = OnlineDPO(_config(robust_rho=0.0), TOK, None, reference="frozen")
    graphdef, params, rest = nnx.split(policy, nnx.Param, ...)

    def loss_and_grad(recipe):
        def loss(p):
            model = nnx.merge(graphdef, p, rest)
            stats = recipe.stats(model, {"ref": ref}, micro)
            return recipe.finalize(stats, recipe.counts(micro))["loss"]

        return jax.jit(jax.value_and_grad(loss))(params)

    (a, ga), (b, gb) = loss_and_grad(nominal), loss_and_grad(robust0)
    assert float(a) == float(b)
    for x, y in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_bad_rho_fails_naming_it():
    for bad in (-0.01, 0.51, 1.0):
        with pytest.raises(ValueError, match=r"robust_rho: must lie in \[0, 0.5\]"):
            _config(robust_rho=bad)
    with pytest.raises(ValueError, match="robust_rho: .*sigmoid"):
        _config(robust_rho=0.1, loss_type=("ipo",))


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """The synthetic task, a tiny policy and an untrained (random-head) reward-model oracle."""
    root = tmp_path_factory.mktemp("robust_task")
    data = llm_task.write_dataset(root / "data", n_train=16, n_test=4)
    base = llm_task.make_model_dir(root / "base")
    rm = llm.reward_model_from_pretrained(base, seed=3)
    llm.save_reward_model(rm, root / "rm")
    llm_task.make_tokenizer().save_pretrained(str(root / "rm"))
    return {"data": data, "base": base, "rm": root / "rm"}


@pytest.mark.slow  # two online-DPO runs (~20 s quiet); the step-level test above is the fast one
def test_rho_zero_run_is_nominal_online_dpo_exactly(task, tmp_path):
    from safetensors.numpy import load_file
    from test_train_rlhf import RL  # the online trainers' tiny settings

    kw = dict(
        model_name_or_path=str(task["base"]),
        reward_model_path=str(task["rm"]),
        dataset_name=str(task["data"]),
        max_steps=2,
        learning_rate=1e-2,
        use_peft=True,
        **{**RL, "max_new_tokens": 5, "report_to": "none"},
    )
    runs = {}
    for name, rho in (("nominal", None), ("rho0", 0.0)):
        out = tmp_path / name
        train(OnlineDPOConfig(output_dir=str(out), robust_rho=rho, **kw), log=lambda _: None)
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        runs[name] = (load_file(str(out / "model.safetensors")), rows)
    (a, rows_a), (b, rows_b) = runs["nominal"], runs["rho0"]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    for ra, rb in zip(rows_a, rows_b):
        assert ra["loss"] == rb["loss"] and rb["loss/robust_excess"] == 0.0
        assert ra["rollout/score_chosen"] == rb["rollout/score_chosen"]

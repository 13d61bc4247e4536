"""RLHF with generation in the loop: PPO (actor + critic, DeepSpeed-Chat's trainer, which PM
RLHF's official code forks) and RLOO, with the KL, PM or conditional-PM penalty.

Each step samples responses to a batch of prompts with the current policy, scores them with the
reward-model oracle, and turns the sampled tokens' policy and reference log-probs into a
per-token penalty c_t through ``jaxpref.regularizers``:

- ``kl``:   c_t = log π(T_t) − log π_ref(T_t), KL-RLHF's sampled estimate (``token_conditional_
  pm_penalty`` with α = 1, whose gate never opens);
- ``pm``:   c_t = log π(T_t), the PM regulariser R(π) = −log π (``pm_regularizer`` with
  C₁ = C₂ = 0) at the sampled tokens — PM RLHF, Eq. (3.10);
- ``cond_pm_token``: the official code's gate, c_t = log π(T_t) − log π_ref(T_t)·1(log π_ref(T_t)
  ≤ log α) (``token_conditional_pm_penalty``), a variant of the paper's definition;
- ``cond_pm_sequence``: the paper's Definition 4.1: c_t = log π(T_t) and the sequence reward
  gains log π_ref(y)·1(π_ref(y) < α) (``conditional_pm_shaped_reward``), times β.

The shaped objective is E[clip(s) + β·bonus − β Σ_t c_t]. PPO optimises it token by token
(``losses.shaped_token_rewards`` → ``gae_advantages`` → clipped losses); RLOO with K samples per
prompt and the leave-one-out baseline of the sequence return. Both estimators are unbiased for
the gradient of that objective (the penalty's own θ-dependence has zero expectation:
E[∇ log π] = 0), which ``tests/test_train_rlhf.py`` checks by enumeration.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpref import llm
from jaxpref.losses import (
    gae_advantages,
    leave_one_out_advantages,
    ppo_policy_loss,
    ppo_value_loss,
    shaped_token_rewards,
)
from jaxpref.regularizers import conditional_pm_shaped_reward, token_conditional_pm_penalty
from jaxpref.train.config import RLHFConfig
from jaxpref.train.recipe import Recipe, Term
from jaxpref.train.rollout import (
    encode_prompts,
    response_logps,
    rollout_step_key,
    sample_and_score,
)


class ActorCritic(nnx.Module):
    """The PPO pair trained together: the policy and its value model."""

    def __init__(self, actor: llm.Decoder, critic: llm.RewardModel | None):
        self.actor, self.critic = actor, critic


def penalties(kind: str, logp, ref_logp, mask, alpha):
    """``(c (B, T), bonus (B,))``: per-token penalties and the sequence-level reward term."""
    mask = mask.astype(logp.dtype)
    zero = jnp.zeros(logp.shape[:1], logp.dtype)
    if kind == "kl":
        return token_conditional_pm_penalty(logp, ref_logp, 1.0, mask), zero
    if kind == "pm":
        return mask * logp, zero  # −R(π) with R = −log π
    if kind == "cond_pm_token":
        return token_conditional_pm_penalty(logp, ref_logp, alpha, mask), zero
    if kind == "cond_pm_sequence":
        seq_ref = jnp.sum(mask * ref_logp, axis=-1)  # log π_ref(y)
        return mask * logp, conditional_pm_shaped_reward(zero, seq_ref, alpha)
    raise ValueError(f"penalty: unknown {kind!r}")


class RLHF(Recipe):
    name = "rlhf"
    means = {}
    optimizer_groups = ("actor", "critic")  # PPO: each clipped on its own, as two engines are

    def __init__(self, config: RLHFConfig, tokenizer, oracle):
        super().__init__()
        self.config, self.tokenizer, self.oracle = config, tokenizer, oracle
        if config.algorithm == "ppo":
            self.terms = (Term("loss/actor", "tokens"), Term("loss/critic", "tokens"))
        else:
            self.terms = (Term("loss/actor", "sequences"),)
        self.samples_per_prompt = config.rloo_k if config.algorithm == "rloo" else 1

    def encode(self, rows, tokenizer):
        return encode_prompts(rows, tokenizer, max_prompt_length=self.config.max_prompt_length)

    def counts(self, batch):
        return {"tokens": jnp.sum(batch["response_mask"]), "sequences": jnp.sum(batch["weight"])}

    # ---- rollouts ----------------------------------------------------------------------

    def batch_source(self, trainer):
        """``step -> (placed batch, rollout metrics)``: sample, score, shape, advantages."""

        c = self.config

        def source(step: int):
            idx = trainer.schedule.indices(step)[0]
            batch, metrics = self.rollout(trainer, "train", idx, rollout_step_key(c.seed, step))
            return jax.device_put(batch, trainer.batch_sharding), metrics

        return source

    def scored_samples(self, trainer, split: str, idx: np.ndarray, key):
        """``(samples, scores (B,), weight (B,), metrics)``: ``samples_per_prompt`` responses of
        the current policy to each prompt ``idx`` of ``split`` and their rewards (the oracle's)."""
        model, _ = trainer.models()
        samples, scores, weight = sample_and_score(
            model.actor,
            self.data[split],
            np.repeat(idx, self.samples_per_prompt),
            key,
            config=self.config,
            tokenizer=self.tokenizer,
            oracle=self.oracle,
            mesh=trainer.mesh,
        )
        return samples, scores, weight, {}

    def rollout(self, trainer, split: str, idx: np.ndarray, key):
        """One rollout of the prompts ``idx`` of ``split`` with the current policy."""
        samples, scores, weight, extra = self.scored_samples(trainer, split, idx, key)
        with jax.set_mesh(trainer.mesh):
            batch, metrics = self._jitted_experience(trainer)(
                trainer.state.params,
                trainer.state.rest,
                trainer.frozen,
                samples.tokens,
                samples.mask,
                samples.response_mask,
                scores,
                weight,
            )
        batch = {k: v[None] for k, v in batch.items()}  # one micro-batch per step
        return batch, {k: float(v) for k, v in jax.device_get(metrics).items()} | extra

    def _jitted_experience(self, trainer):
        """:meth:`experience` over the trainer's variables, jitted once per trainer."""
        if getattr(self, "_experience_for", None) is not trainer:

            def experience(params, rest, frozen, tokens, mask, response_mask, scores, weight):
                model, others = trainer.merge(params, rest, frozen)
                return self.experience(model, others, tokens, mask, response_mask, scores, weight)

            self._experience_for, self._experience_jit = trainer, jax.jit(experience)
        return self._experience_jit

    def experience(self, model, others, tokens, mask, response_mask, scores, weight):
        """Old log-probs, values, shaped rewards and advantages of a rollout (no gradient)."""
        c, t = self.config, self.config.max_new_tokens
        ref = others["ref"] if "ref" in others else llm.without_adapters(model.actor)
        logp = response_logps(model.actor, tokens, mask, response_mask)[:, -t:]
        ref_logp = response_logps(ref, tokens, mask, response_mask)[:, -t:]
        m = response_mask[:, -t:].astype(jnp.float32)
        pen, bonus = penalties(c.penalty, logp, ref_logp, m, c.alpha)
        score = jnp.clip(scores, -c.clip_reward_value, c.clip_reward_value) + c.beta * bonus
        batch = {
            "input_ids": tokens,
            "attention_mask": mask,
            "response_mask": response_mask,
            "old_logps": logp,
            "weight": weight,
        }
        if c.algorithm == "ppo":
            values = model.critic.values(tokens, mask)[:, -t - 1 : -1]  # V of each prefix
            rewards = shaped_token_rewards(pen, score, m, beta=c.beta, clip_reward_value=None)
            adv, ret = gae_advantages(rewards, values * m, m, gamma=c.gamma, lam=c.lam)
            batch |= {"old_values": values * m, "advantages": adv, "returns": ret}
        else:
            seq = score - c.beta * jnp.sum(pen, axis=-1)
            k = self.samples_per_prompt
            batch["advantages"] = leave_one_out_advantages(seq.reshape(-1, k)).reshape(-1)
        n = jnp.maximum(jnp.sum(weight), 1)
        per_seq = lambda x: jnp.sum(weight * x) / n  # noqa: E731
        metrics = {
            "rollout/score": per_seq(scores),
            "rollout/penalty": per_seq(jnp.sum(pen, -1)),
            "rollout/kl": per_seq(jnp.sum(m * (logp - ref_logp), -1)),
            "rollout/length": per_seq(jnp.sum(m, -1)),
            "rollout/logp": per_seq(jnp.sum(m * logp, -1)),
        }
        return jax.lax.stop_gradient(batch), metrics

    # ---- the update --------------------------------------------------------------------

    def stats(self, model, frozen, micro):
        c, t = self.config, self.config.max_new_tokens
        tokens, mask, rmask = micro["input_ids"], micro["attention_mask"], micro["response_mask"]
        w = micro["weight"]
        m = rmask[:, -t:].astype(jnp.float32) * w[:, None]  # row weights on every token
        logp = response_logps(model.actor, tokens, mask, rmask)[:, -t:]
        if c.algorithm == "rloo":
            loss = -micro["advantages"] * jnp.sum(m * logp, axis=-1)  # REINFORCE, LOO baseline
            return {"loss/actor": jnp.sum(loss)}
        actor = ppo_policy_loss(logp, micro["old_logps"], micro["advantages"], clip=c.cliprange)
        values = model.critic.values(tokens, mask)[:, -t - 1 : -1]
        critic = ppo_value_loss(
            values, micro["old_values"], micro["returns"], clip=c.cliprange_value
        )
        return {"loss/actor": jnp.sum(m * actor), "loss/critic": jnp.sum(m * critic)}

    # ---- eval --------------------------------------------------------------------------

    def evaluate(self, trainer, split: str) -> dict[str, float]:
        """Mean oracle score, sampled KL and length of responses to every prompt of ``split``
        (a fixed key, so evaluations are comparable across steps)."""
        rows = trainer.eval_rows
        sums: dict[str, float] = {}
        n = len(self.data[split])
        for start in range(0, n, rows):
            idx = np.arange(start, start + rows)
            idx = np.where(idx < n, idx, -1)
            _, metrics = self.rollout(trainer, split, idx, jax.random.key(self.config.seed + 1))
            real = int((idx >= 0).sum())
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v * real
        return {k.replace("rollout/", ""): v / n for k, v in sums.items()}

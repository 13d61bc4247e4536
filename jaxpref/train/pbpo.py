"""PbPO on a language model: a confidence set of linear reward models on frozen features,
reward-agnostic exploration, and a pessimistic policy step by RLOO on the (LoRA) policy.

Reward model r_θ(τ) = ⟨θ, φ(τ)⟩ with φ(τ) the reward backbone's final-normed hidden state at the
last real token of prompt + response (``llm.sequence_features``; the backbone is frozen). With
the oracle's own backbone (the default) the oracle's reward is exactly ⟨w, φ⟩ (its score head
has no bias), so the linear model is well specified and θ* = w under the Bradley–Terry labeller.

Episode k = 0..K−1 (``episode_steps`` optimizer steps each):

1. π_ref^k is the policy at the start of the episode (``ref_refresh = episode``) or the initial
   policy (``fixed``).
2. Exploration: for ``pairs_per_episode`` prompts, τ⁰ ~ π_ref^k and N samples of the current
   policy; τ¹ is the sample of largest bonus ‖φ(τ⁰) − φ(τ¹)‖²_{Σ̂_k⁻¹} (``pbpo.enhancer_scores``
   with π_ref^k's sample as the reference: best-of-N approximates the enhancer π̂_k), or the
   first sample (``uniform``). The oracle labels o = 1{τ¹ ≻ τ⁰} (``oracle.label_pairs``).
3. The set: θ̂ by the ridge BTL MLE (``pbpo.fit_btl_mle``), Σ̂ = λI + Σ ΔφΔφᵀ
   (``pbpo.gram_matrix``), radius β_k(δ) by ``pbpo.ellipsoid_radius`` with the κ of the named
   radius ``radius_rule`` (``pbpo.radius_kappa``; the default ``certified`` carries the coverage
   guarantee, ``local`` and ``heuristic`` do not; ``radius`` fixes it).
4. Policy step: each step samples ``rloo_k`` responses per prompt from the policy and one from
   π_ref^k; each response's reward is its pessimistic value relative to π_ref^k's response,
   min_{θ ∈ C_k} ⟨θ, φ(τ) − φ(τ_ref)⟩ = θ̂ᵀΔφ − β_k‖Δφ‖_{Σ̂⁻¹} (``pbpo.pessimistic_value``), or
   θ̂ᵀΔφ (``greedy``); RLOO with the KL penalty of ``jaxpref train rlhf`` ascends it.
   ``stackelberg``, the penalised relaxation (theory/pbpo.md §6): the reward model is a
   follower minimising G(θ) = mean_i ⟨θ, Δφ_i⟩ + η ℓ_λ(θ) over the step's responses (ℓ_λ the
   ridge BTL NLL of the stored pairs) by ``reward_steps`` gradient steps of size 1/L
   (``pbpo.follower_descent``; warm-started from its last θ, from θ̂ when the set grew), and
   the policy, the leader, ascends the follower's reward ⟨θ_f, Δφ⟩ by the same RLOO step.

The labelled pairs are a fixed-capacity buffer (K × pairs_per_episode) kept among the frozen
arrays of the trainer and saved with each checkpoint (with a refreshed reference), so a resumed
run continues from the same set. [Reconstruction: the PbPO text was not available; see
theory/pbpo.md. The per-response pessimism is a lower bound of the pessimism on expected
features, min_θ E⟨θ, Δφ⟩ ≥ E min_θ⟨θ, Δφ⟩.]

References: Jia, "Bootstrapping LLMs via Preference-Based Policy Optimization", arXiv 2511.12867;
Zhan et al., arXiv 2305.18505 (reward-agnostic exploration); Faury et al., arXiv 2002.07530
(the confidence radius); Ahmadian et al., arXiv 2402.14740 (RLOO).
"""

from __future__ import annotations

import json
import pathlib
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpref import llm, pbpo
from jaxpref.llm.hf_config import read_hf_config
from jaxpref.train.config import PbPOConfig
from jaxpref.train.models import copy_module
from jaxpref.train.oracle import RewardOracle, label_pairs
from jaxpref.train.rlhf import RLHF
from jaxpref.train.rollout import rollout_step_key, sample_and_score


class FeatureOracle(RewardOracle):
    """``score(ids, mask, prompt_lengths)`` → (B, d) float32 φ of policy-token rows: the reward
    backbone's final-normed hidden state at the last real token (re-encoded as the oracle is)."""

    def __init__(self, path, **kw):
        super().__init__(path, **kw)
        self._score = jax.jit(lambda m, ids, mask: llm.sequence_features(m.backbone, ids, mask))

    @property
    def dim(self) -> int:
        return self.model.backbone.config.embed_width


def backbone_width(path) -> int:
    """The feature dimension of a model directory's backbone (read from its config.json)."""
    hf = json.loads((pathlib.Path(path) / "config.json").read_text())
    return llm.DecoderConfig(**read_hf_config(hf)).embed_width


def check_feature_dim(config: PbPOConfig) -> None:
    """--feature_dim matches the reward backbone's hidden size (before any work)."""
    path = config.feature_model_path or config.reward_model_path
    width = backbone_width(path)
    if config.feature_dim is not None and config.feature_dim != width:
        raise ValueError(
            f"feature_dim: {config.feature_dim} does not match the hidden size {width} of the "
            f"reward backbone {path}"
        )


@partial(jax.jit, static_argnames="steps")
def _follower(theta, u, weight, delta_phi, labels, mask, eta, lam, lr, steps: int):
    """``steps`` of gradient descent on G(θ) = Σ_i w_i⟨θ, u_i⟩ / Σ_i w_i + η ℓ_λ(θ)."""
    n = jnp.maximum(jnp.sum(weight), 1.0)

    def objective(th):
        return jnp.sum(weight * (u @ th)) / n + eta * pbpo.ridge_btl_nll(
            th, delta_phi, labels, lam, mask
        )

    theta = pbpo.follower_descent(theta, objective, lr=lr, steps=steps)
    return theta, jnp.linalg.norm(jax.grad(objective)(theta))


class ConfidenceSet(NamedTuple):
    theta_hat: jax.Array  # (d,)  θ̂_k
    gram: jax.Array  # (d, d)  Σ̂_k
    radius: float  # β_k
    pairs: int  # k


class PbPO(RLHF):
    name = "pbpo"

    def __init__(self, config: PbPOConfig, tokenizer, oracle, features: FeatureOracle):
        super().__init__(config, tokenizer, oracle)
        self.features = features
        refresh = config.ref_refresh == "episode"
        self.mutable_frozen = ("pbpo", "ref") if refresh else ("pbpo",)
        self.capacity = config.num_episodes * config.pairs_per_episode
        self._set: tuple[int, ConfidenceSet] | None = None
        self._lr: tuple[int, float] | None = None  # the follower's 1/L for a set size

    # ---- the confidence set ----------------------------------------------------------------

    def empty_buffer(self) -> dict:
        d = self.features.dim
        buffer = {
            "delta_phi": jnp.zeros((self.capacity, d), jnp.float32),
            "labels": jnp.zeros((self.capacity,), jnp.float32),
            "count": jnp.zeros((), jnp.int32),
        }
        if self.config.policy_objective == "stackelberg":  # the follower's θ and its set size
            buffer |= {
                "theta": jnp.zeros((d,), jnp.float32),
                "theta_pairs": jnp.zeros((), jnp.int32),
            }
        return buffer

    def confidence_set(self, buffer: dict) -> ConfidenceSet:
        """C_k of the stored pairs (cached per pair count)."""
        k = int(buffer["count"])
        if self._set is not None and self._set[0] == k:
            return self._set[1]
        c = self.config
        X, o = buffer["delta_phi"], buffer["labels"]
        w = (jnp.arange(self.capacity) < k).astype(jnp.float32)
        gram = pbpo.gram_matrix(X, c.ridge, w)  # Σ̂_k = λI + Σ_j Δφ_j Δφ_jᵀ
        theta_hat = (
            pbpo.fit_btl_mle(X, o, lam=c.ridge, weights=w)[0] if k else jnp.zeros(X.shape[1])
        )
        radius = c.radius if c.radius is not None else self.radius_rule(X, k)
        self._set = (k, ConfidenceSet(theta_hat, gram, float(radius), k))
        return self._set[1]

    def radius_rule(self, delta_phi, k: int) -> float:
        """β_k(δ) of ``pbpo.ellipsoid_radius`` with κ = ``pbpo.radius_kappa(radius_rule, B, L)``;
        L defaults to the largest ‖Δφ‖ stored (1 before any pair)."""
        c = self.config
        norms = jnp.linalg.norm(delta_phi[:k], axis=-1) if k else jnp.ones(1)
        bound = c.bound_delta_phi or max(float(norms.max()), 1e-6)
        kappa = pbpo.radius_kappa(c.radius_rule, c.bound_theta, bound)
        return float(
            pbpo.ellipsoid_radius(
                c.delta,
                d=delta_phi.shape[1],
                k=k,
                lam=c.ridge,
                bound_theta=c.bound_theta,
                bound_delta_phi=bound,
                kappa=kappa,
            )
        )

    def response_values(self, buffer: dict, phi, phi_ref):
        """The reward of each response in the policy step: its pessimistic value relative to the
        reference's response, min_{θ ∈ C_k} ⟨θ, φ − φ_ref⟩ (or θ̂ᵀ(φ − φ_ref), greedy)."""
        s = self.confidence_set(buffer)
        u = jnp.asarray(phi) - jnp.asarray(phi_ref)
        if self.config.policy_objective == "greedy":
            return pbpo.sequence_reward(s.theta_hat, u)
        if self.config.policy_objective == "stackelberg":
            raise ValueError("policy_objective: stackelberg values come from follower()")
        return pbpo.pessimistic_value(s.theta_hat, s.gram, s.radius, u)  # θ̂ᵀu − β‖u‖_{Σ̂⁻¹}

    def follower_lr(self, s: ConfidenceSet) -> float:
        """1/L for G = mean⟨θ, u⟩ + η ℓ_λ: ∇²G = η(Σ_j σ′ Δφ_jΔφ_jᵀ + λI) ⪯ η(λ + ¼ λ_max(Σ̂ − λI))
        as σ′ ≤ ¼ (``reward_lr`` overrides it)."""
        c = self.config
        if c.reward_lr is not None:
            return c.reward_lr
        if self._lr is None or self._lr[0] != s.pairs:  # one eigensolve per set, not per step
            top = float(jnp.linalg.eigvalsh(s.gram)[-1])
            self._lr = (s.pairs, 1.0 / (c.penalty_weight * (c.ridge + 0.25 * (top - c.ridge))))
        return self._lr[1]

    def follower_theta(self, buffer: dict) -> jax.Array:
        """The follower's current θ: the stored one, or θ̂ when the set grew since it moved."""
        s = self.confidence_set(buffer)
        return buffer["theta"] if int(buffer["theta_pairs"]) == s.pairs else s.theta_hat

    def follower(self, buffer: dict, u, weight) -> tuple[jax.Array, dict, dict]:
        """The follower's move against the responses' Δφ = ``u`` (rows weighted by ``weight``):
        θ_f, the buffer holding it, and its metrics."""
        c, s = self.config, self.confidence_set(buffer)
        k = s.pairs
        start = self.follower_theta(buffer)
        mask = (jnp.arange(self.capacity) < k).astype(jnp.float32)
        X, o = buffer["delta_phi"], buffer["labels"]
        theta, grad_norm = _follower(
            start,
            u,
            weight,
            X,
            o,
            mask,
            c.penalty_weight,
            c.ridge,
            self.follower_lr(s),
            c.reward_steps,
        )
        gap = theta - s.theta_hat
        nll = lambda th: pbpo.ridge_btl_nll(th, X, o, c.ridge, mask)  # noqa: E731
        metrics = {
            "stackelberg/shift": float(jnp.sqrt(gap @ s.gram @ gap)),  # ‖θ_f − θ̂‖_Σ̂
            "stackelberg/penalty": float(nll(theta) - nll(s.theta_hat)),
            "stackelberg/grad_norm": float(grad_norm),
        }
        return theta, buffer | {"theta": theta, "theta_pairs": jnp.asarray(k, jnp.int32)}, metrics

    # ---- episodes ----------------------------------------------------------------------------

    def batch_source(self, trainer):
        c = self.config
        trainer.frozen["pbpo"] = self.empty_buffer()  # a resumed run restores the saved one

        def source(step: int):
            extra = {}
            if step % c.episode_steps == 0:
                episode = step // c.episode_steps
                if episode > 0 and c.ref_refresh == "episode":
                    self.refresh_reference(trainer)
                extra = self.explore(trainer, episode)
            idx = trainer.schedule.indices(step)[0]
            batch, metrics = self.rollout(trainer, "train", idx, rollout_step_key(c.seed, step))
            return jax.device_put(batch, trainer.batch_sharding), metrics | extra

        return source

    def refresh_reference(self, trainer) -> None:
        """π_ref^k becomes the current policy (a copy)."""
        model = nnx.merge(trainer.trainable.graphdef, trainer.state.params, trainer.state.rest)
        _, state = nnx.split(copy_module(model.actor))
        trainer.frozen["ref"] = state

    def reference_policy(self, model, others):
        return others["ref"] if "ref" in others else llm.without_adapters(model.actor)

    def _sample(self, trainer, policy, split, idx, key, scorer):
        return sample_and_score(
            policy,
            self.data[split],
            idx,
            key,
            config=self.config,
            tokenizer=self.tokenizer,
            oracle=scorer,
            mesh=trainer.mesh,
        )

    def _sample_rows(self, trainer, policy, idx, key):
        """Samples and φ of the train prompts ``idx``, padded to a multiple of the batch devices
        for sampling (the padding rows are dropped)."""
        devices = trainer.micro_rows // self.config.per_device_train_batch_size
        padded = np.concatenate([idx, np.full((-len(idx)) % devices, -1)])
        samples, phi, _ = self._sample(trainer, policy, "train", padded, key, self.features)
        keep = lambda x: x[: len(idx)]  # noqa: E731
        rows = samples._replace(
            tokens=keep(samples.tokens),
            mask=keep(samples.mask),
            response_mask=keep(samples.response_mask),
            prompt_lengths=keep(samples.prompt_lengths),
        )
        return rows, keep(phi)

    def explore(self, trainer, episode: int) -> dict:
        """Label one pair per explored prompt and add it to the set; returns metrics."""
        c, m, n = self.config, self.config.pairs_per_episode, self.config.num_candidates
        rng = np.random.default_rng([c.seed, 11, episode])
        count = len(self.data["train"])
        idx = rng.choice(count, m, replace=m > count)
        k0, k1, k_label = jax.random.split(
            jax.random.fold_in(jax.random.key(c.seed + 7), episode), 3
        )
        model, others = trainer.models()
        buffer = trainer.frozen["pbpo"]
        gram = self.confidence_set(buffer).gram
        ref = self.reference_policy(model, others)
        s0, phi0 = self._sample_rows(trainer, ref, idx, k0)
        s1, phi1 = self._sample_rows(trainer, model.actor, np.repeat(idx, n), k1)
        phi1 = phi1.reshape(m, n, -1)
        onehot = jnp.zeros(n + 1).at[0].set(1.0)  # τ⁰ is π_ref^k's response
        bonus = jnp.stack(
            [
                pbpo.enhancer_scores(gram, jnp.concatenate([phi0[i][None], phi1[i]]), onehot)[1:]
                for i in range(m)
            ]
        )  # ‖φ(τ⁰) − φ(τ¹_j)‖²_{Σ̂⁻¹}
        pick = jnp.argmax(bonus, -1) if c.exploration == "enhancer" else jnp.zeros(m, jnp.int32)
        rows = np.arange(m) * n + np.asarray(pick)
        score0 = self.oracle.score(s0.tokens, s0.mask, s0.prompt_lengths)
        score1 = self.oracle.score(s1.tokens[rows], s1.mask[rows], s1.prompt_lengths[rows])
        labels = label_pairs(score1, score0, labeller=c.labeller, key=k_label)  # 1{τ¹ ≻ τ⁰}
        delta_phi = phi1[np.arange(m), pick] - phi0
        start = int(buffer["count"])
        trainer.frozen["pbpo"] = buffer | {
            "delta_phi": buffer["delta_phi"].at[start : start + m].set(delta_phi),
            "labels": buffer["labels"].at[start : start + m].set(labels),
            "count": buffer["count"] + m,
        }
        chosen = bonus[jnp.arange(m), pick]
        return {
            "explore/bonus": float(chosen.mean()),
            "explore/bonus_all": float(bonus.mean()),
            "explore/label_mean": float(labels.mean()),
            "explore/score_gap": float(jnp.mean(jnp.asarray(score1) - jnp.asarray(score0))),
        }

    # ---- the policy step ---------------------------------------------------------------------

    def scored_samples(self, trainer, split: str, idx: np.ndarray, key):
        """``rloo_k`` policy responses per prompt with their pessimistic values against one
        response of π_ref^k, plus the oracle's score of each (logged, not trained on)."""
        k_ref, k_pol = jax.random.split(key)
        model, others = trainer.models()
        ref = self.reference_policy(model, others)
        _, phi_ref, _ = self._sample(trainer, ref, split, idx, k_ref, self.features)
        k = self.samples_per_prompt
        samples, phi, weight = self._sample(
            trainer, model.actor, split, np.repeat(idx, k), k_pol, self.features
        )
        buffer = trainer.frozen["pbpo"]
        phi_ref = jnp.repeat(phi_ref, k, axis=0)
        extra = {}
        if self.config.policy_objective == "stackelberg":  # the follower moves on train only
            if split == "train":
                theta, trainer.frozen["pbpo"], extra = self.follower(buffer, phi - phi_ref, weight)
            else:
                theta = self.follower_theta(buffer)
            values = pbpo.sequence_reward(theta, phi - phi_ref) * weight
        else:
            values = self.response_values(buffer, phi, phi_ref) * weight
        scores = self.oracle.score(samples.tokens, samples.mask, samples.prompt_lengths)
        s = self.confidence_set(buffer)
        n = max(float(weight.sum()), 1.0)
        extra |= {
            "rollout/oracle_score": float(jnp.sum(weight * jnp.asarray(scores)) / n),
            "rollout/value": float(jnp.sum(values) / n),
            "confidence/radius": s.radius,
            "confidence/pairs": float(s.pairs),
        }
        return samples, values.astype(jnp.float32), weight, extra

"""Online (iterative) DPO: each step the current policy answers every prompt of its batch twice,
the reward-model oracle scores both answers, a labeller turns the two scores into a preference
(``oracle.label_pairs``: the higher score, or a Bradley–Terry draw), and the labelled pairs take
a DPO step through the same :class:`~jaxpref.train.dpo.DPO` statistics as offline DPO.

The reference is the initial policy (adapters off with LoRA, else a frozen copy), or, with
``ref_update_steps = N``, the policy as it was at the start of each block of N steps (rounds of
iterative DPO); the refreshed reference is saved with each checkpoint so a resumed run continues
from the same one.

References: Guo et al., "Direct Language Model Alignment from Online AI Feedback",
arXiv 2402.04792; Xiong et al., "Iterative Preference Learning from Human Feedback",
arXiv 2312.11456.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpref.train.config import OnlineDPOConfig
from jaxpref.train.dpo import DPO
from jaxpref.train.models import copy_module
from jaxpref.train.oracle import label_pairs
from jaxpref.train.rollout import encode_prompts, rollout_step_key, sample_and_score


class OnlineDPO(DPO):
    name = "online-dpo"

    def __init__(self, config: OnlineDPOConfig, tokenizer, oracle, *, reference: str):
        super().__init__(config, tokenizer, reference=reference)
        self.tokenizer, self.oracle = tokenizer, oracle
        if config.ref_update_steps and reference != "frozen":
            raise ValueError("ref_update_steps: needs a frozen reference copy (not adapters off)")
        self.mutable_frozen = ("ref",) if config.ref_update_steps else ()

    def encode(self, rows, tokenizer):
        return encode_prompts(rows, tokenizer, max_prompt_length=self.config.max_prompt_length)

    def batch_source(self, trainer):
        c = self.config

        def source(step: int):
            if c.ref_update_steps and step % c.ref_update_steps == 0 and step > 0:
                self.refresh_reference(trainer)
            idx = trainer.schedule.indices(step)[0]
            batch, metrics = self.labelled_pairs(
                trainer, "train", idx, rollout_step_key(c.seed, step)
            )
            return jax.device_put(batch, trainer.batch_sharding), metrics

        return source

    def refresh_reference(self, trainer) -> None:
        """The reference becomes the current policy (a copy, in the parameter dtype)."""
        model = nnx.merge(trainer.trainable.graphdef, trainer.state.params, trainer.state.rest)
        _, state = nnx.split(copy_module(model))
        trainer.frozen["ref"] = state

    def labelled_pairs(self, trainer, split, idx, key):
        """Two samples per prompt, scored and labelled, as a DPO batch (chosen, rejected)."""
        model, _ = trainer.models()
        doubled = np.repeat(idx, 2)
        k_sample, k_label = jax.random.split(key)
        samples, scores, weight = sample_and_score(
            model,
            self.data[split],
            doubled,
            k_sample,
            config=self.config,
            tokenizer=self.tokenizer,
            oracle=self.oracle,
            mesh=trainer.mesh,
        )
        first = label_pairs(scores[0::2], scores[1::2], labeller=self.config.labeller, key=k_label)
        win = jnp.where(first > 0, 0, 1)  # which of the two rows won
        rows = jnp.arange(len(idx)) * 2
        pick = lambda x, w: x[rows + w]  # noqa: E731
        batch = {"weight": weight[0::2]}
        for side, w in (("chosen", win), ("rejected", 1 - win)):
            batch[f"{side}_input_ids"] = pick(samples.tokens, w)
            batch[f"{side}_attention_mask"] = pick(samples.mask, w)
            batch[f"{side}_loss_mask"] = pick(samples.response_mask, w)
        same = jnp.all(batch["chosen_input_ids"] == batch["rejected_input_ids"], axis=-1)
        n = jnp.maximum(jnp.sum(batch["weight"]), 1)
        mean = lambda x: float(jnp.sum(batch["weight"] * x) / n)  # noqa: E731
        metrics = {
            "rollout/score_chosen": mean(pick(scores, win)),
            "rollout/score_rejected": mean(pick(scores, 1 - win)),
            "rollout/identical_pairs": mean(same.astype(jnp.float32)),
            "rollout/length": mean(jnp.sum(samples.response_mask, -1)[0::2].astype(jnp.float32)),
        }
        return {k: v[None] for k, v in batch.items()}, metrics

    def evaluate(self, trainer, split: str) -> dict[str, float]:
        """Mean oracle score and length of the policy's two answers to every prompt of
        ``split`` (a fixed key, so evaluations are comparable across steps)."""
        rows, n = trainer.eval_rows, len(self.data[split])
        sums: dict[str, float] = {}
        for start in range(0, n, rows):
            idx = np.arange(start, start + rows)
            idx = np.where(idx < n, idx, -1)
            batch, metrics = self.labelled_pairs(
                trainer, split, idx, jax.random.key(self.config.seed + 1)
            )
            real = int((idx >= 0).sum())
            scored = {
                "score": (metrics["rollout/score_chosen"] + metrics["rollout/score_rejected"]) / 2,
                "length": metrics["rollout/length"],
            }
            for k, v in scored.items():
                sums[k] = sums.get(k, 0.0) + v * real
        return {k: v / n for k, v in sums.items()}

"""Online (iterative) DPO: each step the current policy answers every prompt of its batch twice,
the reward-model oracle scores both answers, a labeller turns the two scores into a preference
(``oracle.label_pairs``: the higher score, or a Bradley–Terry draw), and the labelled pairs take
a DPO step through the same :class:`~jaxpref.train.dpo.DPO` statistics as offline DPO.

The reference is the initial policy (adapters off with LoRA, else a frozen copy), or, with
``ref_update_steps = N``, the policy as it was at the start of each block of N steps (rounds of
iterative DPO); the refreshed reference is saved with each checkpoint so a resumed run continues
from the same one.

With ``robust_rho = ρ`` (oracle-robust online alignment, robust SAIL): each pair's preference is
known only within the pointwise uncertainty set [p₀ − ρ, p₀ + ρ] ∩ [0, 1] around the oracle's
probability p₀ that the chosen row wins (1 for the ``argmax`` labeller, a deterministic oracle;
σ(s_chosen − s_rejected) for ``bradley_terry``), and each pair's loss is its worst case over that
set. The pair loss ℓ(h; p) = softplus(h) − p·h (theory/robust_sail.md Eq. (R1)) is affine in p,
so the worst case is ℓ(h; p₀) + |h|·min(ρ, q(h, p₀)) (Eq. (R4), ``robust.worst_case_pair_loss``).
The step's loss is the nominal DPO loss of the labelled pair, −log σ(h) = ℓ(h; 1), plus the
excess ``robust.sensitivity_excess(h, p₀, ρ)`` as the term ``loss/robust_excess``: for the
``argmax`` labeller this is the worst-case pair loss itself; for ``bradley_terry`` the sampled
label makes it an unbiased estimate of it (ℓ is affine in the label). At ρ = 0 the excess is
exactly 0 and the run is nominal online DPO. [Reconstruction: the paper's text was not
available, see theory/robust_sail.md §4; its score-function term of policy-dependent sampling
(Eq. (R7)) and the projection onto a parameter ball (Eq. (R8)) are not applied to the LLM.]

References: Guo et al., "Direct Language Model Alignment from Online AI Feedback",
arXiv 2402.04792; Xiong et al., "Iterative Preference Learning from Human Feedback",
arXiv 2312.11456; Li, Gaur & Aggarwal, "Oracle-Robust Online Alignment for Large Language
Models", arXiv 2602.20457.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpref import robust
from jaxpref.train.config import OnlineDPOConfig
from jaxpref.train.dpo import DPO
from jaxpref.train.models import copy_module
from jaxpref.train.oracle import label_pairs
from jaxpref.train.recipe import Term, weighted_sum
from jaxpref.train.rollout import encode_prompts, rollout_step_key, sample_and_score


class OnlineDPO(DPO):
    name = "online-dpo"

    def __init__(self, config: OnlineDPOConfig, tokenizer, oracle, *, reference: str):
        super().__init__(config, tokenizer, reference=reference)
        self.tokenizer, self.oracle = tokenizer, oracle
        if config.ref_update_steps and reference != "frozen":
            raise ValueError("ref_update_steps: needs a frozen reference copy (not adapters off)")
        self.mutable_frozen = ("ref",) if config.ref_update_steps else ()
        if config.robust_rho is not None:
            self.terms += (Term("loss/robust_excess", "pairs"),)

    def pair_terms(self, micro, logits) -> dict:
        """Robust SAIL: Σ over pairs of the worst-case excess |h|·min(ρ, q(h, p₀)) (Eq. (R4))."""
        rho = self.config.robust_rho
        if rho is None:
            return {}
        excess = robust.sensitivity_excess(logits, micro["p_nominal"], rho)  # Eq. (R4)
        return {"loss/robust_excess": weighted_sum(micro["weight"], excess)}

    def nominal_probability(self, s_chosen, s_rejected):
        """p₀ = P°(chosen ≻ rejected): 1 for the deterministic ``argmax`` oracle, the
        Bradley–Terry probability σ(s_chosen − s_rejected) for ``bradley_terry``."""
        if self.config.labeller == "argmax":
            return jnp.ones_like(s_chosen)
        return jax.nn.sigmoid(s_chosen - s_rejected)

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
        if self.config.robust_rho is not None:
            batch["p_nominal"] = self.nominal_probability(pick(scores, win), pick(scores, 1 - win))
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

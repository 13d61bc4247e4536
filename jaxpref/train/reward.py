"""Reward modelling: a scalar head on the decoder's last real token, trained with the
Bradley–Terry likelihood of the human preferences (``jaxpref.losses.btl_nll``):

    L = mean_i −log σ(r(x, y_w) − r(x, y_l))  [+ c · mean_i (r(x, y_w) + r(x, y_l))²]

the optional second term being TRL's ``center_rewards_coefficient`` (Eisenstein et al.,
arXiv 2312.09244, §3). Eval reports the accuracy (r_w > r_l) and the mean margin r_w − r_l.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxpref.losses import btl_nll
from jaxpref.train.config import RewardConfig
from jaxpref.train.dpo import preference_examples
from jaxpref.train.recipe import Recipe, Term, pair_rows, preference_arrays, weighted_sum


class Reward(Recipe):
    name = "reward"
    means = {"accuracy": "pairs", "margin": "pairs", "mean_reward": "pairs"}

    def __init__(self, config: RewardConfig, tokenizer):
        from jaxpref.data import pad_id

        super().__init__()
        self.config, self.pad_id = config, pad_id(tokenizer)
        terms = [Term("loss/bt", "pairs")]
        if config.center_rewards_coefficient:
            terms.append(Term("loss/center", "pairs", config.center_rewards_coefficient))
        self.terms = tuple(terms)

    def encode(self, rows, tokenizer):
        return preference_examples(self.config, rows, tokenizer)

    def collate(self, split, idx, length):
        return preference_arrays(self.data[split], idx, length, self.pad_id)

    def counts(self, batch):
        return {"pairs": jnp.sum(batch["weight"])}

    def stats(self, model, frozen, micro):
        ids, attention, _ = pair_rows(micro)
        r_w, r_l = jnp.split(model(ids, attention), 2)
        w = micro["weight"]
        return {
            "loss/bt": weighted_sum(w, btl_nll(r_w, r_l)),
            "loss/center": weighted_sum(w, (r_w + r_l) ** 2),
            "accuracy": weighted_sum(w, (r_w > r_l).astype(r_w.dtype)),
            "margin": weighted_sum(w, r_w - r_l),
            "mean_reward": weighted_sum(w, (r_w + r_l) / 2),
        }

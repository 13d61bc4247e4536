"""Supervised fine-tuning: next-token NLL of the completion tokens, averaged over the real token
count of the whole step (TRL's ``completion_only_loss`` by default; every token with it off).

    L = −Σ_t m_t log π(x_t | x_<t) / Σ_t m_t           (m: the loss mask)
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxpref import llm
from jaxpref.data import completions_from_rows, encode_completions, pad_id
from jaxpref.train.config import SFTConfig
from jaxpref.train.recipe import Recipe, Term, sequence_arrays


class SFT(Recipe):
    name = "sft"
    terms = (Term("loss/nll", "tokens"),)
    means = {}

    def __init__(self, config: SFTConfig, tokenizer):
        super().__init__()
        self.config, self.pad_id = config, pad_id(tokenizer)

    def encode(self, rows, tokenizer):
        data = completions_from_rows(rows)
        encoded, report = encode_completions(
            tokenizer,
            data.examples,
            max_length=self.config.max_length,
            max_prompt_length=self.config.max_prompt_length,
        )
        return encoded, {"rows": data.summary(), "truncation": report.summary()}

    def collate(self, split, idx, length):
        return sequence_arrays(
            self.data[split], idx, length, self.pad_id, self.config.completion_only_loss
        )

    def counts(self, batch):
        return {"tokens": jnp.sum(batch["loss_mask"])}

    def stats(self, model, frozen, micro):
        summed, _ = llm.sequence_logps(
            model, micro["input_ids"], micro["attention_mask"], micro["loss_mask"]
        )
        return {"loss/nll": -jnp.sum(summed)}

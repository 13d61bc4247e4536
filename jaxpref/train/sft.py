"""Supervised fine-tuning: next-token NLL of the completion tokens, averaged over the real token
count of the whole step (TRL's ``completion_only_loss`` by default; every token with it off).
With ``packing``, examples are packed whole into rows of ``max_length`` (best fit decreasing),
each attending only to itself with its own positions, so packing changes which examples share a
step but not any example's log-probs.

    L = −Σ_t m_t log π(x_t | x_<t) / Σ_t m_t           (m: the loss mask)
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxpref import llm
from jaxpref.data import (
    PackedRow,
    completions_from_rows,
    encode_completions,
    pack_completions,
    pad_id,
)
from jaxpref.train.config import SFTConfig
from jaxpref.train.recipe import Recipe, Term, packed_arrays, sequence_arrays


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

    def add_split(self, split, encoded, report):
        """With ``packing``, the train split becomes packed rows (eval stays one per row)."""
        if self.config.packing and split == "train":
            rows = pack_completions(
                encoded, self.config.max_length, completion_only=self.config.completion_only_loss
            )
            report = {**report, "packing": f"{len(encoded)} examples in {len(rows)} rows"}
            encoded = rows
        super().add_split(split, encoded, report)

    def collate(self, split, idx, length):
        examples = self.data[split]
        if examples and isinstance(examples[0], PackedRow):
            return packed_arrays(examples, idx, length, self.pad_id)
        return sequence_arrays(examples, idx, length, self.pad_id, self.config.completion_only_loss)

    def counts(self, batch):
        return {"tokens": jnp.sum(batch["loss_mask"])}

    def stats(self, model, frozen, micro):
        summed, _ = llm.sequence_logps(
            model,
            micro["input_ids"],
            micro["attention_mask"],
            micro["loss_mask"],
            segment_ids=micro.get("segment_ids"),
        )
        return {"loss/nll": -jnp.sum(summed)}

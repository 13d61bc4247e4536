"""Offline DPO and its loss family on a language model, against a frozen reference.

The policy's and the reference's summed response log-probs come from ``llm.sequence_logps`` (one
forward pass over the chosen and rejected rows together); ``jaxpref.losses.dpo_loss`` turns them
into per-pair losses — the same function the log-linear toys use. Loss types combine with weights
(``--loss_type sigmoid,sft --loss_weights 1,0.1``); ``sft`` is the chosen responses' token NLL.

The reference is, in this order of precedence:

(c) ``precompute_ref_log_probs``: log-probs computed once before training (by the reference
    below) and carried in the batch;
(b) a separate frozen model, passed to the jitted step as an argument (never closed over, so it
    is not baked into the program): ``ref_model_name_or_path``, or without LoRA a copy of the
    initial policy (as TRL does);
(a) with LoRA and no separate model: the policy with its adapters switched off
    (``llm.without_adapters``, sharing every base weight).

Logged as TRL does: ``rewards/chosen`` = mean β ρ_w, ``rewards/rejected`` = mean β ρ_l,
``rewards/accuracies`` = fraction with ρ_w > ρ_l, ``rewards/margins`` = mean β (ρ_w − ρ_l),
``logps/chosen`` / ``logps/rejected`` = mean summed policy log-probs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpref import llm
from jaxpref.data import encode_preferences, pad_id, pairs_from_rows
from jaxpref.losses import dpo_loss
from jaxpref.losses.preference import SMOOTHED
from jaxpref.train.config import DPOConfig, TrainConfig
from jaxpref.train.recipe import Recipe, Term, pair_rows, preference_arrays, weighted_sum

REF_KEYS = ("ref_chosen_logps", "ref_rejected_logps")


def preference_examples(config: TrainConfig, rows, tokenizer):
    """Encoded pairs of a split and the reports of what was dropped (rows and truncation)."""
    data = pairs_from_rows(rows, drop_duplicates=config.drop_duplicates)
    encoded, report = encode_preferences(
        tokenizer,
        data.pairs,
        max_length=config.max_length,
        max_prompt_length=config.max_prompt_length,
    )
    return encoded, {"rows": data.summary(), "truncation": report.summary()}


def check_loss_options(config: DPOConfig) -> None:
    """Each loss type accepts the options it is given (a zero-margin call, before any work)."""
    z = jnp.zeros(1)
    for loss_type in config.loss_type:
        if loss_type != "sft":
            dpo_loss(z, z, z, z, **_loss_kwargs(config, loss_type))


def _loss_kwargs(config: DPOConfig, loss_type: str) -> dict:
    smoothing = loss_type in SMOOTHED or loss_type == "exo_pair"
    return dict(
        beta=config.beta,
        loss_type=loss_type,
        label_smoothing=config.label_smoothing if smoothing else 0.0,
        discopop_tau=config.discopop_tau,
    )


class DPO(Recipe):
    name = "dpo"

    def __init__(self, config: DPOConfig, tokenizer, *, reference: str):
        if reference not in ("adapters_off", "frozen", "precomputed"):
            raise ValueError(f"reference: unknown mode {reference!r}")
        super().__init__()
        self.config, self.reference, self.pad_id = config, reference, pad_id(tokenizer)
        self.terms = tuple(
            Term(f"loss/{lt}", "chosen_tokens" if lt == "sft" else "pairs", w)
            for lt, w in zip(config.loss_type, config.weights)
        )
        self.means = {
            key: "pairs"
            for key in (
                "rewards/chosen",
                "rewards/rejected",
                "rewards/accuracies",
                "rewards/margins",
                "logps/chosen",
                "logps/rejected",
            )
        }
        self.ref_logps: dict[str, object] = {}  # split → (N, 2) table, when precomputed

    def encode(self, rows, tokenizer):
        return preference_examples(self.config, rows, tokenizer)

    def collate(self, split, idx, length):
        arrays = preference_arrays(self.data[split], idx, length, self.pad_id)
        if self.reference == "precomputed" and split in self.ref_logps:
            table = self.ref_logps[split]
            flat = idx.reshape(-1).clip(0)
            for j, key in enumerate(REF_KEYS):
                arrays[key] = table[flat, j].reshape(idx.shape)
        return arrays

    def counts(self, batch):
        return {
            "pairs": jnp.sum(batch["weight"]),
            "chosen_tokens": jnp.sum(batch["chosen_loss_mask"]),
        }

    def reference_logps(self, model, frozen, micro):
        """(ρ-free) summed reference log-probs of the chosen and rejected rows."""
        if self.reference == "precomputed":
            return micro[REF_KEYS[0]], micro[REF_KEYS[1]]
        ref = frozen["ref"] if self.reference == "frozen" else llm.without_adapters(model)
        summed, _ = llm.sequence_logps(ref, *pair_rows(micro))
        return tuple(jnp.split(jax.lax.stop_gradient(summed), 2))

    def pair_terms(self, micro, logits) -> dict:
        """Extra summed terms of a subclass from the pairs' DPO logits h = β(ρ_w − ρ_l) (B,)."""
        return {}

    def stats(self, model, frozen, micro):
        ids, attention, loss_mask = pair_rows(micro)
        summed, per_token = llm.sequence_logps(model, ids, attention, loss_mask)
        pc, pr = jnp.split(summed, 2)
        rc, rr = self.reference_logps(model, frozen, micro)
        w = micro["weight"]
        out = {}
        for loss_type in self.config.loss_type:
            if loss_type == "sft":
                out["loss/sft"] = -jnp.sum(jnp.split(per_token, 2)[0])
                continue
            kwargs = _loss_kwargs(self.config, loss_type)
            if loss_type == "ipo" and self.config.ipo_length_normalized:
                kwargs["chosen_lengths"] = micro["chosen_loss_mask"].sum(-1)
                kwargs["rejected_lengths"] = micro["rejected_loss_mask"].sum(-1)
            if loss_type in ("aot", "aot_unpaired"):
                kwargs["valid"] = w > 0
            out[f"loss/{loss_type}"] = weighted_sum(w, dpo_loss(pc, pr, rc, rr, **kwargs))
        beta = self.config.beta
        chosen, rejected = beta * (pc - rc), beta * (pr - rr)
        return (
            out
            | self.pair_terms(micro, chosen - rejected)
            | {
                "rewards/chosen": weighted_sum(w, chosen),
                "rewards/rejected": weighted_sum(w, rejected),
                "rewards/accuracies": weighted_sum(w, (chosen > rejected).astype(chosen.dtype)),
                "rewards/margins": weighted_sum(w, chosen - rejected),
                "logps/chosen": weighted_sum(w, pc),
                "logps/rejected": weighted_sum(w, pr),
            }
        )

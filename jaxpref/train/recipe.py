"""The interface between a training recipe (SFT, reward, DPO) and the one orchestrator.

A recipe turns the model(s) and a micro-batch into *sums* (``stats``): per-example losses from
``jaxpref.losses`` summed over real rows, token NLLs summed over counted tokens, metric sums. The
orchestrator adds them over the micro-batches of a step (and over an eval set) and divides by the
step's *counts* (real pairs, counted tokens), so gradient accumulation of k micro-batches equals
one big batch, and eval means are exact over the whole set:

    loss = Σ_j weight_j · stats[term_j] / counts[count_j]        (terms)
    metric = stats[name] / counts[count]                          (means)

Batches are dicts of NumPy arrays with leading axes ``(accumulation, rows)``; padding rows have
``weight`` 0.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxpref.data import collate_preferences, collate_sequences
from jaxpref.train.batches import PAD


@dataclasses.dataclass(frozen=True)
class Term:
    stat: str  # the summed loss in ``stats``
    count: str  # what it is a mean over (a key of ``counts``)
    weight: float = 1.0


class Recipe:
    """Base of the recipes; subclasses set ``name``, ``terms``, ``means`` and the methods.

    ``data[split]`` holds the encoded examples of each split (``"train"``, ``"eval"``) and
    ``reports[split]`` what loading and truncation dropped.
    """

    name: str
    terms: tuple[Term, ...]
    means: dict[str, str]  # metric → count key

    def __init__(self):
        self.data: dict[str, list] = {}
        self.reports: dict[str, dict] = {}

    def add_split(self, split: str, encoded: list, report: dict) -> None:
        self.data[split], self.reports[split] = encoded, report

    def lengths(self, split: str) -> np.ndarray:
        return np.asarray([e.length for e in self.data[split]], np.int64)

    def collate(self, split: str, idx: np.ndarray, length: int) -> dict:
        raise NotImplementedError

    def encode(self, rows, tokenizer) -> tuple[list, dict]:
        """Encoded examples of a split's rows and the report of what was dropped."""
        raise NotImplementedError

    def counts(self, batch: dict) -> dict:
        raise NotImplementedError

    def stats(self, model, frozen: dict, micro: dict) -> dict:
        raise NotImplementedError

    def finalize(self, stats: dict, counts: dict) -> dict[str, jax.Array]:
        """Logged metrics from summed stats and counts (``loss`` first)."""
        safe = {k: jnp.maximum(v, 1) for k, v in counts.items()}
        out = {"loss": sum(t.weight * stats[t.stat] / safe[t.count] for t in self.terms)}
        if len(self.terms) > 1:
            out.update({t.stat: stats[t.stat] / safe[t.count] for t in self.terms})
        out.update({m: stats[m] / safe[c] for m, c in self.means.items()})
        return out

    def contribution(self, stats: dict, totals: dict) -> jax.Array:
        """This micro-batch's share of the step loss (its gradient is the step's share)."""
        safe = {k: jnp.maximum(v, 1) for k, v in totals.items()}
        return sum(t.weight * stats[t.stat] / safe[t.count] for t in self.terms)


def take(examples: Sequence[Any], idx: np.ndarray) -> tuple[list[Any], np.ndarray]:
    """The examples of a flat index vector (a padding row repeats example 0) and the weights."""
    flat = idx.reshape(-1)
    weight = (flat != PAD).astype(np.float32)
    return [examples[i if i != PAD else 0] for i in flat], weight


def stack(idx: np.ndarray, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Reshape flat ``(k·m, …)`` arrays to ``(k, m, …)``."""
    k, m = idx.shape
    return {name: a.reshape(k, m, *a.shape[1:]) for name, a in arrays.items()}


def preference_arrays(encoded, idx, length, pad_id) -> dict[str, np.ndarray]:
    """Chosen and rejected rows (right padded to ``length``), weights and response lengths."""
    rows, weight = take(encoded, idx)
    batch = collate_preferences(rows, pad_id=pad_id, length=length)
    arrays = {"weight": weight}
    for side in ("chosen", "rejected"):
        tb = getattr(batch, side)
        mask = tb.loss_mask * weight[:, None].astype(np.int32)  # padding rows count nothing
        arrays |= {
            f"{side}_input_ids": tb.input_ids,
            f"{side}_attention_mask": tb.attention_mask,
            f"{side}_loss_mask": mask,
        }
    return stack(idx, arrays)


def sequence_arrays(encoded, idx, length, pad_id, completion_only: bool) -> dict[str, np.ndarray]:
    rows, weight = take(encoded, idx)
    tb = collate_sequences(
        [r.prompt for r in rows], [r.completion for r in rows], pad_id=pad_id, length=length
    )
    loss = tb.loss_mask if completion_only else tb.attention_mask.copy()
    loss[:, 0] = 0  # the first token has no prediction
    loss = loss * weight[:, None].astype(np.int32)
    arrays = {
        "weight": weight,
        "input_ids": tb.input_ids,
        "attention_mask": tb.attention_mask,
        "loss_mask": loss,
    }
    return stack(idx, arrays)


def packed_arrays(rows, idx, length, pad_id) -> dict[str, np.ndarray]:
    """Packed SFT rows (``jaxpref.data.PackedRow``) right padded to ``length``."""
    picked, weight = take(rows, idx)
    arrays = {
        name: np.zeros((len(picked), length), np.int32)
        for name in ("input_ids", "attention_mask", "loss_mask", "segment_ids")
    }
    arrays["input_ids"][:] = pad_id
    for r, row in enumerate(picked):
        n = row.length
        arrays["input_ids"][r, :n] = row.ids
        arrays["attention_mask"][r, :n] = 1
        arrays["segment_ids"][r, :n] = row.segments
        arrays["loss_mask"][r, :n] = np.asarray(row.loss) * int(weight[r])
    return stack(idx, {"weight": weight, **arrays})


def pair_rows(micro: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Chosen and rejected rows concatenated (one forward pass): ids, attention, loss masks."""
    cat = lambda key: jnp.concatenate([micro[f"chosen_{key}"], micro[f"rejected_{key}"]])  # noqa: E731
    return cat("input_ids"), cat("attention_mask"), cat("loss_mask")


def weighted_sum(weight, x) -> jax.Array:
    return jnp.sum(jnp.where(weight > 0, x, 0.0))


StatsFn = Callable[[Any, dict, dict], dict]

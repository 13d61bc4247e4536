"""A reward-model oracle for online training: scores of sampled (prompt, response) rows, and the
labels of pairs.

The oracle is any ``*ForSequenceClassification`` safetensors directory with ``num_labels = 1``
(``jaxpref train reward``'s output, or one transformers wrote), with its own tokenizer. When it
tokenises like the policy (same vocabulary and special ids), the policy's token rows are scored
as they are; otherwise each row is decoded to text and re-encoded with the oracle's tokenizer the
way the reward trainer encodes pairs (prompt, then response + EOS; ``jaxpref.data``), so the
oracle sees what it was trained on.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxpref import llm
from jaxpref.data import load_tokenizer, pad_id
from jaxpref.data.tokenize import encode_prompt, encode_response
from jaxpref.train.batches import bucket_lengths, pick_bucket

LABELLERS = ("argmax", "bradley_terry")


def same_tokenization(a: Any, b: Any) -> bool:
    """Whether two tokenizers map text to the same ids (vocabulary and special ids)."""
    specials = ("bos_token_id", "eos_token_id", "pad_token_id")
    return a.get_vocab() == b.get_vocab() and all(getattr(a, s) == getattr(b, s) for s in specials)


class RewardOracle:
    """``oracle.score(ids, mask, prompt_lengths)`` → (B,) float32 rewards of policy-token rows."""

    def __init__(
        self,
        path: str | pathlib.Path,
        *,
        policy_tokenizer: Any,
        tokenizer: Any = None,
        mesh=None,
        dtype=jnp.float32,
        max_length: int = 1024,
    ):
        path = pathlib.Path(path)
        if not (path / "config.json").is_file():
            raise ValueError(f"reward_model_path: {str(path)!r} is not a model directory")
        try:
            self.model = llm.reward_model_from_pretrained(path, dtype=dtype, mesh=mesh)
        except ValueError as err:
            raise ValueError(f"reward_model_path: {err}") from err
        if tokenizer is None:
            try:
                tokenizer = load_tokenizer(path)
            except (OSError, ValueError) as err:
                raise ValueError(
                    f"reward_model_path: no tokenizer in {path} ({err}); pass its tokenizer"
                ) from err
        self.tokenizer, self.policy_tokenizer = tokenizer, policy_tokenizer
        self.reencode = not same_tokenization(tokenizer, policy_tokenizer)
        self.max_length = max_length
        self._buckets = bucket_lengths(max_length, 4)
        self._score = jax.jit(lambda m, ids, mask: m(ids, mask))

    def score(self, ids, mask, prompt_lengths) -> np.ndarray:
        """Rewards of rows whose first ``prompt_lengths[i]`` real tokens are the prompt.

        Args:
          ids, mask: (B, L) policy-token rows (left or right padded).
          prompt_lengths: (B,) real prompt tokens at the start of each row's real tokens.
        """
        if not self.reencode:
            return np.asarray(self._score(self.model, jnp.asarray(ids), jnp.asarray(mask)))
        ids_o, mask_o = self._reencoded(
            np.asarray(ids), np.asarray(mask), np.asarray(prompt_lengths)
        )
        return np.asarray(self._score(self.model, jnp.asarray(ids_o), jnp.asarray(mask_o)))

    def _reencoded(self, ids, mask, prompt_lengths):
        rows = []
        for row, m, n in zip(ids, mask, prompt_lengths):
            real = row[m.astype(bool)].tolist()
            prompt, response = self.policy_text(real[:n]), self.policy_text(real[n:])
            p = encode_prompt(self.tokenizer, prompt)
            rows.append((p, encode_response(self.tokenizer, prompt, response)))
        width = pick_bucket(
            min(max(len(p) + len(r) for p, r in rows), self.max_length), self._buckets
        )
        out = np.full((len(rows), width), pad_id(self.tokenizer), np.int32)
        out_mask = np.zeros_like(out)
        for i, (p, r) in enumerate(rows):
            seq = (p + r)[-width:]  # keep the response end if too long
            out[i, : len(seq)], out_mask[i, : len(seq)] = seq, 1
        return out, out_mask

    def policy_text(self, token_ids) -> str:
        return self.policy_tokenizer.decode(token_ids, skip_special_tokens=True)


def label_pairs(scores_1, scores_2, *, labeller: str = "argmax", key=None):
    """Which response of each pair is preferred: 1.0 when the first, 0.0 when the second.

    ``argmax`` takes the higher score (ties: the first); ``bradley_terry`` draws the label with
    P(1 ≻ 2) = σ(s₁ − s₂) (needs ``key``).
    """
    s1, s2 = jnp.asarray(scores_1), jnp.asarray(scores_2)
    if labeller == "argmax":
        return (s1 >= s2).astype(jnp.float32)
    if labeller == "bradley_terry":
        if key is None:
            raise ValueError("key: the bradley_terry labeller draws labels and needs a PRNG key")
        return jax.random.bernoulli(key, jax.nn.sigmoid(s1 - s2)).astype(jnp.float32)
    raise ValueError(f"labeller: must be one of {', '.join(LABELLERS)}; got {labeller!r}")

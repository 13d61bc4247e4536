"""Rollouts: sample responses to a batch of prompts with the jitted KV-cache ``llm.generate``,
then the per-token log-probs of the sampled tokens under a model in one forward pass.

Prompts are left-padded to a bucket of the prompt length (``llm.generate`` rounds it up to a
multiple of ``bucket``) and every call samples exactly ``max_new_tokens`` positions, so a run
compiles one generation program per prompt bucket, never one per step. A rollout's rows are
``[prompt bucket P | T generated positions]``; the response mask is 1 on generated tokens up
to and including EOS.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxpref import llm
from jaxpref.data import MalformedPair, pairs_from_rows
from jaxpref.data.completions import row_to_completion
from jaxpref.data.tokenize import encode_prompt


@dataclasses.dataclass(frozen=True)
class EncodedPrompt:
    ids: list[int]
    text: Any  # the prompt (text or messages), for decoding and re-encoding
    index: int

    @property
    def length(self) -> int:
        return len(self.ids)


def encode_prompts(
    rows: Sequence[Any], tokenizer: Any, *, max_prompt_length: int | None
) -> tuple[list[EncodedPrompt], dict]:
    """The prompts of preference, prompt–completion or ``prompt``-only rows, encoded (chat
    template for conversational prompts) and cut to their last ``max_prompt_length`` tokens;
    empty ones dropped and counted."""
    out, bad, empty, cut = [], [], [], 0
    for i, row in enumerate(rows):
        prompt = _prompt_of(i, row)
        if isinstance(prompt, MalformedPair):
            bad.append(prompt)
            continue
        ids = encode_prompt(tokenizer, prompt)
        if max_prompt_length is not None and len(ids) > max_prompt_length:
            ids, cut = ids[-max_prompt_length:], cut + 1
        if not ids or not _content(prompt):
            empty.append(i)
            continue
        out.append(EncodedPrompt(ids, prompt, i))
    report = {
        "rows": f"{len(rows)} rows -> {len(out)} prompts; {len(bad)} malformed, {len(empty)} empty",
        "truncation": f"{cut} prompts cut to their last {max_prompt_length} tokens",
    }
    return out, report


def _content(prompt) -> str:
    return prompt if isinstance(prompt, str) else " ".join(m["content"] for m in prompt)


def _prompt_of(index: int, row: Any):
    if isinstance(row, dict) and "chosen" in row:
        data = pairs_from_rows([row])
        return data.pairs[0].prompt if data.pairs else MalformedPair(index, *_reason(data))
    if isinstance(row, dict) and "prompt" in row and "completion" not in row:
        prompt = row["prompt"]
        if isinstance(prompt, str) or (isinstance(prompt, list) and prompt):
            return prompt if isinstance(prompt, str) else tuple(prompt)
        return MalformedPair(index, "bad_value", "prompt is not text or messages", "prompt")
    item = row_to_completion(index, row)
    return item if isinstance(item, MalformedPair) else item.prompt


def _reason(data) -> tuple[str, str]:
    m = data.malformed[0]
    return m.reason, m.detail


def left_padded(prompts: Sequence[EncodedPrompt], idx: np.ndarray, pad_id: int):
    """(B, P) left-padded ids and mask of ``prompts[idx]`` (padding rows: one pad token)."""
    rows = [prompts[i].ids if i >= 0 else [pad_id] for i in idx]
    width = max(map(len, rows))
    ids = np.full((len(rows), width), pad_id, np.int32)
    mask = np.zeros_like(ids)
    for r, seq in enumerate(rows):
        ids[r, width - len(seq) :], mask[r, width - len(seq) :] = seq, 1
    return ids, mask


class Samples(NamedTuple):
    """One rollout: rows ``[prompt bucket | generated]`` and their masks."""

    tokens: jax.Array  # (B, P + T)
    mask: jax.Array  # (B, P + T) 1 on prompt and response tokens
    response_mask: jax.Array  # (B, P + T) 1 on response tokens only
    prompt_width: int  # P
    prompt_lengths: jax.Array  # (B,) real prompt tokens


def sample(
    model,
    ids,
    mask,
    *,
    key,
    max_new_tokens: int,
    temperature: float,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_token_id=None,
    pad_token_id: int = 0,
    bucket: int = 16,
) -> Samples:
    """Sample ``max_new_tokens`` positions per prompt with the KV-cache generator."""
    out = llm.generate(
        model,
        ids,
        mask,
        key=key,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        bucket=bucket,
    )
    width = out.tokens.shape[1] - max_new_tokens
    response = out.mask * (jnp.arange(out.tokens.shape[1])[None, :] >= width)
    return Samples(out.tokens, out.mask, response, width, jnp.asarray(mask).sum(-1))


def response_logps(model, samples_tokens, mask, response_mask):
    """(B, P + T) log-probs of the response tokens under ``model`` (zero elsewhere), float32."""
    _, per_token = llm.sequence_logps(model, samples_tokens, mask, response_mask)
    return per_token


def sampling_kwargs(config, tokenizer, pad: int) -> dict:
    """:func:`sample`'s options from a config's sampling fields and the tokenizer's EOS."""
    return dict(
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_k=config.top_k,
        top_p=config.top_p,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=pad,
    )


def sample_and_score(policy, prompts, idx, key, *, config, tokenizer, oracle, mesh):
    """Responses of ``policy`` to ``prompts[idx]`` (``-1``: a padding row of weight 0) and the
    oracle's scores: ``(samples, scores (B,), weight (B,))``; padding rows' response masks are 0.

    ``config`` carries the sampling options (:class:`~jaxpref.train.config.SamplingOptions`).
    """
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids, mask = left_padded(prompts, idx, pad)
    with jax.set_mesh(mesh):
        samples = sample(policy, ids, mask, key=key, **sampling_kwargs(config, tokenizer, pad))
        weight = jnp.asarray(idx >= 0, jnp.float32)
        response_mask = samples.response_mask * weight[:, None].astype(samples.mask.dtype)
        samples = samples._replace(response_mask=response_mask)
        scores = oracle.score(samples.tokens, samples.mask, samples.prompt_lengths)
    return samples, jnp.asarray(scores, jnp.float32), weight


def rollout_step_key(seed: int, step: int):
    """The sampling key of a step (a resumed run samples what the uninterrupted one did)."""
    return jax.random.fold_in(jax.random.key(seed), step)

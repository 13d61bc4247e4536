"""Tokenise and collate preference pairs into padded (input_ids, attention_mask, loss_mask).

One response boundary: the prompt is encoded once and shared by the chosen and rejected
sequences, each response is encoded on its own (no special tokens) and appended, so both sides
carry the identical prompt prefix. BOS appears once at most (only where the tokenizer itself adds
it, or the chat template writes it) and EOS once at most, at the end of a response.

Mask conventions (what ``jaxpref.llm.sequence_logps`` consumes): ``attention_mask[b, t] = 1`` on
real tokens, 0 on padding; ``loss_mask[b, t] = 1`` when token ``t`` is a response token whose
log-probability (predicted from position ``t - 1``) is counted, 0 on prompt and padding.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Sequence

import numpy as np

from jaxpref.data.preferences import PreferencePair


class TokenBatch(NamedTuple):
    input_ids: np.ndarray  # (B, L) int32, pad_id on padding
    attention_mask: np.ndarray  # (B, L) int32, 1 on real tokens
    loss_mask: np.ndarray  # (B, L) int32, 1 on response tokens


class PreferenceBatch(NamedTuple):
    chosen: TokenBatch  # (B, L) each
    rejected: TokenBatch  # (B, L) each


@dataclasses.dataclass(frozen=True)
class EncodedPair:
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]
    truncated: bool = False


def special_ids(tokenizer: Any) -> tuple[int | None, int | None, bool]:
    """``(bos_id, eos_id, adds_bos)``: whether ``encode(add_special_tokens=True)`` prepends BOS."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bos, eos, bos is not None and len(probe) > 0 and probe[0] == bos


def encode_prompt(tokenizer: Any, pair: PreferencePair) -> list[int]:
    """Prompt ids: chat template (generation prompt) when the tokenizer has one, else raw text."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            list(pair.messages), tokenize=False, add_generation_prompt=True
        )
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    bos, _, adds_bos = special_ids(tokenizer)
    ids = tokenizer(pair.prompt, add_special_tokens=False)["input_ids"]
    return [bos, *ids] if adds_bos else ids


def encode_response(tokenizer: Any, pair: PreferencePair, response: str) -> list[int]:
    """Response ids with one EOS; with a chat template, the template's own assistant turn."""
    if getattr(tokenizer, "chat_template", None):
        return _templated_response(tokenizer, pair, response)
    ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return ids + [eos] if eos is not None and ids[-1:] != [eos] else ids


def _templated_response(tokenizer: Any, pair: PreferencePair, response: str) -> list[int]:
    msgs = list(pair.messages)
    head = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(
        msgs + [{"role": "assistant", "content": response.strip()}], tokenize=False
    )
    if not full.startswith(head):
        raise ValueError("tokenizer: chat template does not extend the generation prompt")
    return tokenizer(full[len(head) :], add_special_tokens=False)["input_ids"]


def encode_pair(
    tokenizer: Any,
    pair: PreferencePair,
    *,
    max_length: int | None = None,
    max_prompt_length: int | None = None,
) -> EncodedPair:
    """Encode a pair; when too long, the prompt keeps its end (and BOS), responses their start."""
    prompt = encode_prompt(tokenizer, pair)
    chosen = encode_response(tokenizer, pair, pair.chosen)
    rejected = encode_response(tokenizer, pair, pair.rejected)
    if max_length is None or len(prompt) + max(len(chosen), len(rejected)) <= max_length:
        return EncodedPair(prompt, chosen, rejected)
    keep = max_prompt_length if max_prompt_length is not None else max_length // 2
    prompt = _keep_end(prompt, min(keep, max_length - 1), special_ids(tokenizer)[0])
    room = max_length - len(prompt)
    return EncodedPair(prompt, chosen[:room], rejected[:room], truncated=True)


def _keep_end(ids: list[int], n: int, bos: int | None) -> list[int]:
    if len(ids) <= n:
        return ids
    if bos is not None and ids[:1] == [bos]:
        return [bos, *ids[len(ids) - n + 1 :]]
    return ids[len(ids) - n :]


def collate_sequences(
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    *,
    pad_id: int,
    length: int | None = None,
    padding_side: str = "right",
) -> TokenBatch:
    """Pad ``prompt + response`` sequences to one length (``length`` or the longest)."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side: expected 'left' or 'right', got {padding_side!r}")
    lens = [len(p) + len(r) for p, r in zip(prompts, responses, strict=True)]
    width = max(lens, default=0) if length is None else length
    if max(lens, default=0) > width:
        raise ValueError(f"length: {width} is shorter than the longest sequence ({max(lens)})")
    batch = [np.full((len(lens), width), v, np.int32) for v in (pad_id, 0, 0)]
    for b, (p, r) in enumerate(zip(prompts, responses)):
        start = 0 if padding_side == "right" else width - lens[b]
        _fill(batch, b, start, p, r)
    return TokenBatch(*batch)


def _fill(batch: list[np.ndarray], b: int, start: int, prompt, response) -> None:
    ids, attn, loss = batch
    end = start + len(prompt) + len(response)
    ids[b, start:end] = np.asarray([*prompt, *response], np.int32)
    attn[b, start:end] = 1
    loss[b, start + len(prompt) : end] = 1


def collate_preferences(
    encoded: Sequence[EncodedPair],
    *,
    pad_id: int,
    length: int | None = None,
    padding_side: str = "right",
) -> PreferenceBatch:
    """Chosen and rejected sides padded to one common length, so they can be concatenated."""
    prompts = [e.prompt for e in encoded]
    longest = max((len(e.prompt) + max(len(e.chosen), len(e.rejected)) for e in encoded), default=0)
    width = longest if length is None else length
    side = {"pad_id": pad_id, "length": width, "padding_side": padding_side}
    return PreferenceBatch(
        collate_sequences(prompts, [e.chosen for e in encoded], **side),
        collate_sequences(prompts, [e.rejected for e in encoded], **side),
    )


def tokenize_preferences(
    tokenizer: Any,
    pairs: Sequence[PreferencePair],
    *,
    max_length: int | None = None,
    length: int | None = None,
    padding_side: str = "right",
) -> PreferenceBatch:
    """Encode and collate pairs in one call; ``pad_id`` from the tokenizer (else EOS, else 0)."""
    encoded = [encode_pair(tokenizer, p, max_length=max_length) for p in pairs]
    pad = tokenizer.pad_token_id
    pad = pad if pad is not None else (tokenizer.eos_token_id or 0)
    return collate_preferences(encoded, pad_id=pad, length=length, padding_side=padding_side)

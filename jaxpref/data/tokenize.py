"""Tokenise and collate prompts and responses into padded (input_ids, attention_mask, loss_mask).

One response boundary: the prompt is encoded once and shared by the chosen and rejected
sequences, each response is encoded on its own (no special tokens) and appended, so both sides
carry the identical prompt prefix. BOS appears once at most (only where the tokenizer itself adds
it, or the chat template writes it) and EOS once at most, at the end of a response.

Conversational prompts (tuples of messages) go through the tokenizer's own chat template: the
prompt is ``apply_chat_template(messages, add_generation_prompt=True)`` and a response is what the
template writes after it for the whole conversation. HH-style text (``"\\n\\nHuman: …"``) is parsed
into turns for the template when the tokenizer has one; other text is tokenised as it is.

Truncation follows TRL's ``max_prompt_length`` / ``max_length`` semantics: a prompt longer than
``max_prompt_length`` keeps its last tokens (and its BOS), then responses are cut so that
prompt + response fits ``max_length``. Pairs that truncation leaves with an empty response, or
with identical responses, are dropped and counted in a :class:`TruncationReport`.

Mask conventions (what ``jaxpref.llm.sequence_logps`` consumes): ``attention_mask[b, t] = 1`` on
real tokens, 0 on padding; ``loss_mask[b, t] = 1`` when token ``t`` is a response token whose
log-probability (predicted from position ``t - 1``) is counted, 0 on prompt and padding.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Sequence

import numpy as np

from jaxpref.data.preferences import (
    ASSISTANT,
    PreferencePair,
    Text,
    dialogue_messages,
    pairs_from_rows,
)


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
    index: int = -1  # source row

    @property
    def length(self) -> int:
        return len(self.prompt) + max(len(self.chosen), len(self.rejected))


@dataclasses.dataclass(frozen=True)
class TruncationReport:
    """What truncation did to a set of examples (row indices of the dropped ones)."""

    num_examples: int
    num_truncated: int = 0
    empty: tuple[int, ...] = ()  # a response empty after truncation (the prompt fills max_length)
    identical: tuple[int, ...] = ()  # chosen == rejected after truncation

    def summary(self) -> str:
        kept = self.num_examples - len(self.empty) - len(self.identical)
        return (
            f"{self.num_examples} examples -> {kept} kept; {self.num_truncated} truncated, "
            f"{len(self.empty)} dropped as empty and {len(self.identical)} as identical "
            "after truncation"
        )


def special_ids(tokenizer: Any) -> tuple[int | None, int | None, bool]:
    """``(bos_id, eos_id, adds_bos)``: whether ``encode(add_special_tokens=True)`` prepends BOS."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bos, eos, bos is not None and len(probe) > 0 and probe[0] == bos


def pad_id(tokenizer: Any) -> int:
    """The tokenizer's pad id, else its EOS id, else 0."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def _templated(tokenizer: Any, prompt: Text) -> tuple[dict, ...] | None:
    """The prompt as chat messages when it goes through the chat template, else None."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if isinstance(prompt, tuple):
        if not has_template:
            raise ValueError(
                "tokenizer: has no chat template, which conversational data needs "
                "(set one in tokenizer_config.json or use text columns)"
            )
        return prompt
    if has_template and ASSISTANT in prompt:
        return dialogue_messages(prompt)
    return None


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_prompt(tokenizer: Any, prompt: Text) -> list[int]:
    """Prompt ids: the chat template's generation prompt, or BOS (if the tokenizer adds one) +
    the text's ids."""
    messages = _templated(tokenizer, prompt)
    if messages is not None:
        text = tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )
        return _ids(tokenizer, text)
    bos, _, adds_bos = special_ids(tokenizer)
    ids = _ids(tokenizer, prompt)
    return [bos, *ids] if adds_bos else ids


def encode_response(tokenizer: Any, prompt: Text, response: Text) -> list[int]:
    """Response ids with one EOS; with a chat template, the template's own assistant turn(s)."""
    messages = _templated(tokenizer, prompt)
    if messages is None:
        ids = _ids(tokenizer, response)
        eos = tokenizer.eos_token_id
        return ids + [eos] if eos is not None and ids[-1:] != [eos] else ids
    turns = (
        response
        if isinstance(response, tuple)
        else ({"role": "assistant", "content": response.strip()},)
    )
    head = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(list(messages) + list(turns), tokenize=False)
    if not full.startswith(head):
        raise ValueError("tokenizer: chat template does not extend the generation prompt")
    return _ids(tokenizer, full[len(head) :])


def encode_pair(
    tokenizer: Any,
    pair: PreferencePair,
    *,
    max_length: int | None = None,
    max_prompt_length: int | None = None,
) -> EncodedPair:
    """Encode a pair, truncated as TRL does (see the module docstring)."""
    prompt = encode_prompt(tokenizer, pair.prompt)
    chosen = encode_response(tokenizer, pair.prompt, pair.chosen)
    rejected = encode_response(tokenizer, pair.prompt, pair.rejected)
    check_lengths(max_length, max_prompt_length)
    cut = truncate(prompt, [chosen, rejected], max_length, max_prompt_length, tokenizer)
    (prompt, (chosen, rejected)), truncated = cut
    return EncodedPair(prompt, chosen, rejected, truncated, pair.index)


def check_lengths(max_length: int | None, max_prompt_length: int | None) -> None:
    for name, value in (("max_length", max_length), ("max_prompt_length", max_prompt_length)):
        if value is not None and (not isinstance(value, int) or value <= 0):
            raise ValueError(f"{name}: must be a positive int or None, got {value!r}")


def truncate(prompt, responses, max_length, max_prompt_length, tokenizer):
    """``((prompt, responses), truncated)`` under TRL's rules; BOS survives prompt truncation."""
    out_prompt = prompt
    if max_prompt_length is not None and len(prompt) > max_prompt_length:
        out_prompt = _keep_end(prompt, max_prompt_length, tokenizer.bos_token_id)
    if max_length is not None and len(out_prompt) > max_length:  # TRL keep_start: nothing left
        out_prompt = out_prompt[:max_length]
    room = None if max_length is None else max_length - len(out_prompt)
    out = [r if room is None else r[:room] for r in responses]
    truncated = out_prompt != prompt or any(len(a) != len(b) for a, b in zip(out, responses))
    return (out_prompt, out), truncated


def _keep_end(ids: list[int], n: int, bos: int | None) -> list[int]:
    if bos is not None and ids[:1] == [bos] and n > 1:
        return [bos, *ids[len(ids) - n + 1 :]]
    return ids[len(ids) - n :]


def encode_preferences(
    tokenizer: Any,
    pairs: Sequence[PreferencePair],
    *,
    max_length: int | None = None,
    max_prompt_length: int | None = None,
) -> tuple[list[EncodedPair], TruncationReport]:
    """Encode pairs; drop (and report) those that truncation made empty or identical."""
    kept, empty, identical, truncated = [], [], [], 0
    for pair in pairs:
        enc = encode_pair(
            tokenizer, pair, max_length=max_length, max_prompt_length=max_prompt_length
        )
        truncated += enc.truncated
        if not enc.chosen or not enc.rejected:
            empty.append(pair.index)
        elif enc.chosen == enc.rejected:
            identical.append(pair.index)
        else:
            kept.append(enc)
    report = TruncationReport(len(pairs), truncated, tuple(empty), tuple(identical))
    return kept, report


def encode_preference_rows(
    tokenizer: Any,
    rows: Sequence[dict],
    *,
    max_length: int | None = None,
    max_prompt_length: int | None = None,
    num_pairs: int | None = None,
    seed: int = 0,
) -> tuple[list[EncodedPair], dict]:
    """Preference rows → encoded pairs, with a JSON-ready report of every row dropped.

    Malformed rows (:func:`~jaxpref.data.pairs_from_rows`) are dropped, then the pairs that
    truncation leaves empty or identical (:func:`encode_preferences`); with ``num_pairs`` below
    what is left, a random subset of that size (``numpy.random.default_rng(seed)``, kept in row
    order). Report keys: ``rows``, ``valid_pairs``, ``malformed`` (counts by reason),
    ``malformed_rows``, ``truncated``, ``dropped_empty_after_truncation``,
    ``dropped_identical_after_truncation``, ``pool_pairs`` (the pairs returned).
    """
    if num_pairs is not None and (int(num_pairs) != num_pairs or num_pairs < 1):
        raise ValueError(f"num_pairs: must be None or an integer ≥ 1, got {num_pairs!r}")
    data = pairs_from_rows(rows)
    encoded, trunc = encode_preferences(
        tokenizer, data.pairs, max_length=max_length, max_prompt_length=max_prompt_length
    )
    report = {
        "rows": data.num_rows,
        "valid_pairs": len(data.pairs),
        "malformed": data.malformed_counts(),
        "malformed_rows": [m.index for m in data.malformed],
        "truncated": trunc.num_truncated,
        "dropped_empty_after_truncation": list(trunc.empty),
        "dropped_identical_after_truncation": list(trunc.identical),
    }
    if num_pairs is not None and num_pairs < len(encoded):
        keep = np.sort(np.random.default_rng(seed).choice(len(encoded), num_pairs, False))
        encoded = [encoded[i] for i in keep]
    return encoded, report | {"pool_pairs": len(encoded)}


@dataclasses.dataclass(frozen=True)
class EncodedCompletion:
    prompt: list[int]  # BOS (when the tokenizer adds one) for plain language-modelling text
    completion: list[int]
    truncated: bool = False
    index: int = -1

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.completion)


def encode_completions(
    tokenizer: Any,
    examples: Sequence[Any],
    *,
    max_length: int | None = None,
    max_prompt_length: int | None = None,
) -> tuple[list[EncodedCompletion], TruncationReport]:
    """Encode :class:`~jaxpref.data.completions.Completion` examples, the sequence cut to
    ``max_length`` from its start (TRL's SFT truncation; a prompt longer than
    ``max_prompt_length``, when given, first keeps its last tokens so the completion survives);
    empty completions dropped and reported."""
    check_lengths(max_length, max_prompt_length)
    kept, empty, truncated = [], [], 0
    for ex in examples:
        prompt = encode_prompt(tokenizer, ex.prompt)
        completion = encode_response(tokenizer, ex.prompt, ex.completion)
        (prompt, (completion,)), cut = truncate(
            prompt, [completion], max_length, max_prompt_length, tokenizer
        )
        truncated += cut
        if completion:
            kept.append(EncodedCompletion(prompt, completion, cut, ex.index))
        else:
            empty.append(ex.index)
    return kept, TruncationReport(len(examples), truncated, tuple(empty))


@dataclasses.dataclass(frozen=True)
class PackedRow:
    """Several encoded completions in one row; ``segments`` numbers them from 1."""

    ids: list[int]
    segments: list[int]
    loss: list[int]  # 1 on counted tokens (never a segment's first token)
    indices: tuple[int, ...]  # source rows of the segments

    @property
    def length(self) -> int:
        return len(self.ids)


def pack_completions(
    encoded: Sequence[EncodedCompletion], max_length: int, *, completion_only: bool = True
) -> list[PackedRow]:
    """Best-fit-decreasing packing of encoded completions into rows of at most ``max_length``
    tokens (each example whole, in one row), for SFT with ``segment_ids``: a segment attends
    only to itself and its positions restart (``llm.Decoder.hidden_states``)."""
    check_lengths(max_length, None)
    order = sorted(range(len(encoded)), key=lambda i: (-encoded[i].length, i))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        need = encoded[i].length
        if need > max_length:
            raise ValueError(f"max_length: example {encoded[i].index} has {need} tokens")
        fits = [b for b, r in enumerate(room) if r >= need]
        if fits:
            b = min(fits, key=lambda b: (room[b], b))  # the tightest bin
            bins[b].append(i)
            room[b] -= need
        else:
            bins.append([i])
            room.append(max_length - need)
    return [_packed(encoded, members, completion_only) for members in bins]


def _packed(encoded, members, completion_only) -> PackedRow:
    ids, segments, loss = [], [], []
    for k, i in enumerate(sorted(members), start=1):
        e = encoded[i]
        ids += [*e.prompt, *e.completion]
        segments += [k] * e.length
        counted = (
            [0] * len(e.prompt) + [1] * len(e.completion) if completion_only else [1] * e.length
        )
        counted[0] = 0  # its predecessor belongs to another segment
        loss += counted
    return PackedRow(ids, segments, loss, tuple(encoded[i].index for i in sorted(members)))


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
    width = max((e.length for e in encoded), default=0) if length is None else length
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
    max_prompt_length: int | None = None,
    length: int | None = None,
    padding_side: str = "right",
) -> PreferenceBatch:
    """Encode and collate pairs in one call (pairs that truncation empties are kept here: use
    :func:`encode_preferences` to drop and report them)."""
    encoded = [
        encode_pair(tokenizer, p, max_length=max_length, max_prompt_length=max_prompt_length)
        for p in pairs
    ]
    return collate_preferences(
        encoded, pad_id=pad_id(tokenizer), length=length, padding_side=padding_side
    )

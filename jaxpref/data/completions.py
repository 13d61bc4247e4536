"""Prompt–completion examples for supervised fine-tuning, from rows in TRL's SFT formats.

A row is one of (checked in this order):

- prompt–completion: ``prompt`` and ``completion`` columns, text or message lists;
- a preference row (``chosen`` / ``rejected``, with or without ``prompt``): the prompt and the
  *chosen* response, as the HH pipeline's SFT stage uses it;
- conversational language modelling: ``messages``, whose last turn (the assistant's) is the
  completion and the turns before it the prompt;
- language modelling: ``text`` alone (an empty prompt; every token is a completion token).

Malformed rows are reported (row index, column, reason) as for preference pairs, never kept and
never fatal.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any, Iterable

from jaxpref.data.preferences import (
    BadLine,
    MalformedPair,
    PreferencePair,
    Text,
    _BadValue,
    _content,
    _value,
    row_to_pair,
)


@dataclasses.dataclass(frozen=True)
class Completion:
    prompt: Text  # "" for plain text, else text or the prompt's messages
    completion: Text  # text, or the completion's messages
    index: int  # row index in the source


@dataclasses.dataclass(frozen=True)
class CompletionData:
    examples: list[Completion]
    malformed: list[MalformedPair]
    num_rows: int

    def __len__(self) -> int:
        return len(self.examples)

    def summary(self) -> str:
        counts = Counter(m.reason for m in self.malformed)
        listed = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        return (
            f"{self.num_rows} rows -> {len(self.examples)} examples; "
            f"{len(self.malformed)} malformed ({listed or 'none'})"
        )


def row_to_completion(index: int, row: Any) -> Completion | MalformedPair:
    """One row in any of the formats of the module docstring."""
    if isinstance(row, BadLine):
        return MalformedPair(index, "bad_line", row.detail)
    if not isinstance(row, dict):
        return MalformedPair(index, "bad_value", f"row is a {type(row).__name__}, not an object")
    try:
        if "completion" in row:
            prompt, completion = _value(row, "prompt"), _value(row, "completion")
        elif "chosen" in row or "rejected" in row:
            pair = row_to_pair(index, row)
            if isinstance(pair, MalformedPair):
                return pair
            prompt, completion = pair.prompt, pair.chosen
        elif "messages" in row:
            messages = _value(row, "messages")
            if isinstance(messages, str) or messages[-1]["role"] != "assistant":
                detail = "the last turn is not the assistant's"
                return MalformedPair(index, "missing_assistant", detail, "messages")
            prompt, completion = messages[:-1], messages[-1:]
        else:
            prompt, completion = "", _value(row, "text")
    except _BadValue as err:
        return MalformedPair(index, "bad_value", str(err), err.column)
    if isinstance(prompt, tuple) != isinstance(completion, tuple) and prompt != "":
        return MalformedPair(index, "mixed_formats", "text and message lists in one row")
    if not _content(completion).strip():
        return MalformedPair(index, "empty_response", "completion is empty", "completion")
    return Completion(prompt, completion, index)


def completions_from_rows(rows: Iterable[Any]) -> CompletionData:
    """:class:`CompletionData` from an iterable of rows (e.g. a ``datasets.Dataset``)."""
    examples, bad, n = [], [], 0
    for n, row in enumerate(rows, start=1):
        item = row_to_completion(n - 1, row)
        (bad if isinstance(item, MalformedPair) else examples).append(item)
    return CompletionData(examples, bad, n)


def as_completion(pair: PreferencePair) -> Completion:
    """The SFT view of a preference pair: its prompt and chosen response."""
    return Completion(pair.prompt, pair.chosen, pair.index)

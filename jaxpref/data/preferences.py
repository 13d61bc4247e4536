"""Preference pairs from dataset rows in every TRL preference format, with a malformed-row report.

A preference pair is (prompt, chosen, rejected) with ONE response boundary. Rows come in the
formats TRL defines (``trl.data_utils``):

- standard, explicit prompt: ``prompt`` / ``chosen`` / ``rejected`` strings;
- conversational, explicit prompt: each column a list of ``{"role", "content"}`` messages
  (system messages kept); the responses are the assistant turn(s);
- implicit prompt: only ``chosen`` / ``rejected``, each a whole conversation; the prompt is their
  shared prefix (whole messages for conversational rows; for text, everything up to the last
  ``"\\n\\nAssistant:"`` marker for HH-style dialogues, else the longest common prefix).

Conversational pairs keep their messages (:attr:`PreferencePair.conversational`) and go through the
tokenizer's chat template; nothing is rendered into HH text. Rows that do not make a valid pair
(a missing or null field, a non-string value, a message without ``role``/``content``, no assistant
turn, prompts that differ between chosen and rejected, an empty response, identical responses)
never crash the loader and are never kept silently: each is listed in
:attr:`PreferenceData.malformed` with its row index, the column and the reason. Exact duplicate
pairs are listed in :attr:`PreferenceData.duplicates` (and dropped on request).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
HH_RLHF_FILE = Path(__file__).parent / "hh_rlhf" / "harmless-base-test.jsonl.gz"
REASONS = (
    "bad_value",  # a missing / null / non-string field, or a malformed message
    "bad_line",  # a line of a JSON-lines file that does not parse (see jaxpref.data.sources)
    "missing_assistant",
    "prompt_mismatch",
    "empty_response",
    "identical",
    "mixed_formats",
)

Message = dict  # {"role": str, "content": str}
Text = str | tuple  # a string, or a tuple of messages (conversational)

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PreferencePair:
    """One valid pair; conversational when the fields are tuples of messages."""

    prompt: Text  # text (ends with the assistant marker for HH rows), or the prompt's messages
    chosen: Text  # preferred response text (as it follows the prompt), or its messages
    rejected: Text  # dispreferred response, same kind as ``chosen``
    index: int  # row index in the source

    @property
    def conversational(self) -> bool:
        return isinstance(self.prompt, tuple)

    @property
    def messages(self) -> tuple[Message, ...]:
        """The prompt as chat turns (HH text is parsed into turns)."""
        return self.prompt if self.conversational else dialogue_messages(self.prompt)


@dataclasses.dataclass(frozen=True)
class MalformedPair:
    """A source row that is not a valid preference pair, and why."""

    index: int
    reason: str  # one of REASONS
    detail: str = ""
    column: str | None = None


@dataclasses.dataclass(frozen=True)
class PreferenceData:
    """Valid pairs plus the report of every row that was dropped or repeated."""

    pairs: list[PreferencePair]
    malformed: list[MalformedPair]
    num_rows: int
    duplicates: list[int] = dataclasses.field(
        default_factory=list
    )  # rows repeating an earlier pair

    def __len__(self) -> int:
        return len(self.pairs)

    def malformed_counts(self) -> dict[str, int]:
        return dict(Counter(m.reason for m in self.malformed))

    def summary(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.malformed_counts().items()))
        dup = f"; {len(self.duplicates)} duplicate pairs" if self.duplicates else ""
        return (
            f"{self.num_rows} rows -> {len(self.pairs)} pairs; "
            f"{len(self.malformed)} malformed ({counts or 'none'}){dup}"
        )

    def columns(self) -> dict[str, list]:
        """TRL-style columns ``prompt`` / ``chosen`` / ``rejected``."""
        return {
            "prompt": [p.prompt for p in self.pairs],
            "chosen": [p.chosen for p in self.pairs],
            "rejected": [p.rejected for p in self.pairs],
        }


def split_dialogue(text: str) -> tuple[str, str] | None:
    """Split an HH dialogue at its last assistant marker: ``(prompt, response)``, or None.

    The prompt keeps the marker (``"...\\n\\nAssistant:"``); the response is everything after it
    (usually starting with a space). None when the text has no assistant turn.
    """
    cut = text.rfind(ASSISTANT)
    if cut < 0:
        return None
    cut += len(ASSISTANT)
    return text[:cut], text[cut:]


def dialogue_messages(prompt: str) -> tuple[Message, ...]:
    """Parse an HH prompt into chat turns; the trailing empty assistant marker is dropped."""
    turns: list[Message] = []
    rest = prompt
    while rest:
        role, rest = _next_role(rest)
        nxt = _next_marker(rest)
        content, rest = rest[:nxt].strip(), rest[nxt:]
        if content or role == "user":
            turns.append({"role": role, "content": content})
    return tuple(turns)


def _next_role(text: str) -> tuple[str, str]:
    for marker, role in ((HUMAN, "user"), (ASSISTANT, "assistant")):
        if text.startswith(marker):
            return role, text[len(marker) :]
    return "user", text  # text before any marker counts as the user's


def _next_marker(text: str) -> int:
    found = [i for i in (text.find(HUMAN), text.find(ASSISTANT)) if i >= 0]
    return min(found, default=len(text))


def make_pair(index: int, chosen: str, rejected: str) -> PreferencePair | MalformedPair:
    """Validate one HH-style row (two whole dialogues) into a pair or a malformed record."""
    c, r = split_dialogue(chosen), split_dialogue(rejected)
    if c is None or r is None:
        side = "chosen" if c is None else "rejected"
        return MalformedPair(index, "missing_assistant", f"no {ASSISTANT!r} in {side}", side)
    return make_prompted_pair(index, c[0], c[1], r[1], other_prompt=r[0])


def make_prompted_pair(
    index: int, prompt: Text, chosen: Text, rejected: Text, *, other_prompt: Text | None = None
) -> PreferencePair | MalformedPair:
    """Validate a row that already has a separate prompt (text or messages)."""
    if other_prompt is not None and other_prompt != prompt:
        return MalformedPair(index, "prompt_mismatch", _first_difference(prompt, other_prompt))
    for side, response in (("chosen", chosen), ("rejected", rejected)):
        if not _content(response).strip():
            return MalformedPair(index, "empty_response", f"{side} response is empty", side)
    if _content(chosen).strip() == _content(rejected).strip():
        return MalformedPair(index, "identical", "chosen and rejected responses are equal")
    return PreferencePair(prompt, chosen, rejected, index)


def _content(x: Text) -> str:
    return x if isinstance(x, str) else "\n".join(m["content"] for m in x)


def _first_difference(a: Text, b: Text) -> str:
    if not (isinstance(a, str) and isinstance(b, str)):
        k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        return f"prompts differ from message {k}"
    k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"prompts differ from character {k}: {a[k : k + 30]!r} vs {b[k : k + 30]!r}"


@dataclasses.dataclass(frozen=True)
class BadLine:
    """Stands in for a source line that did not parse, so row indices stay line numbers."""

    detail: str


class _BadValue(ValueError):
    def __init__(self, column: str, detail: str):
        super().__init__(detail)
        self.column = column


def _value(row: dict, key: str) -> Text:
    """A column's value as text or a tuple of validated messages."""
    if key not in row or row[key] is None:
        raise _BadValue(key, f"{key!r} is missing or null")
    value = row[key]
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and value:
        for k, m in enumerate(value):
            ok = isinstance(m, dict) and isinstance(m.get("role"), str)
            if not ok or not isinstance(m.get("content"), str):
                raise _BadValue(key, f"message {k} of {key!r} lacks a string role or content")
        return tuple({"role": m["role"], "content": m["content"]} for m in value)
    raise _BadValue(key, f"{key!r} is a {type(value).__name__}, not text or a message list")


def row_to_pair(
    index: int, row: dict, *, chosen_key="chosen", rejected_key="rejected", prompt_key="prompt"
) -> PreferencePair | MalformedPair:
    """One dataset row (any TRL preference format, see the module docstring) → pair or report."""
    if isinstance(row, BadLine):
        return MalformedPair(index, "bad_line", row.detail)
    if not isinstance(row, dict):
        return MalformedPair(index, "bad_value", f"row is a {type(row).__name__}, not an object")
    try:
        chosen, rejected = _value(row, chosen_key), _value(row, rejected_key)
        explicit = prompt_key is not None and row.get(prompt_key) is not None
        prompt = _value(row, prompt_key) if explicit else None
    except _BadValue as err:
        return MalformedPair(index, "bad_value", str(err), err.column)
    kinds = {type(x) for x in (chosen, rejected, prompt) if x is not None}
    if len(kinds) > 1:
        return MalformedPair(index, "mixed_formats", "text and message lists in one row")
    if prompt is not None:
        return make_prompted_pair(index, prompt, chosen, rejected)
    if chosen == rejected:
        return MalformedPair(index, "identical", "chosen and rejected are the same conversation")
    if isinstance(chosen, tuple):
        return _implicit_conversation(index, chosen, rejected)
    if ASSISTANT in chosen or ASSISTANT in rejected:
        return make_pair(index, chosen, rejected)
    return _implicit_text(index, chosen, rejected)


def _implicit_conversation(index, chosen, rejected):
    """Prompt = the longest run of leading messages the two conversations share."""
    k = next((i for i, (a, b) in enumerate(zip(chosen, rejected)) if a != b), None)
    k = min(len(chosen), len(rejected)) if k is None else k
    prompt, c, r = chosen[:k], chosen[k:], rejected[k:]
    if not prompt:
        return MalformedPair(index, "prompt_mismatch", "the conversations share no prompt")
    for side, turns in (("chosen", c), ("rejected", r)):
        if turns and turns[0]["role"] != "assistant":
            detail = f"{side} continues with a {turns[0]['role']!r} turn, not the assistant's"
            return MalformedPair(index, "missing_assistant", detail, side)
    return make_prompted_pair(index, prompt, c, r)


def _implicit_text(index, chosen, rejected):
    """TRL's rule for implicit-prompt text: the longest common prefix, minus a trailing space."""
    k = next((i for i, (a, b) in enumerate(zip(chosen, rejected)) if a != b), None)
    k = min(len(chosen), len(rejected)) if k is None else k
    if 0 < k and chosen[k - 1] == " ":
        k -= 1
    if k == 0:
        return MalformedPair(index, "prompt_mismatch", "chosen and rejected share no prompt")
    return make_prompted_pair(index, chosen[:k], chosen[k:], rejected[k:])


def _key(pair: PreferencePair) -> tuple:
    def freeze(x):
        return x if isinstance(x, str) else tuple((m["role"], m["content"]) for m in x)

    return freeze(pair.prompt), freeze(pair.chosen), freeze(pair.rejected)


def pairs_from_rows(
    rows: Iterable[Any],
    *,
    chosen_key: str = "chosen",
    rejected_key: str = "rejected",
    prompt_key: str | None = "prompt",
    drop_duplicates: bool = False,
) -> PreferenceData:
    """Build :class:`PreferenceData` from an iterable of dict rows (e.g. a ``datasets.Dataset``).

    Args:
      rows: dict rows in any TRL preference format (see the module docstring).
      chosen_key, rejected_key, prompt_key: column names; rows without the prompt column (or
        ``prompt_key=None``) are implicit-prompt rows.
      drop_duplicates: drop pairs identical to an earlier one (they are reported either way).
    """
    pairs, bad, seen, duplicates = [], [], {}, []
    n = 0
    for n, row in enumerate(rows, start=1):
        item = row_to_pair(
            n - 1, row, chosen_key=chosen_key, rejected_key=rejected_key, prompt_key=prompt_key
        )
        if isinstance(item, MalformedPair):
            bad.append(item)
            continue
        key = _key(item)
        if key in seen:
            duplicates.append(item.index)
            if drop_duplicates:
                continue
        seen.setdefault(key, item.index)
        pairs.append(item)
    data = PreferenceData(pairs, bad, n, duplicates)
    if bad or duplicates:
        logger.info("preference data: %s", data.summary())
    return data


def check_columns(columns: Iterable[str], needed: Iterable[str], *, source: str) -> None:
    """A one-line error naming the columns found and those expected."""
    columns, needed = list(columns), list(needed)
    missing = [c for c in needed if c not in columns]
    if missing:
        raise ValueError(
            f"dataset: {source} lacks column(s) {', '.join(map(repr, missing))} "
            f"(found {', '.join(map(repr, columns)) or 'none'}; expected {', '.join(needed)})"
        )

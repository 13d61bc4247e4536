"""Preference pairs: HF ``datasets`` loading, HH dialogue splitting, malformed-pair report.

A preference pair is (prompt, chosen, rejected) with ONE response boundary: the prompt is the
text up to and including the last ``"\\n\\nAssistant:"`` marker, each response is what follows.
Rows that do not make a valid pair (no assistant turn, prompts that differ between chosen and
rejected, an empty response, identical responses) are never kept silently and never crash the
loader: they are listed in :attr:`PreferenceData.malformed` with their row index and reason.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from pathlib import Path
from typing import Any

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
HH_RLHF_FILE = Path(__file__).parent / "hh_rlhf" / "harmless-base-test.jsonl.gz"
_BUILDERS = {".json": "json", ".jsonl": "json", ".gz": "json", ".parquet": "parquet"}

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PreferencePair:
    """One valid pair. ``messages`` is the prompt as chat turns (role/content dicts)."""

    prompt: str  # raw prompt text, ends with the assistant marker for HH-style rows
    chosen: str  # preferred response text (as it follows the prompt)
    rejected: str  # dispreferred response text
    messages: tuple[dict[str, str], ...]  # prompt turns for chat templates
    index: int  # row index in the source


@dataclasses.dataclass(frozen=True)
class MalformedPair:
    """A source row that is not a valid preference pair, and why."""

    index: int
    reason: str  # one of: missing_assistant, prompt_mismatch, empty_response, identical
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class PreferenceData:
    """Valid pairs plus the report of every row that was dropped."""

    pairs: list[PreferencePair]
    malformed: list[MalformedPair]
    num_rows: int

    def __len__(self) -> int:
        return len(self.pairs)

    def malformed_counts(self) -> dict[str, int]:
        return dict(Counter(m.reason for m in self.malformed))

    def summary(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.malformed_counts().items()))
        return (
            f"{self.num_rows} rows -> {len(self.pairs)} pairs; "
            f"{len(self.malformed)} malformed ({counts or 'none'})"
        )

    def columns(self) -> dict[str, list[str]]:
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


def dialogue_messages(prompt: str) -> tuple[dict[str, str], ...]:
    """Parse an HH prompt into chat turns; the trailing empty assistant marker is dropped."""
    turns: list[dict[str, str]] = []
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
        return MalformedPair(index, "missing_assistant", f"no {ASSISTANT!r} in {side}")
    return make_prompted_pair(index, c[0], c[1], r[1], other_prompt=r[0])


def make_prompted_pair(
    index: int, prompt: str, chosen: str, rejected: str, *, other_prompt: str | None = None
) -> PreferencePair | MalformedPair:
    """Validate a row that already has a separate prompt."""
    if other_prompt is not None and other_prompt != prompt:
        return MalformedPair(index, "prompt_mismatch", _first_difference(prompt, other_prompt))
    if not chosen.strip() or not rejected.strip():
        side = "chosen" if not chosen.strip() else "rejected"
        return MalformedPair(index, "empty_response", f"{side} response is empty")
    if chosen.strip() == rejected.strip():
        return MalformedPair(index, "identical", "chosen and rejected responses are equal")
    return PreferencePair(prompt, chosen, rejected, dialogue_messages(prompt), index)


def _first_difference(a: str, b: str) -> str:
    k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"prompts differ from character {k}: {a[k : k + 30]!r} vs {b[k : k + 30]!r}"


def pairs_from_rows(
    rows: Any,
    *,
    chosen_key: str = "chosen",
    rejected_key: str = "rejected",
    prompt_key: str | None = None,
) -> PreferenceData:
    """Build :class:`PreferenceData` from an iterable of dict rows (e.g. a ``datasets.Dataset``).

    Without ``prompt_key`` each row holds two whole HH dialogues; with it, the prompt is a column
    and ``chosen``/``rejected`` are the responses. Message-list rows (``[{"role", "content"}]``)
    are rendered to HH text first.
    """
    pairs, bad, n = [], [], 0
    for n, row in enumerate(rows, start=1):
        item = _row_to_pair(n - 1, row, chosen_key, rejected_key, prompt_key)
        (pairs if isinstance(item, PreferencePair) else bad).append(item)
    data = PreferenceData(pairs, bad, n)
    if bad:
        logger.info("preference data: %s", data.summary())
    return data


def _row_to_pair(index, row, chosen_key, rejected_key, prompt_key):
    for key in (chosen_key, rejected_key) + ((prompt_key,) if prompt_key else ()):
        if key not in row:
            raise ValueError(f"{key}: column missing from the dataset (have {sorted(row)})")
    if prompt_key is None:
        return make_pair(index, _as_dialogue(row[chosen_key]), _as_dialogue(row[rejected_key]))
    prompt = _as_dialogue(row[prompt_key])
    if not prompt.startswith((HUMAN, ASSISTANT)):
        prompt = f"{HUMAN} {prompt}"
    if not prompt.endswith(ASSISTANT):
        prompt += ASSISTANT
    chosen, rejected = _as_response(row[chosen_key]), _as_response(row[rejected_key])
    return make_prompted_pair(index, prompt, chosen, rejected)


def _as_dialogue(value: Any) -> str:
    """Text as is; a list of chat messages rendered in HH form."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        markers = {"user": HUMAN, "assistant": ASSISTANT}
        return "".join(f"{markers.get(m['role'], HUMAN)} {m['content']}" for m in value)
    raise ValueError(f"expected text or a list of chat messages, got {type(value).__name__}")


def _as_response(value: Any) -> str:
    """A response column: text, or a message list whose last message is the response."""
    text = value[-1]["content"] if isinstance(value, list) and value else _as_dialogue(value)
    return text if text[:1].isspace() else " " + text


def load_preference_dataset(
    source: str | Path,
    *,
    split: str = "train",
    data_dir: str | None = None,
    chosen_key: str = "chosen",
    rejected_key: str = "rejected",
    prompt_key: str | None = None,
    cache_dir: str | None = None,
) -> PreferenceData:
    """Load preference pairs with ``datasets.load_dataset`` from a local file/folder or hub name.

    Args:
      source: a local ``.json``/``.jsonl``/``.jsonl.gz``/``.parquet`` file, a local dataset
        folder, or a hub name (e.g. ``"Anthropic/hh-rlhf"`` with ``data_dir="harmless-base"``;
        needs network, never used in tests).
      split: split to read (a single local file is always its ``"train"`` split).
      chosen_key, rejected_key, prompt_key: column names (see :func:`pairs_from_rows`).

    Returns:
      :class:`PreferenceData` with the valid pairs and a report of the malformed rows.
    """
    import datasets

    path = Path(source)
    if path.is_file():
        builder = _BUILDERS.get(path.suffix)
        if builder is None:
            raise ValueError(f"source: unsupported file type {path.suffix!r} (json/jsonl/parquet)")
        ds = datasets.load_dataset(
            builder, data_files=str(path), split="train", cache_dir=cache_dir
        )
    else:
        ds = datasets.load_dataset(str(source), data_dir=data_dir, split=split, cache_dir=cache_dir)
    return pairs_from_rows(
        ds, chosen_key=chosen_key, rejected_key=rejected_key, prompt_key=prompt_key
    )


def load_hh_rlhf(*, cache_dir: str | None = None) -> PreferenceData:
    """The HH-RLHF harmless-base test split shipped with jaxpref (2,312 rows, MIT licence)."""
    return load_preference_dataset(HH_RLHF_FILE, cache_dir=cache_dir)

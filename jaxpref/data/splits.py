"""Deterministic splits of a dataset's rows into named parts, written as a folder of JSON-lines
files that ``jaxpref.data.load_splits`` (and ``datasets.load_dataset``) read back by file name."""

from __future__ import annotations

import gzip
import json
import pathlib
from typing import Any, Sequence

import numpy as np

from jaxpref.data.preferences import HH_RLHF_FILE


def shipped_hh_rows() -> list[dict]:
    """Every raw row of the shipped HH-RLHF harmless-base test split (malformed ones included)."""
    with gzip.open(HH_RLHF_FILE, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def write_splits(
    rows: Sequence[Any],
    folder: str | pathlib.Path,
    sizes: dict[str, int | float],
    *,
    seed: int = 0,
) -> dict[str, int]:
    """Shuffle ``rows`` with ``seed`` and cut them into ``sizes`` (a count, a fraction of all
    rows, or ``-1`` for the rest, at most one), in order; each part is written, in its original
    row order, to ``folder/<name>.jsonl``. Returns the row count of each part.
    """
    n = len(rows)
    counts = {k: (int(round(v * n)) if isinstance(v, float) else int(v)) for k, v in sizes.items()}
    rest = [k for k, v in counts.items() if v == -1]
    if len(rest) > 1:
        raise ValueError(f"sizes: at most one part may be -1 (the rest), got {rest}")
    fixed = sum(v for v in counts.values() if v != -1)
    if fixed > n or any(v < -1 for v in counts.values()):
        raise ValueError(f"sizes: {sizes} ask for {fixed} of {n} rows")
    if rest:
        counts[rest[0]] = n - fixed
    order = np.random.default_rng(seed).permutation(n)
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    start = 0
    for name, count in counts.items():
        part = sorted(order[start : start + count])
        start += count
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(rows[i]) + "\n" for i in part))
    return counts

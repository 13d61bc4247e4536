"""Which examples each optimizer step sees, padded to a few bucket lengths.

The order is a pure function of (seed, step): epoch ``e`` is a permutation drawn from
``default_rng([seed, e])`` cut into steps of ``rows_per_step`` examples (the last step of an epoch
is filled with padding rows of weight 0, so every step has one shape). A resumed run therefore
sees exactly the batches the uninterrupted run saw, and the data position saved with a
checkpoint is the step itself, written out (epoch, step in epoch, examples seen) so a changed
dataset is caught on resume.

Each step's rows are padded to the smallest of a few bucket lengths that holds its longest
example, so a run compiles one program per bucket, not one per batch.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

PAD = -1  # index of a padding row


def bucket_lengths(longest: int, count: int, *, multiple: int = 8) -> tuple[int, ...]:
    """``count`` lengths up to ``longest`` (rounded up to ``multiple``), halving downwards."""
    if longest < 1 or count < 1:
        raise ValueError(
            f"length_buckets: need a positive count and length, got {count}, {longest}"
        )
    top = multiple * math.ceil(longest / multiple)
    out = {top}
    for k in range(1, count):
        out.add(max(multiple, multiple * math.ceil(top / 2**k / multiple)))
    return tuple(sorted(out))


def pick_bucket(length: int, buckets: tuple[int, ...]) -> int:
    for b in buckets:
        if length <= b:
            return b
    raise ValueError(f"length: {length} exceeds the largest bucket {buckets[-1]}")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Example indices of every step: ``indices(step)`` is ``(accumulation, micro_rows)``."""

    num_examples: int
    micro_rows: int  # rows of one micro-batch (per-device batch × batch devices)
    accumulation: int  # micro-batches per optimizer step
    seed: int

    def __post_init__(self):
        if self.num_examples < 1:
            raise ValueError("dataset: no examples left to train on")

    @property
    def rows_per_step(self) -> int:
        return self.micro_rows * self.accumulation

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_examples / self.rows_per_step)

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

    def indices(self, step: int) -> np.ndarray:
        epoch, i = divmod(step, self.steps_per_epoch)
        chosen = self._order(epoch)[i * self.rows_per_step : (i + 1) * self.rows_per_step]
        out = np.full(self.rows_per_step, PAD, np.int64)
        out[: len(chosen)] = chosen
        return out.reshape(self.accumulation, self.micro_rows)

    def position(self, step: int) -> dict[str, int]:
        """Where ``step`` (the next step to run) stands in the data."""
        epoch, i = divmod(step, self.steps_per_epoch)
        seen = epoch * self.num_examples + min(i * self.rows_per_step, self.num_examples)
        return {
            "epoch": epoch,
            "step_in_epoch": i,
            "examples_seen": seen,
            "num_examples": self.num_examples,
            "rows_per_step": self.rows_per_step,
        }

    def epoch_of(self, step: int) -> float:
        """Fractional epoch after ``step`` steps (TRL's ``epoch`` metric)."""
        return round(step / self.steps_per_epoch, 4)


def eval_batches(num_examples: int, rows: int) -> list[np.ndarray]:
    """The eval set in order, in batches of ``rows`` (the last padded with ``PAD``)."""
    out = []
    for start in range(0, num_examples, rows):
        idx = np.full(rows, PAD, np.int64)
        chunk = np.arange(start, min(start + rows, num_examples))
        idx[: len(chunk)] = chunk
        out.append(idx[None])  # (1, rows): one micro-batch
    return out

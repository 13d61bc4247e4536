"""A minimal resumable training loop: batches are a function of the step, so a resumed run sees
exactly the batches (and, through ``fold_in(key, step)``, the keys) the uninterrupted run saw.
"""

from __future__ import annotations

from typing import Any, Callable

from jaxpref.train.checkpoint import Checkpointer
from jaxpref.train.steps import TrainState

StepFn = Callable[[TrainState, Any], tuple[TrainState, dict]]


def restore_or_init(
    checkpointer: Checkpointer, fresh: TrainState, target: Any = None
) -> TrainState:
    """The latest checkpoint read into ``target`` (default: ``fresh``'s layout), else ``fresh``."""
    if checkpointer.latest_step() is None:
        return fresh
    return checkpointer.restore(fresh if target is None else target)


def train_loop(
    step_fn: StepFn,
    state: TrainState,
    batch_at: Callable[[int], Any],
    *,
    num_steps: int,
    checkpointer: Checkpointer | None = None,
    save_every: int = 0,
    on_step: Callable[[int, dict], None] | None = None,
) -> TrainState:
    """Run ``step_fn`` from ``state.step`` up to ``num_steps`` total optimizer steps.

    Args:
      step_fn: jitted step from :func:`jaxpref.train.steps.make_train_step`.
      state: the state to continue from (fresh or restored).
      batch_at: ``step -> batch``, deterministic in the step.
      num_steps: total steps (not additional ones).
      checkpointer, save_every: save after every ``save_every``-th step (0: never) and at the end.
      on_step: called with ``(step, metrics)`` after each step.
    """
    if save_every < 0:
        raise ValueError(f"save_every: must be >= 0, got {save_every}")
    step = saved = int(state.step)
    while step < num_steps:
        state, metrics = step_fn(state, batch_at(step))
        step += 1
        if on_step is not None:
            on_step(step, metrics)
        if checkpointer is not None and save_every and step % save_every == 0:
            saved = checkpointer.save(state, step=step)
    if checkpointer is not None and saved != step:
        checkpointer.save(state, step=step)
    return state

"""Orbax checkpoints of a :class:`~jaxpref.train.steps.TrainState` (params, other model variables,
optimizer state, step, RNG key), each step with a small JSON dict of run metadata beside it (the
trainers keep their data position there).

Saves are asynchronous (Orbax ``CheckpointManager`` writes in a background thread once the
arrays are copied off the devices; a step becomes visible only when its write is finalised, so a
run killed mid-write resumes from the previous complete step). The last ``max_to_keep`` steps are
kept. Saving a step that already exists raises instead of being skipped or overwritten. Restore
takes an abstract target (``ShapeDtypeStruct`` with shardings), so a checkpoint written on one
mesh is read straight onto another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp


class CheckpointExistsError(ValueError):
    """A checkpoint for this step is already on disk (never overwritten silently)."""


class Checkpointer:
    """Keep-last-N asynchronous checkpoints of a train state in ``directory``.

    Use as a context manager (or call :meth:`close`) so pending writes finish::

        with Checkpointer(path, max_to_keep=2) as ckpt:
            ckpt.save(state)
            state = ckpt.restore(target)
    """

    def __init__(
        self, directory: str | Path, *, max_to_keep: int | None = 3, async_save: bool = True
    ):
        if max_to_keep is not None and max_to_keep < 1:
            raise ValueError(f"max_to_keep: must be >= 1 or None, got {max_to_keep}")
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, state: Any, *, step: int | None = None, metadata: dict | None = None) -> int:
        """Start writing ``state`` (and the JSON-able ``metadata``) as ``step`` (default
        ``int(state.step)``); returns the step."""
        step = int(state.step) if step is None else int(step)
        exists = CheckpointExistsError(
            f"step: a checkpoint for step {step} already exists in {self.directory}"
        )
        if step in self.all_steps():
            raise exists
        try:
            items = ocp.args.Composite(
                state=ocp.args.StandardSave(state), metadata=ocp.args.JsonSave(metadata or {})
            )
            self._manager.save(step, args=items, force=True)
        except ocp.checkpoint_manager.StepAlreadyExistsError as err:  # a pending write of it
            raise exists from err
        return step

    def restore(self, target: Any, *, step: int | None = None) -> Any:
        """Read ``step`` (default: latest) into the structure, dtypes, shardings of ``target``."""
        step = self._existing(step)
        items = ocp.args.Composite(state=ocp.args.StandardRestore(target))
        return self._manager.restore(step, args=items).state

    def metadata(self, *, step: int | None = None) -> dict:
        """The metadata dict saved with ``step`` (default: latest)."""
        step = self._existing(step)
        items = ocp.args.Composite(metadata=ocp.args.JsonRestore())
        return dict(self._manager.restore(step, args=items).metadata)

    def _existing(self, step: int | None) -> int:
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"directory: no checkpoint in {self.directory}")
        if step not in self.all_steps():
            raise FileNotFoundError(
                f"step: no checkpoint for step {step} in {self.directory} (have {self.all_steps()})"
            )
        return step

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def wait(self) -> None:
        """Block until pending asynchronous writes are finalised."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

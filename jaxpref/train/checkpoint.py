"""Orbax checkpoints of a :class:`~jaxpref.train.steps.TrainState` (params, other model variables,
optimizer state, step, RNG key), each step with a small JSON dict of run metadata beside it (the
trainers keep their data position there).

Saves are asynchronous (Orbax ``CheckpointManager`` writes in a background thread once the
arrays are copied off the devices; a step becomes visible only when its write is finalised, so a
run killed mid-write resumes from the previous complete step). The last ``max_to_keep`` steps are
kept. Saving a step that already exists raises instead of being skipped or overwritten. Restore
takes an abstract target (``ShapeDtypeStruct`` with shardings), so a checkpoint written on one
mesh is read straight onto another.

Each step also stores a checksum of every saved array (:func:`array_digest`, computed on the
devices from the array's bits, so it does not depend on the sharding and never gathers the array
to one host). Restore recomputes it and raises :class:`CheckpointCorruptError` naming the step
and the array when a file changed on disk; ``restore(..., fallback=True)`` then uses the newest
earlier step that reads back exactly, with a warning. Steps written before checksums existed
restore unverified.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

CHECKSUMS = "checksums"


class CheckpointExistsError(ValueError):
    """A checkpoint for this step is already on disk (never overwritten silently)."""


class CheckpointCorruptError(ValueError):
    """A saved step does not read back as it was written (a checksum mismatch or unreadable
    data); the message names the step."""


def array_digest(x) -> jax.Array:
    """Two 32-bit sums of a bijective mix (MurmurHash3's finaliser) of each element's bits
    salted by its position (a ``(2,)`` uint32 array). A single flipped bit always changes both
    sums (the mix is a bijection, so that element's term changes and the others do not), and
    moving an element changes its salt."""
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    bits = _as_uint32(jnp.asarray(x)).ravel()
    i = jnp.arange(bits.size, dtype=jnp.uint32)
    h1 = jnp.sum(_fmix32(bits ^ (i * jnp.uint32(0x9E3779B9))), dtype=jnp.uint32)
    h2 = jnp.sum(_fmix32(bits + _fmix32(i + jnp.uint32(1))), dtype=jnp.uint32)
    return jnp.stack([h1, h2])


def _fmix32(h: jax.Array) -> jax.Array:
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _as_uint32(x: jax.Array) -> jax.Array:
    size = x.dtype.itemsize
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    if size == 4:
        return jax.lax.bitcast_convert_type(x, jnp.uint32)
    if size in (1, 2):
        unsigned = jnp.uint8 if size == 1 else jnp.uint16
        return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)
    return jax.lax.bitcast_convert_type(x, jnp.uint32)  # 8 bytes: a trailing axis of 2


@jax.jit
def _digests(arrays: dict) -> dict:
    return {k: array_digest(v) for k, v in arrays.items()}


def _arrays(tree: Any) -> dict[str, Any]:
    """``keystr(path) → array`` for the array leaves of ``tree``."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        jax.tree_util.keystr(p): v
        for p, v in leaves
        if isinstance(v, (jax.Array, np.ndarray, np.generic))
    }


def checksums(tree: Any) -> dict[str, dict]:
    """The JSON record stored with a step: each array's dtype, shape and digest."""
    arrays = _arrays(tree)
    digests = jax.device_get(_digests(arrays))
    return {
        k: {"dtype": str(arrays[k].dtype), "shape": list(arrays[k].shape),
            "digest": [int(d) for d in digests[k]]}
        for k in arrays
    }  # fmt: skip


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
        self.restored_step: int | None = None  # the step the last restore read

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
                state=ocp.args.StandardSave(state),
                metadata=ocp.args.JsonSave(metadata or {}),
                **{CHECKSUMS: ocp.args.JsonSave(checksums(state))},
            )
            self._manager.save(step, args=items, force=True)
        except ocp.checkpoint_manager.StepAlreadyExistsError as err:  # a pending write of it
            raise exists from err
        return step

    def restore(self, target: Any, *, step: int | None = None, fallback: bool = False) -> Any:
        """Read ``step`` (default: latest) into the structure, dtypes, shardings of ``target``,
        verified against the checksums saved with it.

        Raises :class:`CheckpointCorruptError` naming the step when it does not read back as
        written; with ``fallback=True`` the newest earlier step that does is returned instead
        (with a ``RuntimeWarning`` naming the bad step; :attr:`restored_step` says which)."""
        step = self._existing(step)
        candidates = [s for s in reversed(self.all_steps()) if s <= step] if fallback else [step]
        errors = []
        for s in candidates:
            try:
                state = self._restore_verified(target, s)
            except CheckpointCorruptError as err:
                if not fallback:
                    raise
                errors.append(err)
                continue
            if errors:
                warnings.warn(
                    f"{'; '.join(map(str, errors))}; restored step {s} instead", RuntimeWarning
                )
            self.restored_step = s
            return state
        raise CheckpointCorruptError(
            f"step: no checkpoint up to step {step} in {self.directory} reads back as written "
            f"({'; '.join(map(str, errors))})"
        )

    def _restore_verified(self, target: Any, step: int) -> Any:
        items = {"state": ocp.args.StandardRestore(target)}
        verified = (self.directory / str(step) / CHECKSUMS).exists()
        if verified:
            items[CHECKSUMS] = ocp.args.JsonRestore()
        try:
            got = self._manager.restore(step, args=ocp.args.Composite(**items))
        except (ValueError, OSError, RuntimeError) as err:
            if not self._readable(step):
                raise CheckpointCorruptError(
                    f"step {step}: checkpoint in {self.directory} cannot be read ({err})"
                ) from err
            raise
        if verified:
            self._verify(step, got.state, got[CHECKSUMS])
        return got.state

    def _readable(self, step: int) -> bool:
        """Whether ``step``'s data reads at all (its own layout, not the caller's target)."""
        try:
            self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
        except Exception:  # noqa: BLE001 - any failure to decode the files is corruption
            return False
        return True

    def _verify(self, step: int, state: Any, saved: dict) -> None:
        now = checksums(state)
        for key, record in saved.items():
            same_layout = key in now and {**now[key], "digest": None} == {
                **record,
                "digest": None,
            }
            if same_layout and now[key]["digest"] != list(record["digest"]):
                raise CheckpointCorruptError(
                    f"step {step}: array {key} in {self.directory} does not match the checksum "
                    "saved with it (the files changed on disk)"
                )

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

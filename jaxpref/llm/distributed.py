"""Multi-host (multi-controller) JAX: one Python process per host, one global mesh.

JAX's own runtime is the distributed engine; this module only wraps
``jax.distributed.initialize`` with argument checks, environment-variable defaults and an
idempotent guard, and reports the process layout.

Launch (the same script on every host, before any other JAX call)::

    # host i of N, with host 0 reachable at 10.0.0.1:
    JAXPREF_COORDINATOR=10.0.0.1:1234 JAXPREF_NUM_PROCESSES=N JAXPREF_PROCESS_ID=i \\
        python train.py

    # train.py
    from jaxpref.llm import distributed
    distributed.initialize()                 # no-op for a single process
    mesh = jaxpref.train.mesh.make_mesh(data=-1, fsdp=8)   # spans every host's devices
    model = jaxpref.llm.hf_io.from_pretrained(path, mesh=mesh)

On SLURM, Cloud TPU and other clusters JAX auto-detects all three values: call
``initialize()`` with no arguments and no environment variables. Each process then sees
``jax.devices()`` (global) and ``jax.local_devices()`` (its own); feed each process its slice of
the batch with ``jax.make_array_from_process_local_data``.

Bad launches fail on every process instead of hanging: after JAX's initialisation every process
shares the count and id it was started with (:func:`check_layout`), and :func:`everywhere` runs a
check on each process and raises on all of them when any one fails. An id outside the
coordinator's count, or two processes with one id, is refused by JAX's coordination service
itself, which ends every process (the coordinator after ``initialization_timeout`` seconds); the
line each process prints before connecting names its values.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

_STATE = {"initialized": False}


class ProcessInfo(NamedTuple):
    process_id: int
    num_processes: int
    local_devices: int
    global_devices: int


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError as err:
        raise ValueError(f"{name}: expected an integer, got {value!r}") from err


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    **kwargs,
) -> ProcessInfo:
    """Start multi-controller JAX (once per process); a single-process run is a no-op.

    Arguments default to ``JAXPREF_COORDINATOR``, ``JAXPREF_NUM_PROCESSES`` and
    ``JAXPREF_PROCESS_ID``; with none given and more than one process expected, JAX's cluster
    auto-detection is used. Other keyword arguments pass through to
    ``jax.distributed.initialize``.
    """
    coordinator_address = coordinator_address or os.environ.get("JAXPREF_COORDINATOR")
    num_processes = (
        num_processes if num_processes is not None else _env_int("JAXPREF_NUM_PROCESSES")
    )
    process_id = process_id if process_id is not None else _env_int("JAXPREF_PROCESS_ID")
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes: must be ≥ 1, got {num_processes}")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"process_id: must be in [0, {num_processes}), got {process_id}")
    single = num_processes == 1 or (
        num_processes is None
        and coordinator_address is None
        and not kwargs.get("cluster_detection_method")
    )
    if not single and not _STATE["initialized"]:
        print(
            f"jaxpref: process {_auto(process_id)} of {_auto(num_processes)}, coordinator "
            f"{_auto(coordinator_address)}: connecting",
            file=sys.stderr,
            flush=True,
        )
        jax.distributed.initialize(coordinator_address, num_processes, process_id, **kwargs)
        _STATE["initialized"] = True
        check_layout(num_processes, process_id)
    return process_info()


def _auto(value) -> str:
    return "(auto-detected)" if value is None else str(value)


def check_layout(num_processes: int | None, process_id: int | None) -> None:
    """Every process checks the count and id each process was started with against the
    coordinator's view (JAX itself accepts a count that differs from the coordinator's)."""
    asked = np.array(
        [-1 if num_processes is None else num_processes, -1 if process_id is None else process_id]
    )
    rows = allgather(asked) if jax.process_count() > 1 else asked[None]
    bad = [
        i for i, (n, p) in enumerate(rows) if (n != -1 and n != len(rows)) or (p != -1 and p != i)
    ]
    if bad:
        listed = "; ".join(
            f"process {i}: num_processes={n}, process_id={p}" for i, (n, p) in enumerate(rows)
        )
        raise ValueError(
            f"num_processes/process_id: the coordinator counts {len(rows)} processes but they "
            f"were started with ({listed}); give every process the same count and ids "
            f"0..{len(rows) - 1}"
        )


def allgather(x: Any) -> np.ndarray:
    """``x`` (the same shape on every process) from every process, stacked: ``(processes, ...)``."""
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(np.asarray(x)))


def to_host(tree: Any) -> Any:
    """Every array of ``tree`` as a whole NumPy array on this process (a collective gather for
    arrays that span other processes' devices: every process must call it)."""
    from jax.experimental import multihost_utils

    def get(x):
        if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated):
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(get, tree)


def everywhere(check: Callable[[], Any], *, size: int = 2048) -> Any:
    """Run ``check()`` on every process; when it raises on any process, raise on all of them
    (this process's own exception, or a ``ValueError`` naming the processes that failed and
    their messages), so no process goes on to wait for the others in a collective."""
    if jax.process_count() == 1:
        return check()
    error, result = None, None
    try:
        result = check()
    except Exception as err:  # shared with the other processes, then raised again below
        error = err
    text = "" if error is None else f"{type(error).__name__}: {error}"
    buf = np.zeros(size, np.uint8)
    raw = text.encode()[:size]
    buf[: len(raw)] = np.frombuffer(raw, np.uint8)
    messages = [bytes(row).rstrip(b"\0").decode(errors="replace") for row in allgather(buf)]
    if error is not None:
        raise error
    failed = [f"process {i}: {m}" for i, m in enumerate(messages) if m]
    if failed:
        raise ValueError("another process failed its check (" + "; ".join(failed) + ")")
    return result


def process_info() -> ProcessInfo:
    """This process's index, the process count and the local / global device counts."""
    return ProcessInfo(
        jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count()
    )


def is_coordinator() -> bool:
    """True on process 0 (the one that should write logs and checkpoints metadata)."""
    return jax.process_index() == 0

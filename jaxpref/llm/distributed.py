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
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax

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
        jax.distributed.initialize(coordinator_address, num_processes, process_id, **kwargs)
        _STATE["initialized"] = True
    return process_info()


def process_info() -> ProcessInfo:
    """This process's index, the process count and the local / global device counts."""
    return ProcessInfo(
        jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count()
    )


def is_coordinator() -> bool:
    """True on process 0 (the one that should write logs and checkpoints metadata)."""
    return jax.process_index() == 0

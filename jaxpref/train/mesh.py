"""Device mesh with axes (``data``, ``fsdp``, ``tensor``) and the checks that shardings fit it.

Built with ``jax.make_mesh(..., axis_types=(AxisType.Auto,) * 3)`` (JAX's default is Explicit
axes; Auto gives GSPMD-style propagation). Enter it with ``jax.set_mesh(mesh)``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # the batch dimension is split over both data-parallel axes


def make_mesh(
    data: int = -1, fsdp: int = 1, tensor: int = 1, *, devices: Sequence[Any] | None = None
) -> Mesh:
    """A ``(data, fsdp, tensor)`` mesh over ``devices`` (default: all).

    One size may be ``-1``: it takes whatever the others leave. The product must equal the
    number of devices; otherwise a ``ValueError`` names the sizes and the device count.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = resolve_mesh_shape({"data": data, "fsdp": fsdp, "tensor": tensor}, len(devices))
    return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices)


def resolve_mesh_shape(sizes: dict[str, int], num_devices: int) -> tuple[int, ...]:
    """Fill in one ``-1`` and check that the sizes multiply to ``num_devices``."""
    for name, size in sizes.items():
        if not isinstance(size, int) or (size < 1 and size != -1):
            raise ValueError(f"{name}: mesh axis size must be a positive int or -1, got {size!r}")
    free = [n for n, s in sizes.items() if s == -1]
    if len(free) > 1:
        raise ValueError(f"{', '.join(free)}: at most one mesh axis may be -1")
    fixed = math.prod(s for s in sizes.values() if s != -1)
    if free:
        if num_devices % fixed:
            raise ValueError(
                f"{free[0]}: cannot fill -1, {num_devices} devices are not divisible by the "
                f"other axes' product {fixed}"
            )
        sizes = {**sizes, free[0]: num_devices // fixed}
    if math.prod(sizes.values()) != num_devices:
        listed = " x ".join(f"{n}={s}" for n, s in sizes.items())
        raise ValueError(f"mesh: {listed} = {math.prod(sizes.values())} != {num_devices} devices")
    return tuple(sizes.values())


def check_divisible(name: str, shape: Sequence[int], spec: PartitionSpec, mesh: Mesh) -> None:
    """Each sharded dimension of ``shape`` must divide by the product of its mesh axes."""
    if len(spec) > len(shape):
        raise ValueError(f"{name}: spec {spec} has more entries than shape {tuple(shape)}")
    for dim, (size, axes) in enumerate(zip(shape, spec)):
        axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
        unknown = [a for a in axes if a not in mesh.shape]
        if unknown:
            raise ValueError(
                f"{name}: unknown mesh axis {unknown[0]!r} (mesh has {mesh.axis_names})"
            )
        parts = math.prod(mesh.shape[a] for a in axes)
        if size % parts:
            raise ValueError(
                f"{name}: dimension {dim} of size {size} is not divisible by mesh axes "
                f"{axes} of total size {parts}"
            )


def named_sharding(
    mesh: Mesh, spec: PartitionSpec, *, name: str = "array", shape: Sequence[int] | None = None
) -> NamedSharding:
    """``NamedSharding(mesh, spec)``, checked against ``shape`` when given."""
    if shape is not None:
        check_divisible(name, shape, spec, mesh)
    return NamedSharding(mesh, spec)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over ``data`` x ``fsdp``; the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Place every array of a batch pytree with its leading dimension split over the batch axes."""
    sharding = batch_sharding(mesh)

    def put(path, x):
        check_divisible(f"batch{jax.tree_util.keystr(path)}", x.shape, sharding.spec, mesh)
        return jax.device_put(x, sharding)

    return jax.tree_util.tree_map_with_path(put, batch)


def data_parallel_mesh(global_batch: int, devices: Sequence[Any] | None = None) -> tuple[Mesh, int]:
    """``(mesh, per-device batch)``: data parallelism over the most devices that split
    ``global_batch`` evenly, so a run's global batch (and its results) do not depend on how many
    devices the machine has."""
    devices = list(jax.devices() if devices is None else devices)
    if global_batch < 1:
        raise ValueError(f"global_batch: must be >= 1, got {global_batch}")
    n = max(k for k in range(1, len(devices) + 1) if global_batch % k == 0 and len(devices) >= k)
    return make_mesh(n, 1, 1, devices=devices[:n]), global_batch // n

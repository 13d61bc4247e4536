"""Logical axis names and the one rules table that maps them to mesh axes.

Every parameter carries ``logical_axes`` metadata (a name per dimension) and key activations are
constrained with :func:`constrain`. :data:`LOGICAL_RULES` maps each logical name to mesh axes of
the standard mesh ``("data", "fsdp", "tensor")``: batch over data×fsdp, the embedding dimension of
weights over fsdp (ZeRO-3 style), heads / MLP / vocab over tensor (Megatron style). The same table
drives parameter placement (:func:`state_shardings`) and activation constraints, so changing one
line changes the whole layout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

LOGICAL_RULES: Mapping[str, tuple[str, ...] | None] = {
    "batch": ("data", "fsdp"),  # activations: one shard of the batch per data×fsdp device
    "length": None,
    "act_embed": None,  # activation width stays replicated
    "act_heads": ("tensor",),
    "act_vocab": ("tensor",),
    "embed": ("fsdp",),  # parameter width dimension: fully sharded data parallel
    "vocab": ("tensor",),
    "heads": ("tensor",),  # flattened (heads × head_dim) projection outputs
    "kv_heads": ("tensor",),
    "mlp": ("tensor",),
    "norm": None,
    "positions": None,
    "lora_rank": None,
    "layers": None,  # the stacked-layer axis of scan_layers models
    "embed_proj": None,  # OPT's narrow word-embedding width (project_in / project_out)
}


def logical_to_spec(names, rules=LOGICAL_RULES) -> PartitionSpec:
    """The :class:`PartitionSpec` of a tuple of logical axis names under ``rules``."""
    parts = []
    for name in names:
        if name is not None and name not in rules:
            raise ValueError(f"logical axis {name!r} has no entry in the rules table")
        axes = None if name is None else rules[name]
        parts.append(None if not axes else (axes[0] if len(axes) == 1 else tuple(axes)))
    return PartitionSpec(*parts)


def _current_mesh():
    mesh = jax.sharding.get_abstract_mesh()
    return None if mesh is None or mesh.empty else mesh


def constrain(x: jax.Array, names) -> jax.Array:
    """Constrain an activation to its logical layout when a mesh is set (else a no-op)."""
    mesh = _current_mesh()
    if mesh is None:
        return x
    spec = _drop_missing(logical_to_spec(names), mesh.axis_names)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def _drop_missing(spec: PartitionSpec, axis_names) -> PartitionSpec:
    def keep(part):
        if part is None:
            return None
        part = tuple(a for a in ((part,) if isinstance(part, str) else part) if a in axis_names)
        return None if not part else (part[0] if len(part) == 1 else part)

    return PartitionSpec(*(keep(p) for p in spec))


def _check_divides(path: str, shape, spec: PartitionSpec, names, mesh) -> None:
    for dim, (size, part, name) in enumerate(zip(shape, spec, names)):
        axes = () if part is None else ((part,) if isinstance(part, str) else part)
        count = math.prod(mesh.shape[a] for a in axes)
        if size % count:
            raise ValueError(
                f"mesh: parameter {path} dimension {dim} (logical axis {name!r}, size {size}) "
                f"is not divisible by mesh axes {axes} of total size {count}"
            )


def variable_spec(path: str, var: nnx.Variable, mesh, rules=LOGICAL_RULES) -> PartitionSpec:
    """The checked :class:`PartitionSpec` of one parameter (``path`` names it in errors)."""
    names = var.get_metadata().get("logical_axes")
    shape = var.get_value().shape
    if names is None:
        return PartitionSpec()
    if len(names) != len(shape):
        raise ValueError(f"{path}: logical_axes {names} do not match shape {shape}")
    spec = _drop_missing(logical_to_spec(names, rules), mesh.axis_names)
    _check_divides(path, shape, spec, names, mesh)
    return spec


def state_shardings(state: nnx.State, mesh, rules=LOGICAL_RULES):
    """A tree of :class:`NamedSharding` matching ``state`` (raw arrays, no Variables)."""

    def one(path, var):
        return NamedSharding(mesh, variable_spec(path_name(path), var, mesh, rules))

    return map_variables(one, state)


def _is_var(x):
    return isinstance(x, nnx.Variable)


def path_name(path) -> str:
    """``("layers", 0, "attn", "q_proj", "kernel")`` → ``"layers.0.attn.q_proj.kernel"``."""
    return ".".join(str(p) for p in path)


def map_variables(fn, state):
    """Apply ``fn(path, variable)`` to every Variable of an ``nnx.State`` (path: tuple of keys)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, var: fn(tuple(_key(p) for p in path), var), state, is_leaf=_is_var
    )


def flat_variables(state):
    """``[(path, variable), ...]`` for every Variable of an ``nnx.State``."""
    leaves = jax.tree_util.tree_leaves_with_path(state, is_leaf=_is_var)
    return [(tuple(_key(p) for p in path), var) for path, var in leaves]


def _key(entry):
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return getattr(entry, attr)
    return str(entry)


def shard_model(model: nnx.Module, mesh, rules=LOGICAL_RULES) -> nnx.Module:
    """Place every parameter of ``model`` (in place) with its rules-table sharding on ``mesh``."""
    state = nnx.state(model)
    shardings = state_shardings(state, mesh, rules)
    placed = jax.tree.map(
        lambda var, s: var.replace(jax.device_put(var.get_value(), s)),
        state,
        shardings,
        is_leaf=_is_var,
    )
    nnx.update(model, placed)
    return model

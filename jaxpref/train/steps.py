"""A generic jitted train step for any Flax NNX module and optax optimizer.

The model is split once (``nnx.split``) into a static graph definition and pure state; the step
is a pure function of (:class:`TrainState`, batch) that merges the model inside ``jax.jit``,
differentiates the loss with respect to the trained variables only, applies the optax update and
returns the new state (including any variables the forward pass mutated, e.g. counters or batch
statistics — a plain ``jax.jit`` over an NNX object would silently drop those). Shardings are
explicit (read from each variable's sharding metadata with ``nnx.get_named_sharding``) and the
input state is donated.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from flax.nnx.spmd import get_var_pspec
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxpref.train.mesh import check_divisible

LossFn = Callable[[nnx.Module, Any, jax.Array], Any]
SpecFn = Callable[[str, nnx.Variable, Mesh], PartitionSpec]  # (path name, variable, mesh)


class TrainState(NamedTuple):
    params: Any  # nnx.State of the trained variables (the ``wrt`` filter)
    rest: Any  # nnx.State of every other model variable (frozen weights, counters, stats)
    opt_state: Any  # optax state over ``params``
    step: jax.Array  # () int32, optimizer updates applied so far
    rng: jax.Array  # (2,) uint32 raw key data; the step-t key is fold_in(key, t)


def init_train_state(
    model: nnx.Module,
    tx: optax.GradientTransformation,
    key: jax.Array,
    *,
    wrt: Any = nnx.Param,
) -> tuple[nnx.GraphDef, TrainState]:
    """Split ``model`` into its graph definition and a fresh :class:`TrainState` (step 0).

    The state shares ``model``'s arrays; a donating step consumes them, so read the trained
    model back with :func:`merge_model` rather than through the original object.
    """
    graphdef, params, rest = nnx.split(model, wrt, ...)
    rng = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    state = TrainState(params, rest, tx.init(params), jnp.zeros((), jnp.int32), rng)
    return graphdef, state


def create_train_state(
    make_model: Callable[[], nnx.Module],
    tx: optax.GradientTransformation,
    key: jax.Array,
    *,
    mesh: Mesh,
    wrt: Any = nnx.Param,
    spec_fn: SpecFn | None = None,
) -> tuple[nnx.GraphDef, TrainState, Any]:
    """Build model and optimizer state inside ``jit`` so every array is born with its sharding.

    ``make_model()`` must be deterministic (it builds its own ``nnx.Rngs``). Returns
    ``(graphdef, state, shardings)``; ``shardings`` mirrors ``state`` (see :func:`state_shardings`,
    which also explains ``spec_fn``).
    """
    graphdef, _, shardings = abstract_train_state(
        make_model, tx, key, mesh=mesh, wrt=wrt, spec_fn=spec_fn
    )
    init = functools.partial(_init_state, make_model, tx, key, wrt)
    with jax.set_mesh(mesh):
        state = jax.jit(init, out_shardings=shardings)()
    return graphdef, state, shardings


def abstract_train_state(
    make_model: Callable[[], nnx.Module],
    tx: optax.GradientTransformation,
    key: jax.Array,
    *,
    mesh: Mesh,
    wrt: Any = nnx.Param,
    spec_fn: SpecFn | None = None,
) -> tuple[nnx.GraphDef, TrainState, Any]:
    """Shapes, dtypes and target shardings of the state, without allocating it.

    Returns ``(graphdef, abstract, shardings)``: ``abstract`` holds ``ShapeDtypeStruct`` leaves
    with shardings on ``mesh`` — the restore target for a checkpoint written on any mesh.
    """
    init = functools.partial(_init_state, make_model, tx, key, wrt)
    with jax.set_mesh(mesh):
        graphdef = nnx.split(nnx.eval_shape(make_model), wrt, ...)[0]
        shapes = jax.eval_shape(init)
        shardings = state_shardings(shapes, mesh, spec_fn)
    return graphdef, abstract_state(shapes, shardings), shardings


def _init_state(make_model, tx, key, wrt) -> TrainState:
    return init_train_state(make_model(), tx, key, wrt=wrt)[1]


def state_shardings(state: Any, mesh: Mesh, spec_fn: SpecFn | None = None) -> Any:
    """A tree mirroring ``state`` with a ``NamedSharding`` for every array.

    Each ``nnx.Variable`` (parameters, and the optimizer moments that copy their metadata) gets
    ``spec_fn(path, variable, mesh)``; the default reads Flax's own sharding metadata
    (``nnx.with_partitioning`` / ``sharding=``) and checks that the mesh divides the shape.
    Plain arrays (step, RNG, optimizer counters) are replicated. A model with its own rules table
    passes its spec function here (e.g. one wrapping ``jaxpref.llm.sharding.variable_spec``).
    """
    spec_fn = metadata_spec if spec_fn is None else spec_fn

    def one(path, x):
        if isinstance(x, nnx.Variable):
            if not hasattr(x.get_value(), "shape"):  # e.g. optax's MaskedNode: no array here
                return x
            return x.replace(NamedSharding(mesh, spec_fn(jax.tree_util.keystr(path), x, mesh)))
        return NamedSharding(mesh, PartitionSpec())

    return jax.tree_util.tree_map_with_path(one, state, is_leaf=_is_variable)


def metadata_spec(name: str, var: nnx.Variable, mesh: Mesh) -> PartitionSpec:
    """The variable's Flax sharding metadata as a spec, checked against the mesh."""
    spec = get_var_pspec(var)
    check_divisible(name, var.get_value().shape, spec, mesh)
    return spec


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


def abstract_state(state: Any, shardings: Any) -> Any:
    """``ShapeDtypeStruct`` tree with target shardings (a restore target for another mesh)."""
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings
    )


def merge_model(graphdef: nnx.GraphDef, state: TrainState) -> nnx.Module:
    """The NNX module holding ``state``'s parameters."""
    return nnx.merge(graphdef, state.params, state.rest)


def step_key(state: TrainState) -> jax.Array:
    """The PRNG key of the current step: ``fold_in(key, step)`` (deterministic on resume)."""
    return jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)


def make_train_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    loss_fn: LossFn,
    *,
    state_shardings: Any = None,
    batch_shardings: Any = None,
    has_aux: bool = False,
    donate: bool = True,
) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, jax.Array]]]:
    """Jit ``(state, batch) -> (new_state, metrics)`` for the loss ``loss_fn(model, batch, key)``.

    Args:
      graphdef: from :func:`init_train_state` / :func:`create_train_state`.
      tx: the optax transformation the state was built with.
      loss_fn: scalar loss (or ``(loss, metrics dict)`` with ``has_aux=True``) of the merged
        model, the batch and this step's PRNG key.
      state_shardings, batch_shardings: explicit in/out shardings (None: let JAX choose).
      donate: donate the input state's buffers to the output.

    Returns:
      The jitted step; metrics hold ``loss``, ``grad_norm`` and the loss's own metrics.
    """

    def step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, jax.Array]]:
        grad_fn = jax.value_and_grad(_pure_loss(graphdef, loss_fn, has_aux), has_aux=True)
        (loss, (metrics, rest)), grads = grad_fn(state.params, state.rest, batch, step_key(state))
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = TrainState(params, rest, opt_state, state.step + 1, state.rng)
        return new, {"loss": loss, "grad_norm": optax.tree.norm(grads), **metrics}

    shardings = {}
    if state_shardings is not None or batch_shardings is not None:
        shardings = {
            "in_shardings": (state_shardings, batch_shardings),
            "out_shardings": (state_shardings, None),
        }
    return jax.jit(step, donate_argnums=(0,) if donate else (), **shardings)


def _pure_loss(graphdef: nnx.GraphDef, loss_fn: LossFn, has_aux: bool) -> Callable:
    """Loss as a pure function of (params, rest, batch, key); returns mutated ``rest`` as aux."""

    def pure(params, rest, batch, key):
        model = nnx.merge(graphdef, params, rest, copy=True)  # fresh variables at this trace
        out = loss_fn(model, batch, key)
        loss, metrics = out if has_aux else (out, {})
        new_rest = nnx.split(model, _rest_filter(params), ...)[2]
        return loss, (metrics, new_rest)

    return pure


def _rest_filter(params: Any) -> Callable:
    """Filter matching exactly the paths held in ``params`` (so ``rest`` is everything else)."""
    paths = {path for path, _ in nnx.to_flat_state(params)}
    return lambda path, _: tuple(path) in paths

r"""Per-example gradients of the implicit reward with respect to the LoRA parameters, in blocks,
optionally projected to k dimensions: ActiveDPO's features (Lin et al., arXiv 2505.19241, §4).

For a (prompt, response) row, r_θ(x, y) = β log π_θ(y|x)/π_ref(y|x), so

    ∇_θ r_θ(x, y) = β ∇_θ log π_θ(y|x)          (π_ref does not depend on θ)

and the reference is never evaluated. ``vmap`` of ``grad`` runs over ``block_size`` rows at a
time (``lax.map`` over blocks), so the activations and gradients held at once grow with the
block, not with the pool; each block is projected (``design.random_projection``, a fixed key)
before the next starts, so only (pool, k) projected rows are kept. Padding changes nothing: the
log-prob of a row (``sequence_logps``) is the same under any padding.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpref._checks import check_same_shape, shape_of
from jaxpref.design.sketch import CHUNK_SIZE, KINDS, projection_matrix, random_projection
from jaxpref.llm.logps import check_loss_mask, sequence_logps
from jaxpref.llm.lora import LoRAParam


def per_example_grads(fn, params, rows: dict, *, block_size: int = 8, reduce=None):
    """``vmap(grad(fn))`` over the leading axis of ``rows``, ``block_size`` rows at a time.

    Args:
      fn: ``fn(params, row) -> scalar`` for one row (a dict of arrays without the batch axis).
      params: the pytree differentiated.
      rows: dict of arrays with a leading axis N.
      block_size: rows per ``vmap``; the last block is padded with copies of row 0 (dropped).
      reduce: optional ``reduce(grads_block) -> array (block, …)`` applied to each block's
        gradients before the next block (e.g. a projection), so the full gradients of the pool
        are never held.

    Returns: the per-row gradients (a pytree with leading axis N), or ``reduce``'s rows.
    """
    N = jax.tree.leaves(rows)[0].shape[0]
    nb = -(-N // block_size)
    pad = nb * block_size - N

    def blocked(x):
        x = jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)]) if pad else x
        return x.reshape(nb, block_size, *x.shape[1:])

    grad_one = jax.grad(fn)

    def block(rows_b):
        g = jax.vmap(grad_one, in_axes=(None, 0))(params, rows_b)
        return g if reduce is None else reduce(g)

    out = jax.lax.map(block, jax.tree.map(blocked, rows))
    return jax.tree.map(lambda x: x.reshape(nb * block_size, *x.shape[2:])[:N], out)


def _split_lora(model):
    graphdef, lora, rest = nnx.split(model, LoRAParam, ...)
    if not jax.tree.leaves(lora):
        raise ValueError(
            "model: has no LoRA adapters; gradient features are taken with respect to the "
            "adapters (llm.apply_lora, or --use_peft)"
        )
    return graphdef, lora, rest


def lora_parameter_count(model) -> int:
    """Number of LoRA parameters P (the length of one un-projected gradient)."""
    _, lora, _ = _split_lora(model)
    return sum(int(x.size) for x in jax.tree.leaves(lora))


@partial(jax.jit, static_argnames=("graphdef", "block_size", "dim", "kind", "chunk_size"))
def _features(graphdef, lora, rest, rows, beta, key, block_size, dim, kind, chunk_size):
    def reward(lora, row):  # r_θ's θ-dependent part: β log π_θ(y|x)
        model = nnx.merge(graphdef, lora, rest)
        one = lambda k: row[k][None]  # noqa: E731
        summed, _ = sequence_logps(model, one("ids"), one("mask"), one("loss"))
        return beta * summed[0]

    def project(g):
        return random_projection(g, key, dim, kind=kind, chunk_size=chunk_size)

    reduce = None if dim is None else project
    return per_example_grads(reward, lora, rows, block_size=block_size, reduce=reduce)


def lora_reward_grads(
    model,
    input_ids,
    attention_mask,
    loss_mask,
    *,
    beta=1.0,
    block_size: int = 8,
    dim: int | None = None,
    kind: str = "rademacher",
    key=None,
    chunk_size: int = CHUNK_SIZE,
):
    r"""Per-row gradients ∇_LoRA r_θ(x, y) = β ∇_LoRA log π_θ(y|x), projected to ``dim``.

    Args:
      model: a :class:`~jaxpref.llm.Decoder` with LoRA adapters (the only parameters
        differentiated; the base weights are constants).
      input_ids, attention_mask, loss_mask: (N, L) rows as for ``sequence_logps`` (``loss_mask``
        selects the response tokens of y).
      beta: β of the implicit reward.
      block_size: rows per ``vmap`` (memory grows with it, not with N).
      dim: k, the projection dimension (ActiveDPO uses 8192); None returns the raw gradients as
        an ``nnx.State`` of the adapters with a leading axis N.
      kind, key, chunk_size: the projection (``design.random_projection``); ``key`` defaults to
        ``jax.random.key(0)`` and must stay fixed across iterations.

    Returns: (N, dim) projected gradients, or the gradient state when ``dim`` is None.
    """
    graphdef, lora, rest = _split_lora(model)  # before any work: the model has adapters
    check_same_shape(input_ids=input_ids, attention_mask=attention_mask, loss_mask=loss_mask)
    if len(shape_of("input_ids", input_ids)) != 2:
        raise ValueError(
            f"input_ids: expected shape (N, L), got {shape_of('input_ids', input_ids)}"
        )
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size: must be an integer ≥ 1, got {block_size!r}")
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise ValueError(f"dim: must be an integer ≥ 1 (or None), got {dim!r}")
    if kind not in KINDS:
        raise ValueError(f"kind: must be one of {', '.join(KINDS)}; got {kind!r}")
    check_loss_mask(attention_mask, loss_mask)
    rows = {"ids": jnp.asarray(input_ids), "mask": jnp.asarray(attention_mask)}
    rows["loss"] = jnp.asarray(loss_mask)
    key = jax.random.key(0) if key is None else key
    dtype = jax.tree.leaves(lora)[0].dtype
    return _features(
        graphdef,
        lora,
        rest,
        rows,
        jnp.asarray(beta, dtype),
        key,
        block_size,
        dim,
        kind,
        chunk_size,
    )


def lora_projection_error(
    model,
    input_ids,
    attention_mask,
    loss_mask,
    projected,
    *,
    beta=1.0,
    block_size: int = 8,
    key=None,
    kind: str = "rademacher",
    chunk_size: int = CHUNK_SIZE,
) -> dict:
    r"""How far ``projected`` is from G Rᵀ: G (N, P) the raw per-row LoRA gradients of the same
    rows (:func:`lora_reward_grads` without ``dim``), R the k × P projection of ``key``, ``kind``
    and ``chunk_size`` materialised (``design.projection_matrix``).

    A check of the blockwise projection on a real model, for small P·k only (R is held whole):
    ``projected = lora_reward_grads(..., dim=k, key=key)`` should give an error at the round-off
    of the gradients' dtype. G Rᵀ is formed in NumPy in that dtype.

    Args:
      model, input_ids, attention_mask, loss_mask, beta, block_size: as for
        :func:`lora_reward_grads`.
      projected: (N, k) projected features of those rows.
      key, kind, chunk_size: the projection's (``key`` defaults to ``jax.random.key(0)``).

    Returns: ``{"lora_parameters": P, "projection_max_abs_error": max |projected − G Rᵀ|,
    "projection_scale": max |G Rᵀ|}``.
    """
    n = shape_of("input_ids", input_ids)[0]
    shape = shape_of("projected", projected)
    if len(shape) != 2 or shape[0] != n:
        raise ValueError(f"projected: expected shape ({n}, k) for {n} rows, got {shape}")
    key = jax.random.key(0) if key is None else key
    raw = lora_reward_grads(
        model, input_ids, attention_mask, loss_mask, beta=beta, block_size=block_size
    )
    flat = np.concatenate([np.asarray(x).reshape(n, -1) for x in jax.tree.leaves(raw)], 1)
    R = np.asarray(projection_matrix(raw, key, shape[1], kind=kind, chunk_size=chunk_size))
    dense = flat @ R.T
    return {
        "lora_parameters": int(flat.shape[1]),
        "projection_max_abs_error": float(np.max(np.abs(np.asarray(projected) - dense))),
        "projection_scale": float(np.max(np.abs(dense))),
    }

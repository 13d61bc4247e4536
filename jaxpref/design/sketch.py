"""Random projections of long vectors (per-example gradients) to k dimensions, never holding
the k × P matrix.

ĝ = R g with R ∈ ℝ^{k×P} whose entries are i.i.d. ±1/√k (Rademacher) or N(0, 1/k) (Gaussian),
so E[ĝ_xᵀ ĝ_y] = xᵀy (Johnson–Lindenstrauss). R is generated in column chunks of
``chunk_size`` from a fixed key: chunk c of leaf ℓ is drawn from ``fold_in(fold_in(key, ℓ), c)``,
so the same key gives the same R in every call (every ActiveDPO iteration), whatever the number
of rows or the block they come in, and only a k × chunk_size slab exists at a time.

For one row r of R and vectors x, y: Var[(rᵀx)(rᵀy)] = ‖x‖²‖y‖² + (xᵀy)² for Gaussian r and
‖x‖²‖y‖² + (xᵀy)² − 2 Σ_j x_j² y_j² for Rademacher r (the fourth moment of ±1 is 1, not 3); the
k-row average divides both by k.

References: Johnson & Lindenstrauss (1984); Achlioptas, "Database-friendly random projections"
(2003) for the ±1 construction; Xia et al., "LESS: Selecting Influential Data for Targeted
Instruction Tuning", arXiv 2402.04333 (Rademacher projection of LoRA gradients, which ActiveDPO,
Lin et al. arXiv 2505.19241 §4, cites for its 8192-dimensional features).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from jaxpref import _checks

KINDS = ("rademacher", "gaussian")
CHUNK_SIZE = 4096


def _slab(key, kind: str, k: int, width: int, dtype):
    """R's columns of one chunk, (k, width), scaled by 1/√k."""
    if kind == "rademacher":  # 32 signs per random word: ~32× fewer PRNG calls than per entry
        words = jax.random.bits(key, (k, -(-width // 32)), jnp.uint32)
        bits = (words[..., None] >> jnp.arange(32, dtype=jnp.uint32)[None, None]) & 1
        r = (2 * bits.reshape(k, -1)[:, :width].astype(dtype)) - 1
    else:
        r = jax.random.normal(key, (k, width), dtype)
    return r / jnp.sqrt(jnp.asarray(k, dtype))


def _check(k, kind, chunk_size):
    _checks.check_int_in("dim", k, 1, 1 << 30)
    if kind not in KINDS:
        raise ValueError(f"kind: must be one of {', '.join(KINDS)}; got {kind!r}")
    _checks.check_int_in("chunk_size", chunk_size, 1, 1 << 30)


@partial(jax.jit, static_argnames=("k", "kind", "chunk_size"))
def _project_leaf(x, key, k: int, kind: str, chunk_size: int):
    M, P = x.shape
    n = -(-P // chunk_size)
    x = jnp.pad(x, ((0, 0), (0, n * chunk_size - P))).reshape(M, n, chunk_size)

    def body(acc, c):
        slab = _slab(jax.random.fold_in(key, c), kind, k, chunk_size, x.dtype)
        return acc + x[:, c] @ slab.T, None

    out, _ = jax.lax.scan(body, jnp.zeros((M, k), x.dtype), jnp.arange(n))
    return out


def _flat_leaves(tree):
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError("tree: has no arrays to project")
    M = leaves[0].shape[0]
    return [leaf.reshape(M, -1) for leaf in leaves]


def random_projection(
    tree,
    key: PRNGKeyArray,
    dim: int,
    *,
    kind: str = "rademacher",
    chunk_size: int = CHUNK_SIZE,
) -> Float[Array, "M k"]:
    r"""ĝ = R vec(g) for each of M rows of a pytree of arrays with a leading axis M.

    .. math:: \hat g = \sum_\ell \sum_c R_{\ell, c}\, g_{\ell, c}, \quad
              R_{\ell,c} \in \{\pm 1/\sqrt{k}\}^{k \times C} \text{ (or } N(0, 1/k))

    Args:
      tree: arrays of shape (M, ...) (e.g. per-example LoRA gradients); each leaf is flattened.
      key: the fixed projection key (leaf ℓ, chunk c use ``fold_in(fold_in(key, ℓ), c)``).
      dim: k ≥ 1.
      kind: ``"rademacher"`` (LESS's choice, the default) or ``"gaussian"``.
      chunk_size: columns of R generated at a time (memory k × chunk_size); part of R's
        definition: the same key with another chunk size gives another R.

    Returns: (M, k) projected rows.

    Example:
      >>> random_projection(jnp.ones((2, 5)), jax.random.key(0), 3).shape
      (2, 3)
    """
    _check(dim, kind, chunk_size)
    out = 0
    for i, leaf in enumerate(_flat_leaves(tree)):
        out = out + _project_leaf(leaf, jax.random.fold_in(key, i), dim, kind, chunk_size)
    return out


def projection_matrix(tree, key: PRNGKeyArray, dim: int, **options) -> Float[Array, "k P"]:
    """The k × P matrix that :func:`random_projection` applies to rows shaped like ``tree``'s
    (same ``kind`` and ``chunk_size`` options), materialised: for tests and small P only."""
    kind = options.pop("kind", "rademacher")
    chunk_size = options.pop("chunk_size", CHUNK_SIZE)
    if options:
        raise TypeError(f"projection_matrix: unknown options {sorted(options)}")
    _check(dim, kind, chunk_size)
    blocks = []
    for i, leaf in enumerate(_flat_leaves(tree)):
        P = leaf.shape[1]
        n = -(-P // chunk_size)
        leaf_key = jax.random.fold_in(key, i)
        slabs = [
            _slab(jax.random.fold_in(leaf_key, c), kind, dim, chunk_size, leaf.dtype)
            for c in range(n)
        ]
        blocks.append(jnp.concatenate(slabs, axis=1)[:, :P])
    return jnp.concatenate(blocks, axis=1)


def projected_inner_product_variance(x, y, dim: int, kind: str = "rademacher"):
    """Var[ĝ_xᵀĝ_y] over the draw of R (see the module docstring): the Gaussian value
    (‖x‖²‖y‖² + (xᵀy)²)/k, less 2 Σ_j x_j²y_j²/k for Rademacher entries."""
    x, y = jnp.ravel(x), jnp.ravel(y)
    gauss = (jnp.dot(x, x) * jnp.dot(y, y) + jnp.dot(x, y) ** 2) / dim
    if kind == "gaussian":
        return gauss
    return gauss - 2.0 * jnp.sum(x * x * y * y) / dim

"""The one place for numerical linear algebra in jaxpref.

PSD solves and log-determinants through Cholesky, rank-one (Sherman–Morrison) inverse and
log-det updates (on a dense inverse, or on the low-rank form I/γ − ŨŨᵀ when there are fewer
additions than dimensions), Mahalanobis norms, symmetrisation. Nothing else in the package calls
``jnp.linalg.inv``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxpref import _checks


def symmetrize(A: Float[ArrayLike, "d d"]) -> Float[Array, "d d"]:
    """(A + Aᵀ)/2: removes the asymmetry that accumulates in repeated rank-one updates."""
    return 0.5 * (A + A.T)


def check_psd(name: str, A, *, strict: bool = True) -> None:
    """Refuse, naming ``name``, unless A is square, finite, symmetric and PD (PSD if not strict).

    The shape is checked at once. Values follow the value-check convention of
    :mod:`jaxpref._checks`: a host matrix (NumPy, list) is checked at once in float64 NumPy by
    its smallest eigenvalue; a JAX array in the graph (under the caller's ``jit``/``vmap``), or
    asynchronously when eager, by whether its Cholesky factorisation succeeds in its own dtype
    with every pivot above rounding (what every solve here needs; under ``jit`` XLA shares the
    factor with the caller's solve).
    The non-strict JAX check computes the smallest eigenvalue in the graph (an eigensolve).
    """
    shape = _checks.shape_of(name, A)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"{name}: expected a square (d, d) matrix, got shape {shape}")
    _checks.check_finite(name, A)
    if _checks.array_namespace(A) is jnp:
        a = jnp.asarray(A)
        scale = jnp.maximum(1.0, jnp.max(jnp.abs(a)))
        asymmetric = jnp.any(jnp.abs(a - a.T) > 1e-6 * scale)
        _checks.check_condition(name, asymmetric, "matrix is not symmetric")
        if strict:  # pivots d_i = L_ii² ≥ λ_min: all above rounding iff PD at this precision
            pivots = jnp.diagonal(cholesky(a)) ** 2
            tiny = shape[0] * jnp.finfo(pivots.dtype).eps * scale
            failed = ~jnp.all(pivots > tiny)  # NaN (a failed factorisation) fails too
            problem = "matrix is singular or not positive definite (a Cholesky pivot ≤ 0)"
        else:
            failed = jnp.linalg.eigvalsh(symmetrize(a))[0] < -1e-6 * scale
            problem = "matrix is not positive semi-definite (a negative eigenvalue)"
        _checks.check_condition(name, failed, problem)
        return
    a = np.asarray(A, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(a))))
    if not np.allclose(a, a.T, atol=1e-6 * scale, rtol=0):
        raise ValueError(f"{name}: matrix is not symmetric")
    eig_min = float(np.linalg.eigvalsh(a).min())
    tol = 1e-12 * scale * shape[0]
    if strict and eig_min <= tol:
        raise ValueError(
            f"{name}: matrix is singular or not positive definite "
            f"(smallest eigenvalue {eig_min:.3g})"
        )
    if not strict and eig_min < -1e-6 * scale:
        raise ValueError(
            f"{name}: matrix is not positive semi-definite (smallest eigenvalue {eig_min:.3g})"
        )


def cholesky(A: Float[ArrayLike, "d d"]) -> Float[Array, "d d"]:
    """Lower Cholesky factor of a symmetric PD matrix (NaN if A is not PD; check first).

    float16/bfloat16 are refused with a ``ValueError`` (a static check, so also under ``jit``);
    every PSD solve, inverse and log-det here goes through this function."""
    _checks.check_not_half("A", A)
    return jnp.linalg.cholesky(symmetrize(A))


def psd_solve(A: Float[ArrayLike, "d d"], b: Float[ArrayLike, "d ..."]) -> Float[Array, "d ..."]:
    """A⁻¹b for symmetric PD A, by Cholesky."""
    return jsl.cho_solve((cholesky(A), True), b)


def psd_inverse(A: Float[ArrayLike, "d d"]) -> Float[Array, "d d"]:
    """A⁻¹ for symmetric PD A, by Cholesky solves against the identity (kept symmetric)."""
    return symmetrize(psd_solve(A, jnp.eye(A.shape[0], dtype=A.dtype)))


def psd_logdet(A: Float[ArrayLike, "d d"]) -> Float[Array, ""]:
    """log det A for symmetric PD A: 2 Σ log diag(chol A)."""
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(cholesky(A))))


def mahalanobis_sq(A: Float[ArrayLike, "d d"], X: Float[ArrayLike, "... d"]) -> Float[Array, "..."]:
    """‖x‖²_{A⁻¹} = xᵀA⁻¹x for each row x of X, via one triangular solve (A symmetric PD)."""
    L = cholesky(A)
    flat = X.reshape(-1, X.shape[-1])
    Z = jsl.solve_triangular(L, flat.T, lower=True)  # (d, M): L⁻¹xᵀ
    return jnp.sum(Z * Z, axis=0).reshape(X.shape[:-1])


def quad_form(M: Float[ArrayLike, "d d"], X: Float[ArrayLike, "... d"]) -> Float[Array, "..."]:
    """xᵀMx for each row x of X (M given explicitly, e.g. a maintained inverse)."""
    return jnp.einsum("...i,ij,...j->...", X, M, X)


def sherman_morrison(
    A_inv: Float[ArrayLike, "d d"], v: Float[ArrayLike, " d"]
) -> tuple[Float[Array, "d d"], Float[Array, " d"], Float[Array, ""]]:
    """(A + vvᵀ)⁻¹ from A⁻¹ in O(d²).

    (A + vvᵀ)⁻¹ = A⁻¹ − (A⁻¹v)(A⁻¹v)ᵀ / (1 + vᵀA⁻¹v) for symmetric A.

    Returns:
      (new inverse, u = A⁻¹v, q = vᵀA⁻¹v); by the matrix determinant lemma
      log det(A + vvᵀ) = log det A + log1p(q).
    """
    A_inv, v = jnp.asarray(A_inv), jnp.asarray(v)  # NumPy inputs gave a NumPy u
    u = A_inv @ v
    q = jnp.dot(v, u)
    return symmetrize(A_inv - jnp.outer(u, u) / (1.0 + q)), u, q


class LowRankInverse(NamedTuple):
    """(γI + Σ_{j<count} v_jv_jᵀ)⁻¹ = I/γ − Σ_{j<count} ũ_jũ_jᵀ, ũ_j = A_{j−1}⁻¹v_j / √(1 + q_j)
    (Sherman–Morrison, accumulated): n × d memory and O(d·t) per product after t of at most
    n additions, instead of the d × d inverse. The form to keep when n < d."""

    rows: Array  # (n, d)  ũ_j as rows (zero beyond count)
    count: Array  # ()     additions so far
    gamma: Array  # ()     the prior precision γ of A_0 = γI


def low_rank_inverse(d: int, n: int, gamma, dtype) -> LowRankInverse:
    """(γI)⁻¹ with room for ``n`` rank-one additions."""
    zeros = jnp.zeros((n, d), dtype)
    return LowRankInverse(zeros, jnp.zeros((), jnp.int32), jnp.asarray(gamma, dtype))


def on_used_rows(rows: Float[ArrayLike, "n ..."], count, fn):
    """``fn(rows[:k])`` for the smallest k in {n/16, n/8, n/4, n/2, n} (at least 1) with
    k ≥ ``count`` (traced): the rows past ``count`` must be zero or not matter to ``fn``, so a
    product over a partly filled buffer costs at most twice the rows in use."""
    n = rows.shape[0]
    sizes = sorted({max(1, n >> s) for s in range(5)})
    which = sum((count > k).astype(jnp.int32) for k in sizes[:-1])
    return jax.lax.switch(which, [lambda _, k=k: fn(rows[:k]) for k in sizes], None)


def _on_used_rows(inv: LowRankInverse, fn):
    return on_used_rows(inv.rows, inv.count, fn)


def inverse_apply(A_inv, v: Float[ArrayLike, " d"]) -> Float[Array, " d"]:
    """A⁻¹v for a dense inverse or a :class:`LowRankInverse`."""
    if isinstance(A_inv, LowRankInverse):
        return v / A_inv.gamma - _on_used_rows(A_inv, lambda U: U.T @ (U @ v))
    return A_inv @ v


def inverse_quad_form(A_inv, X: Float[ArrayLike, "N d"]) -> Float[Array, " N"]:
    """xᵀA⁻¹x for each row of X, for a dense inverse or a :class:`LowRankInverse` (one
    N × d × t product)."""
    if isinstance(A_inv, LowRankInverse):

        def norms(U):
            W = X @ U.T
            return jnp.sum(W * W, axis=1)

        return jnp.sum(X * X, axis=1) / A_inv.gamma - _on_used_rows(A_inv, norms)
    return quad_form(A_inv, X)


def inverse_rank_one(A_inv, v: Float[ArrayLike, " d"]):
    """``sherman_morrison`` for a dense inverse or a :class:`LowRankInverse` (which must have
    room: count < n): (new inverse, u = A⁻¹v, q = vᵀA⁻¹v)."""
    if not isinstance(A_inv, LowRankInverse):
        return sherman_morrison(A_inv, v)
    u = inverse_apply(A_inv, v)
    q = jnp.dot(v, u)
    rows = A_inv.rows.at[A_inv.count].set(u / jnp.sqrt(1.0 + q))
    return A_inv._replace(rows=rows, count=A_inv.count + 1), u, q


def logdet_rank_one(logdet: Float[ArrayLike, ""], q: Float[ArrayLike, ""]) -> Float[Array, ""]:
    """Matrix determinant lemma: log det(A + vvᵀ) = log det A + log(1 + vᵀA⁻¹v)."""
    return logdet + jnp.log1p(q)


def ridge_gram(X: Float[ArrayLike, "N d"], lam, weights=None) -> Float[Array, "d d"]:
    """λI + Σ_i w_i x_i x_iᵀ (w = 1 when not given)."""
    Xw = X if weights is None else X * weights[:, None]
    return lam * jnp.eye(X.shape[1], dtype=X.dtype) + Xw.T @ X


__all__ = [
    "LowRankInverse",
    "check_psd",
    "cholesky",
    "inverse_apply",
    "inverse_quad_form",
    "inverse_rank_one",
    "logdet_rank_one",
    "low_rank_inverse",
    "mahalanobis_sq",
    "on_used_rows",
    "psd_inverse",
    "psd_logdet",
    "psd_solve",
    "quad_form",
    "ridge_gram",
    "sherman_morrison",
    "symmetrize",
]

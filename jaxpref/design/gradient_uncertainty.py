r"""ActiveDPO's selection: greedy batch selection by the gradient-feature uncertainty
‖φ‖_{V⁻¹} with V updated within the batch, scored in low rank (never a k × k matrix).

Features of a candidate triplet (x, y₁, y₂) are φ = ĝ(x, y₁) − ĝ(x, y₂), ĝ the (projected,
optionally normalised) gradient of the implicit reward r_θ = β log π_θ/π_ref at θ_{t−1}
(``jaxpref.llm.grad_features``). With S the triplets selected so far (earlier iterations, then
earlier picks of this batch) and Φ_S their features as rows,

    V_S = λ I_k + Φ_Sᵀ Φ_S,                                    (Eq. 3's V_{t−1}, regularised)
    pick = argmax_{i ∉ S} φ_iᵀ V_S⁻¹ φ_i,                       (Eq. 3)
    V ← V + φ_pick φ_pickᵀ,                                     (Eq. 4)

and λ > 0 is required: rank(Φ_Sᵀ Φ_S) ≤ |S| ≪ k, so the unregularised V of the paper's main text
is singular (its App. A adds (λ/κ_μ) I). By Woodbury, with G = λI + Φ_S Φ_Sᵀ = L Lᵀ (|S| × |S|),

    φ_iᵀ V_S⁻¹ φ_i = (‖φ_i‖² − ‖e_i‖²) / λ,   e_i = L⁻¹ Φ_S φ_i,

and adding φ_j appends to every e_i the entry (φ_iᵀφ_j − e_iᵀe_j)/d_j with d_j = √(λ(1 + s_j))
(one new row of L), so s_i ← s_i − (φ_iᵀφ_j − e_iᵀe_j)²/(λ d_j²) = s_i − (φ_iᵀV⁻¹φ_j)²/(1 + s_j),
the Sherman–Morrison update of ``design.greedy``. A pick costs O(N k + N |S|); memory is the
(N, |S|) array of e_i. log det V = (k − |S_0|) log λ + log det G₀ + Σ_picks log(1 + s_j).

Scores are invariant under (φ, λ) → (cφ, c²λ): V scales by c², φφᵀ by c².

References: Lin, Verma, Dai, Rus, Ng & Low, "ActiveDPO: Active Direct Preference Optimization
for Sample-Efficient Alignment", arXiv 2505.19241, Eq. (3)–(4), Algorithm 1 and App. A;
Woodbury (1950); Sherman & Morrison (1950).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array, ArrayLike, Float, Int

from jaxpref import _checks, linalg

NORMALIZATIONS = ("response", "difference", "none")


class GradientDesignState(NamedTuple):
    E: Array  # (N, R)  e_i = L_S⁻¹ Φ_S φ_i; columns ≥ count are 0 (R = capacity)
    scores: Array  # (N,)    s_i = φ_iᵀ V_S⁻¹ φ_i, kept current
    selected: Array  # (N,)    bool, picked in this batch
    count: Array  # ()      |S| (rows of Φ_S: past + picked)
    logdet: Array  # ()      log det V_S
    lam: Array  # ()      λ > 0


class GradientSelection(NamedTuple):
    indices: Array  # (B,)  picks in selection order
    scores: Array  # (B,)  φᵀV⁻¹φ of each pick when it was picked (Eq. 3's maximum, squared)
    logdets: Array  # (B,)  log det V after each pick


def _unit_rows(x):
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return jnp.where(norm > 0, x / jnp.where(norm > 0, norm, 1.0), 0.0)


def pair_features(
    response_features: Float[ArrayLike, "M k"],
    first: Int[ArrayLike, " N"],
    second: Int[ArrayLike, " N"],
    *,
    normalize: str = "response",
) -> Float[Array, "N k"]:
    r"""φ_i = ĝ(x, y_{first_i}) − ĝ(x, y_{second_i}) from per-response features.

    ``normalize``: ``"response"`` divides each ĝ by its norm before the difference (LESS and
    ActiveDPO's practice, after projection), ``"difference"`` divides φ by its norm, ``"none"``
    keeps the raw difference (the 1/√m of Prop. 1 is dropped, as in the paper's practice). A
    zero vector stays zero.

    References: Lin et al., arXiv 2505.19241, §4 (φ_{t−1} and the practical normalisation).
    """
    _checks.check_ndim("response_features", response_features, 2)
    if normalize not in NORMALIZATIONS:
        raise ValueError(
            f"normalize: must be one of {', '.join(NORMALIZATIONS)}; got {normalize!r}"
        )
    g = jnp.asarray(response_features)
    if normalize == "response":
        g = _unit_rows(g)
    phi = g[jnp.asarray(first)] - g[jnp.asarray(second)]
    return _unit_rows(phi) if normalize == "difference" else phi


@partial(jax.jit, static_argnames=("capacity",))
def gradient_design_init(
    candidates: Float[ArrayLike, "N k"],
    past: Float[ArrayLike, "P k"] | None,
    *,
    lam,
    capacity: int,
) -> GradientDesignState:
    """V_0 = λI + Φ_pastᵀΦ_past over ``candidates``, room for ``capacity`` rows of Φ_S in all.

    Costs O(P² k + P N k) once (Φ_past Φ_pastᵀ and Φ_past Φ_candᵀ), never a k × k matrix.
    """
    phi = jnp.asarray(candidates)
    N, k = phi.shape
    lam = jnp.asarray(lam, phi.dtype)
    E = jnp.zeros((N, capacity), phi.dtype)
    sq = jnp.sum(phi * phi, axis=1)
    if past is None or past.shape[0] == 0:
        return GradientDesignState(
            E, sq / lam, jnp.zeros(N, bool), jnp.zeros((), jnp.int32), k * jnp.log(lam), lam
        )
    past = jnp.asarray(past, phi.dtype)
    P = past.shape[0]
    L = linalg.cholesky(past @ past.T + lam * jnp.eye(P, dtype=phi.dtype))
    Z = jsl.solve_triangular(L, past @ phi.T, lower=True)  # (P, N): e_i = L⁻¹ Φ_past φ_i
    scores = jnp.maximum(sq - jnp.sum(Z * Z, axis=0), 0.0) / lam  # Woodbury
    logdet = (k - P) * jnp.log(lam) + 2.0 * jnp.sum(jnp.log(jnp.diagonal(L)))
    return GradientDesignState(
        E.at[:, :P].set(Z.T), scores, jnp.zeros(N, bool), jnp.asarray(P, jnp.int32), logdet, lam
    )


@jax.jit
def gradient_design_update(
    state: GradientDesignState, candidates: Float[ArrayLike, "N k"]
) -> tuple[GradientDesignState, Int[Array, ""]]:
    """One greedy pick (Eq. 3; ties → lowest index) and the within-batch update V ← V + φφᵀ
    (Eq. 4), in O(N k + N R)."""
    j = jnp.argmax(jnp.where(state.selected, -jnp.inf, state.scores))  # Eq. (3)
    s_j = state.scores[j]
    d = jnp.sqrt(state.lam * (1.0 + s_j))  # the new diagonal entry of L
    col = (candidates @ candidates[j] - state.E @ state.E[j]) / d  # new entry of every e_i
    E = jax.lax.dynamic_update_slice(
        state.E, col[:, None], (jnp.zeros_like(state.count), state.count)
    )
    scores = jnp.maximum(state.scores - col * col / state.lam, 0.0)  # Eq. (4), Sherman–Morrison
    return state._replace(
        E=E,
        scores=scores,
        selected=state.selected.at[j].set(True),
        count=state.count + 1,
        logdet=linalg.logdet_rank_one(state.logdet, s_j),
    ), j


@partial(jax.jit, static_argnames=("batch_size",))
def _select(candidates, past, lam, batch_size: int):
    P = 0 if past is None else past.shape[0]
    state = gradient_design_init(candidates, past, lam=lam, capacity=P + batch_size)

    def step(state, _):
        best = jnp.max(jnp.where(state.selected, -jnp.inf, state.scores))
        state, j = gradient_design_update(state, candidates)
        return state, (j, best, state.logdet)

    _, out = jax.lax.scan(step, state, None, length=batch_size)
    return GradientSelection(*out)


def gradient_uncertainty_batch(
    candidates: Float[ArrayLike, "N k"],
    batch_size: int,
    *,
    lam,
    past: Float[ArrayLike, "P k"] | None = None,
) -> GradientSelection:
    r"""ActiveDPO's batch: ``batch_size`` greedy picks of argmax φ_iᵀV⁻¹φ_i with V updated
    after every pick.

    .. math:: i_b = \arg\max_{i \notin S} \phi_i^\top V^{-1} \phi_i, \qquad
              V \leftarrow V + \phi_{i_b}\phi_{i_b}^\top, \qquad
              V_0 = \lambda I + \textstyle\sum_{\text{past}} \phi\phi^\top

    Equivalent to greedy maximisation of log det V (matrix determinant lemma), so the picks are
    greedy D-optimal design over the candidates, continued from the past rows.

    Args:
      candidates: (N, k) features φ of this iteration's candidate triplets.
      batch_size: B, 1 ≤ B ≤ N.
      lam: λ > 0 (required: with |S| < k rows the unregularised V is singular).
      past: (P, k) features of the triplets selected in earlier iterations (recomputed at
        θ_{t−1}, as Proposition 1 needs, or stored), or None.

    Returns: ``GradientSelection(indices (B,), scores (B,), logdets (B,))``.

    Example:
      >>> phi = jnp.array([[1.0, 0.0], [0.0, 2.0], [0.0, 1.9]])
      >>> gradient_uncertainty_batch(phi, 2, lam=1.0).indices
      Array([1, 0], dtype=int32)

    References: Lin et al., "ActiveDPO", arXiv 2505.19241, Eq. (3)–(4) and Algorithm 1.
    """
    N, k = _checks.check_ndim("candidates", candidates, 2)
    _checks.check_finite("candidates", candidates)
    _checks.check_positive("lam", lam)
    _checks.check_int_in("batch_size", batch_size, 1, N)
    if past is not None:
        _checks.check_ndim("past", past, 2)
        _checks.check_finite("past", past)
        if past.shape[1] != k:
            raise ValueError(f"past: has {past.shape[1]} columns, candidates have {k}")
        past = jnp.asarray(past, jnp.asarray(candidates).dtype) if past.shape[0] else None
    return _select(jnp.asarray(candidates), past, lam, batch_size)

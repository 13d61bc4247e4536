"""Exact greedy D-optimal design with stale upper bounds and block refreshes ("lazy" greedy).

Plain greedy (``greedy.py``) keeps every score s_i = v_iᵀH⁻¹v_i current with one N×d
matrix–vector product per pick. Scores only decrease as H grows (H ⪯ H' ⇒ H'⁻¹ ⪯ H⁻¹), so a
score computed at an earlier step is an upper bound on the current one. With
ũ_j = H_{j−1}⁻¹v_{I_j}/√(1 + q_j) for the picks since the last refresh at step τ,

    H_t⁻¹ = H_τ⁻¹ − Σ_{τ<j≤t} ũ_jũ_jᵀ,   s_i(t) = s̃_i − ‖Ũᵀv_i‖²,   s̃_i = s_i(τ),

so any one score can be made exact in O(d·b) from the stale s̃_i and the block Ũ (b ≤ B
columns). At a refresh the M largest stale bounds are listed in decreasing order (``top_k``)
and their rows copied into one contiguous M × d block. Each listed row also keeps its score
from when it was last re-scored (a tighter bound than s̃), and each chunk of the list the
largest of these. A pick re-scores, in list order, only the chunks whose bound reaches the
best exact score found so far (less a rounding margin), with one chunk × d × b product each
(b rounded up to a multiple of B/8); no other listed row can reach that score. If the M-th
stale bound also reaches it (the list ran out: the pick's score fell that low), the pick
refreshes all N scores with one N×d×b product and takes the argmax over all N; a
refresh also runs when the block is full (B picks). So the list is rebuilt only when it
must be: on the benchmark's shape 13 times in 256 picks, whose products together cost the
flops of one N×d×n GEMM. The picks are those of plain greedy (same argmax, ties to the
lowest index); only the order of floating-point operations differs.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from jaxpref import linalg


class LazyStats(NamedTuple):
    rescored: Array  # ()  candidates whose exact score was computed between refreshes (total)
    refreshes: Array  # ()  full N×d×B score refreshes (including the initial scoring)


class _State(NamedTuple):
    stale: Array  # (N,)        s̃ at the last refresh
    top_idx: Array  # (M,)      the M unselected rows with the largest s̃ at the refresh,
    top_stale: Array  # (M,)    in decreasing order of s̃ (ties: lower index first),
    top_rows: Array  # (M, d)   and their vectors, gathered once per refresh (contiguous)
    tight: Array  # (M,)        each listed row's score when last re-scored (−inf: picked)
    chunk_max: Array  # (C,)    max of tight over each chunk of the list
    block: Array  # (d, B)      ũ of the picks since the refresh (zero columns unused)
    count: Array  # ()          b, used columns of block
    H_inv: object  # H⁻¹: dense (d, d), or linalg.LowRankInverse when n < d
    logdet: Array  # ()
    selected: Array  # (N,)     bool
    sel_rows: Array  # (n, d)      picked vectors, for κ
    sel_scores: Array  # (n,)     their current scores (−inf until picked)
    rescored: Array  # ()
    refreshes: Array  # ()


def _top(stale, selected, m):
    vals, idx = jax.lax.top_k(jnp.where(selected, -jnp.inf, stale), m)
    return idx.astype(jnp.int32), vals


def _block_norms(X, block, count, *, fused: bool = False):
    """‖Ũᵀx‖² for every row x of X, multiplying only by the used columns of Ũ (rounded up
    to a multiple of B/8). ``fused``: the product as one multiply–reduce loop instead of a dot;
    on XLA:CPU that streams the N × d candidates of a refresh at k ≤ 64 columns faster than
    its dot (5.1 vs 9.9 ms at k = 8, 16.3 vs 17.6 ms at k = 64, N = 50,000, d = 128, one
    core of the loaded benchmark machine), while the chunk-sized products of a walk stay dots."""
    B = block.shape[1]
    sizes = sorted({max(1, B * j // 8) for j in range(1, 9)})

    def branch(k):
        def f(_):
            if fused:
                W = jnp.sum(X[:, :, None] * block[None, :, :k], axis=1)
            else:
                W = X @ block[:, :k]  # rows × d × k
            return jnp.sum(W * W, axis=1)

        return f

    which = sum((count > k).astype(jnp.int32) for k in sizes[:-1])
    return jax.lax.switch(which, [branch(k) for k in sizes], None)


def _chunk_starts(m: int, chunk: int):
    """First list position of each chunk; the last starts at M − chunk (it may overlap the
    one before when chunk ∤ M)."""
    return jnp.minimum(jnp.arange(-(-m // chunk)) * chunk, m - chunk).astype(jnp.int32)


def _refresh(s: _State, V, starts) -> _State:
    """s̃ ← s̃ − ‖ŨᵀV‖² for all rows (one N×d×b product), new top-M list, empty block."""
    stale = s.stale - _block_norms(V, s.block, s.count, fused=True)
    top_idx, top_stale = _top(stale, s.selected, s.top_idx.shape[0])
    return s._replace(
        stale=stale,
        top_idx=top_idx,
        top_stale=top_stale,
        top_rows=V[top_idx],
        tight=top_stale,
        chunk_max=top_stale[starts],  # sorted: a chunk's first entry is its largest
        block=jnp.zeros_like(s.block),
        count=jnp.zeros_like(s.count),
        refreshes=s.refreshes + 1,
    )


def _walk(s: _State, starts, chunk: int):
    """Best exact score among the top-M list, re-scoring only the chunks whose bound could win.

    Every listed row's score is bounded by ``tight`` (its score when last re-scored: scores
    only decrease), so a chunk is re-scored only if its ``chunk_max`` reaches the best exact
    score found so far, less a rounding margin; chunks are taken in list order (decreasing
    s̃), and the re-scored values replace ``tight``. Returns (state with the new tight
    bounds, index, score, rows re-scored, conclusive): conclusive when no row outside the list
    can reach the score (ties → lowest index included)."""
    m = s.top_idx.shape[0]
    d = s.top_rows.shape[1]
    C = starts.shape[0]
    big = jnp.iinfo(jnp.int32).max
    # |rounding of s̃ − ‖Ũᵀv‖²| over two re-scorings: far below this, far above any gap
    # that decides a pick in practice; a row within it of the best is always re-scored.
    margin = 1024 * jnp.finfo(s.stale.dtype).eps * jnp.abs(s.top_stale[0])

    def next_chunk(c, best, chunk_max):
        live = (jnp.arange(C) >= c) & (chunk_max + margin >= best)
        return jnp.where(jnp.any(live), jnp.argmax(live), C).astype(jnp.int32)

    def body(c):
        j, best, best_i, tight, chunk_max, walked = c
        start = starts[j]
        idx = jax.lax.dynamic_slice(s.top_idx, (start,), (chunk,))
        rows = jax.lax.dynamic_slice(s.top_rows, (start, jnp.int32(0)), (chunk, d))
        exact = jax.lax.dynamic_slice(s.top_stale, (start,), (chunk,))
        exact = exact - _block_norms(rows, s.block, s.count)
        exact = jnp.where(s.selected[idx], -jnp.inf, exact)
        tight = jax.lax.dynamic_update_slice(tight, exact, (start,))
        top = jnp.max(exact)
        chunk_max = chunk_max.at[j].set(top)
        i = jnp.min(jnp.where(exact == top, idx, big))
        better = (top > best) | ((top == best) & (i < best_i))
        best, best_i = jnp.where(better, top, best), jnp.where(better, i, best_i)
        j = next_chunk(j + 1, best, chunk_max)
        return j, best, best_i, tight, chunk_max, walked + chunk

    init = (
        jnp.zeros((), jnp.int32),
        jnp.asarray(-jnp.inf, s.stale.dtype),
        jnp.asarray(big),
        s.tight,
        s.chunk_max,
        jnp.zeros((), jnp.int32),
    )
    _, best, best_i, tight, chunk_max, walked = jax.lax.while_loop(lambda c: c[0] < C, body, init)
    every_row = m == s.stale.shape[0]  # the list holds all N rows: none lies outside it
    conclusive = (s.top_stale[-1] < best) | every_row
    return s._replace(tight=tight, chunk_max=chunk_max), best_i, best, walked, conclusive


@partial(jax.jit, static_argnames=("n", "block", "chunk", "m"))
def _lazy_select(V, gamma, n: int, block: int, chunk: int, m: int):
    N, d = V.shape
    dt = V.dtype
    starts = _chunk_starts(m, chunk)
    selected = jnp.zeros(N, bool)
    stale = jnp.sum(V * V, axis=1) / gamma  # s_i(0) = ‖v‖²/γ
    top_idx, top_stale = _top(stale, selected, m)
    s = _State(
        stale,
        top_idx,
        top_stale,
        V[top_idx],
        top_stale,
        top_stale[starts],
        jnp.zeros((d, block), dt),
        jnp.zeros((), jnp.int32),
        linalg.low_rank_inverse(d, n, gamma, dt) if n < d else jnp.eye(d, dtype=dt) / gamma,
        d * jnp.log(jnp.asarray(gamma, dt)),
        selected,
        jnp.zeros((n, d), dt),
        jnp.full((n,), -jnp.inf, dt),
        jnp.zeros((), jnp.int32),
        jnp.ones((), jnp.int32),
    )

    def global_pick(s: _State):
        """Refresh, then the argmax over all current (now exact) scores."""
        s = _refresh(s, V, starts)
        i = jnp.argmax(jnp.where(s.selected, -jnp.inf, s.stale)).astype(jnp.int32)
        return s, i, s.stale[i]

    def step(s: _State, t):
        s = jax.lax.cond(s.count == block, lambda s: _refresh(s, V, starts), lambda s: s, s)
        s, i, best, walked, conclusive = _walk(s, starts, chunk)
        s, i, best = jax.lax.cond(conclusive, lambda s: (s, i, best), global_pick, s)
        kappa = jnp.maximum(best, jnp.max(s.sel_scores)) / best  # Assumption 4 at this step
        v = V[i]
        H_inv, u, q = linalg.inverse_rank_one(s.H_inv, v)
        sel_rows = s.sel_rows.at[t].set(v)
        pad = lambda r: jnp.zeros(n, dt).at[: r.shape[0]].set(r @ u)  # noqa: E731
        w = linalg.on_used_rows(sel_rows, t + 1, pad)  # the picked rows' v·u
        sel_scores = s.sel_scores.at[t].set(q) - w * w / (1.0 + q)
        s = s._replace(
            block=s.block.at[:, s.count].set(u / jnp.sqrt(1.0 + q)),
            count=s.count + 1,
            H_inv=H_inv,
            logdet=linalg.logdet_rank_one(s.logdet, q),
            selected=s.selected.at[i].set(True),
            sel_rows=sel_rows,
            sel_scores=sel_scores,
            rescored=s.rescored + walked,
        )
        return s, (i, s.logdet, kappa)

    s, (indices, logdets, kappas) = jax.lax.scan(step, s, jnp.arange(n))
    return (indices, logdets, jnp.max(kappas)), LazyStats(s.rescored, s.refreshes)


def lazy_greedy_doptimal(
    features: Float[ArrayLike, "N d"],
    n: int,
    *,
    gamma=1.0,
    block: int = 64,
    chunk: int = 128,
    shortlist: int | None = None,
):
    """Greedy D-optimal selection by stale bounds + block refreshes; see the module docstring.

    Same contract as ``greedy_doptimal(..., method="plain")`` (identical picks up to
    floating-point rounding of exact near-ties), plus ``LazyStats``. Unchecked: call
    ``greedy_doptimal`` for argument checks.

    Args:
      features: (N, d) candidate vectors.  n: picks.  gamma: H_0 = γI.
      block: B, the most picks between two refreshes.  chunk: rows re-scored at a time in
      a walk.  shortlist: M, the rows listed at a refresh (default: about N/16, at least
      8 chunks, at most N).

    Returns:
      ((indices, logdets, kappa), LazyStats(rescored, refreshes)).

    References: Minoux (1978), accelerated greedy for submodular maximisation (stale bounds);
      Kveton et al., arXiv 2503.01076, Eq. (10).
    """
    N = features.shape[0]
    chunk = max(1, min(chunk, N))
    if shortlist is None:
        shortlist = chunk * -(-max(8 * chunk, N // 16) // chunk)
    m = max(chunk, min(shortlist, N))
    return _lazy_select(jnp.asarray(features), gamma, n, block, chunk, m)

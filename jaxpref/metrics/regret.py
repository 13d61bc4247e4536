"""Cumulative regret of online runs, summarised at checkpoints for a rate comparison."""

from __future__ import annotations

import numpy as np

from jaxpref import _checks
from jaxpref.metrics.fits import loglog_slope


def cumulative_regret_curve(regrets, checkpoints) -> dict:
    r"""Cumulative regret R_s(K) = Σ_{k ≤ K} r_{s,k} of S runs at each checkpoint K, with its
    mean over runs, the standard error of that mean and the log-log slope of the mean:

    - ``mean[j]`` = (1/S) Σ_s R_s(K_j);
    - ``se[j]`` = std_s R_s(K_j) / √S (sample standard deviation, ddof = 1);
    - ``slope``: the least-squares s of log mean = a + s log K (`loglog_slope`), to compare with
      a stated rate K^s (e.g. s = ½ for Õ(√K) regret).

    Args:
      regrets: (S, K_max) instantaneous regrets r_{s,k} = J(π*) − J(π_k), S ≥ 2 runs.
      checkpoints: (C,) integers in [1, K_max], C ≥ 2 (episode counts K_j).
    Returns:
      ``{"mean": (C,), "se": (C,), "slope": float}`` in float64 NumPy (a host-side summary).

    References: Jia, arXiv 2511.12867, regret Σ_k [J(π*) − J(π_k)] (Theorems 1-4) [summary];
      Abbasi-Yadkori, Pál & Szepesvári, "Improved Algorithms for Linear Stochastic Bandits",
      NeurIPS 2011 (regret as a cumulative sum over rounds).
    """
    r = np.asarray(regrets, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] < 2 or r.shape[1] < 1:
        raise ValueError(f"regrets: expected shape (S >= 2 runs, K >= 1), got {r.shape}")
    _checks.check_finite("regrets", r)
    k = np.asarray(checkpoints)
    if k.ndim != 1 or k.size < 2 or not np.issubdtype(k.dtype, np.integer):
        raise ValueError(f"checkpoints: expected >= 2 integers in 1-D, got {checkpoints!r}")
    if k.min() < 1 or k.max() > r.shape[1]:
        raise ValueError(f"checkpoints: must lie in [1, {r.shape[1]}], got {k.min()}..{k.max()}")
    cum = np.cumsum(r, axis=1)[:, k - 1]  # R_s(K_j)
    mean = cum.mean(0)
    se = cum.std(0, ddof=1) / np.sqrt(len(cum))
    return {"mean": mean, "se": se, "slope": loglog_slope(k, mean)[0]}


def regret_scaling(sizes, regrets) -> dict:
    r"""How the total regret at a fixed K grows with a size of the problem (d, H, …): at each
    size g the mean over its S_g runs of R_s(K) = Σ_{k ≤ K} r_{s,k}, and the least-squares
    slope s of log mean = a + s log size, to compare with a bound's exponent (e.g. 1 in d for
    PbPO's upper and lower bounds, between 1 and 3/2 in H).

    Args:
      sizes: (G,) positive sizes, G ≥ 2.
      regrets: G arrays (S_g, K) of instantaneous regrets r_{s,k}, one per size.
    Returns:
      ``{"regret": G floats, "slope": float}`` (float64 sums; a host-side summary).

    Example (totals 2d, i.e. linear in d):
      >>> out = regret_scaling([2, 8], [np.ones((3, 4)), np.full((2, 4), 4.0)])
      >>> out["regret"], round(out["slope"], 6)
      ([4.0, 16.0], 1.0)

    References: Jia, arXiv 2511.12867, Õ(κ d H^{3/2} √K) and Ω(d H √K) (Remark 2) [summary].
    """
    if len(regrets) != len(sizes):
        raise ValueError(f"regrets: need one array per size, got {len(regrets)} for {len(sizes)}")
    totals = [mean_total_regret(r) for r in regrets]
    return {"regret": totals, "slope": loglog_slope(sizes, totals)[0]}


def mean_total_regret(regrets) -> float:
    r"""(1/S) Σ_s Σ_{k ≤ K} r_{s,k}: the mean over S runs of the cumulative regret at the last
    episode, of (S, K) instantaneous regrets (summed in float64).

      >>> mean_total_regret([[1.0, 2.0], [0.0, 1.0]])
      2.0

    References: Jia, arXiv 2511.12867, regret Σ_k [J(π*) − J(π_k)] (Theorems 1-4) [summary].
    """
    r = np.asarray(regrets, dtype=np.float64)
    if r.ndim != 2 or r.size == 0:
        raise ValueError(f"regrets: expected shape (S >= 1, K >= 1), got {r.shape}")
    _checks.check_finite("regrets", r)
    return float(r.sum(1).mean())

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

"""Greedy D-optimal selection by its definition, for checking the fast selectors on real features.

The selectors of ``jaxpref.design`` never form a log-determinant: they keep φᵀV⁻¹φ current with
rank-one (``greedy_doptimal``) or low-rank Woodbury (``gradient_uncertainty_batch``) updates.
``brute_force_greedy_logdet`` evaluates log det(V + φ_iφ_iᵀ) of every candidate with
``numpy.linalg.slogdet`` at every step instead: O(n N d³) in float64 NumPy, so an experiment
can confirm on its own features, at small N and d, that the fast picks are the greedy ones.
"""

from __future__ import annotations

import numpy as np

from jaxpref import _checks


def brute_force_greedy_logdet(
    phi, n: int, *, lam: float, past=None
) -> tuple[list[int], list[float]]:
    r"""n greedy picks maximising log det V by slogdet of every candidate (NumPy, float64).

    .. math:: V_0 = \lambda I + \sum_{p \in \mathrm{past}} \phi_p\phi_p^\top,\qquad
              j_t = \arg\max_{i \notin \{j_1..j_{t-1}\}} \log\det(V_{t-1} + \phi_i\phi_i^\top),
              \qquad V_t = V_{t-1} + \phi_{j_t}\phi_{j_t}^\top

    ActiveDPO's Eq. (3)–(4) (by the matrix determinant lemma the same argmax as the largest
    ‖φ_i‖_{V⁻¹}) and ADPO's greedy D-optimal design with V_0 = γI. Ties go to the lowest index,
    as ``numpy.argmax`` breaks them.

    Args:
      phi: (N, d) candidate features.
      n: picks, in [1, N].
      lam: > 0, the ridge λ of V_0.
      past: (P, d) rows already in the design (None: none).

    Returns: (picks, logdets): the n indices in pick order and log det V_t after each pick.

    Example:
      >>> brute_force_greedy_logdet([[1.0, 0.0], [0.0, 2.0], [0.0, 1.9]], 2, lam=1.0)[0]
      [1, 0]

    References: Lin et al., "ActiveDPO: Active Direct Preference Optimization for
      Sample-Efficient Alignment", arXiv 2505.19241, Eq. (3)–(4); Kveton et al., "Active
      Learning for Direct Preference Optimization", arXiv 2503.01076, §5 (greedy D-optimal).
    """
    N, d = _checks.check_ndim("phi", phi, 2)
    _checks.check_int_in("n", n, 1, N)
    _checks.check_positive("lam", lam)
    phi = np.asarray(phi, np.float64)
    past = np.zeros((0, d)) if past is None else np.asarray(past, np.float64)
    if past.ndim != 2 or past.shape[1] != d:
        raise ValueError(f"past: expected shape (P, {d}) to match phi, got {past.shape}")
    V = lam * np.eye(d) + past.T @ past
    picks, logdets = [], []
    for _ in range(n):
        dets = [
            -np.inf if i in picks else np.linalg.slogdet(V + np.outer(f, f))[1]
            for i, f in enumerate(phi)
        ]
        picks.append(int(np.argmax(dets)))
        V = V + np.outer(phi[picks[-1]], phi[picks[-1]])
        logdets.append(float(np.linalg.slogdet(V)[1]))
    return picks, logdets


__all__ = ["brute_force_greedy_logdet"]

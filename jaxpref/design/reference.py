"""Greedy D-optimal selection by its definition, for checking the fast selectors on real features.

The selectors of ``jaxpref.design`` never form a log-determinant: they keep φᵀV⁻¹φ current with
rank-one (``greedy_doptimal``) or low-rank Woodbury (``gradient_uncertainty_batch``) updates.
``brute_force_greedy_logdet`` evaluates log det(V + φ_iφ_iᵀ) of every candidate with
``numpy.linalg.slogdet`` at every step instead: O(n N d³) in float64 NumPy, so an experiment
can confirm on its own features, at small N and d, that the fast picks are the greedy ones;
``direct_uncertainty_scores`` forms V and solves with it, and ``gradient_selection_check`` sets
ActiveDPO's low-rank selection against both.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxpref import _checks
from jaxpref.design.gradient_uncertainty import gradient_design_init, gradient_uncertainty_batch


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
    past = _past(past, d)
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


def _past(past, d: int) -> np.ndarray:
    past = np.zeros((0, d)) if past is None else np.asarray(past, np.float64)
    if past.ndim != 2 or past.shape[1] != d:
        raise ValueError(f"past: expected shape (P, {d}) to match phi, got {past.shape}")
    return past


def direct_uncertainty_scores(phi, *, lam: float, past=None) -> np.ndarray:
    r"""φ_iᵀV⁻¹φ_i of every candidate with V formed (d × d) and solved (NumPy, float64).

    .. math:: V = \lambda I + \sum_{p \in \mathrm{past}} \phi_p\phi_p^\top, \qquad
              s_i = \phi_i^\top V^{-1} \phi_i

    ActiveDPO's uncertainty (Eq. 3, squared) by its definition: O(d³ + N d²), for checking
    the low-rank scores of ``gradient_design_init`` at small d.

    Args:
      phi: (N, d) candidate features.
      lam: > 0, the ridge λ.
      past: (P, d) rows already in V (None: none).

    Returns: (N,) float64 scores.

    Example:
      >>> direct_uncertainty_scores([[1.0, 0.0], [1.0, 1.0]], lam=1.0, past=[[0.0, 1.0]])
      array([1. , 1.5])

    References: Lin et al., arXiv 2505.19241, Eq. (3).
    """
    _, d = _checks.check_ndim("phi", phi, 2)
    _checks.check_positive("lam", lam)
    phi = np.asarray(phi, np.float64)
    past = _past(past, d)
    V = lam * np.eye(d) + past.T @ past
    return np.sum(phi * np.linalg.solve(V, phi.T).T, axis=1)  # φᵀV⁻¹φ, V formed (d × d)


def gradient_selection_check(phi, n: int, *, lam: float, past=None) -> dict:
    """ActiveDPO's low-rank selection on ``phi`` against its definitions: the n picks of
    ``gradient_uncertainty_batch`` and of ``brute_force_greedy_logdet`` (both continued from
    ``past``), and the largest relative gap between ``gradient_design_init``'s Woodbury scores
    and :func:`direct_uncertainty_scores`.

    Args: as :func:`brute_force_greedy_logdet` (phi (N, d), n in [1, N], lam > 0, past (P, d)).

    The fast side runs in float64 (``jax.enable_x64`` inside), as the references do, so the
    gap and the picks measure the algebra, not float32 round-off (a float32 run of the fast
    side reads gaps ~2e-6 on random 40 × 16 features, and could break a near-tie differently).

    Returns: ``{"picks", "brute_force_picks"}`` (lists of n indices, equal when the fast
    selection is the greedy one) and ``"scores_max_rel_error"`` (max_i |s_i − s_i^direct| /
    max(s_i^direct, 1e-12)).

    References: Lin et al., arXiv 2505.19241, Eq. (3)–(4).
    """
    N, d = _checks.check_ndim("phi", phi, 2)
    _checks.check_int_in("n", n, 1, N)
    past = None if past is None else _past(past, d)
    phi = np.asarray(phi, np.float64)
    with jax.enable_x64(True):
        sel = gradient_uncertainty_batch(phi, n, lam=lam, past=past)
        capacity = 0 if past is None else len(past)
        state = gradient_design_init(phi, past, lam=lam, capacity=capacity)
        scores, picks = np.asarray(state.scores), np.asarray(sel.indices)
    brute, _ = brute_force_greedy_logdet(phi, n, lam=lam, past=past)
    direct = direct_uncertainty_scores(phi, lam=lam, past=past)
    gap = np.abs(scores - direct) / np.maximum(direct, 1e-12)
    return {
        "picks": picks.tolist(),
        "brute_force_picks": brute,
        "scores_max_rel_error": float(np.max(gap)),
    }


__all__ = ["brute_force_greedy_logdet", "direct_uncertainty_scores", "gradient_selection_check"]

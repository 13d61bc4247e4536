"""design.brute_force_greedy_logdet, the by-definition greedy the experiments check the fast
selectors against: a hand-computed case, and the determinant lemma's scores (a linear solve per
step, no determinant) with the log-det built once from the picked rows."""

import numpy as np
import pytest

from jaxpref import design


def test_hand_computed_picks_and_logdets():
    # V₀ = I: det(V₀ + φφᵀ) = 2, 5, 4.61 → pick 1; V₁ = diag(1, 5): 10 vs 8.61 → pick 0
    picks, logdets = design.brute_force_greedy_logdet(
        [[1.0, 0.0], [0.0, 2.0], [0.0, 1.9]], 2, lam=1.0
    )
    assert picks == [1, 0]
    np.testing.assert_allclose(logdets, np.log([5.0, 10.0]), rtol=1e-12)


@pytest.mark.parametrize("n_past", [0, 4])
def test_picks_follow_the_determinant_lemma(n_past):
    rng = np.random.default_rng(n_past)
    phi, past, lam = rng.normal(size=(12, 5)), rng.normal(size=(n_past, 5)), 0.4
    picks, logdets = design.brute_force_greedy_logdet(phi, 6, lam=lam, past=past)
    V, expect = lam * np.eye(5) + past.T @ past, []
    for _ in range(6):  # log det(V + φφᵀ) = log det V + log(1 + φᵀV⁻¹φ): the largest φᵀV⁻¹φ
        scores = np.einsum("ij,ji->i", phi, np.linalg.solve(V, phi.T))
        scores[expect] = -np.inf
        expect.append(int(np.argmax(scores)))
        V = V + np.outer(phi[expect[-1]], phi[expect[-1]])
    assert picks == expect
    chosen = phi[picks]
    full = lam * np.eye(5) + past.T @ past + chosen.T @ chosen
    assert len(set(picks)) == 6
    np.testing.assert_allclose(logdets[-1], np.linalg.slogdet(full)[1], rtol=1e-12)


def test_bad_input_is_refused():
    phi = np.ones((3, 2))
    with pytest.raises(ValueError, match="n:"):
        design.brute_force_greedy_logdet(phi, 4, lam=1.0)
    with pytest.raises(ValueError, match="lam:"):
        design.brute_force_greedy_logdet(phi, 1, lam=0.0)
    with pytest.raises(ValueError, match=r"past: expected shape \(P, 2\)"):
        design.brute_force_greedy_logdet(phi, 1, lam=1.0, past=np.ones((2, 3)))

"""design.brute_force_greedy_logdet, the by-definition greedy the experiments check the fast
selectors against: a hand-computed case, and the determinant lemma's scores (a linear solve per
step, no determinant) with the log-det built once from the picked rows. direct_uncertainty_scores
against a hand case and V's eigendecomposition; gradient_selection_check agrees on random
features and reports a wrong selection or wrong scores."""

import numpy as np
import pytest

from jaxpref import design
from jaxpref.design import reference


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


def test_direct_scores_by_hand_and_by_eigendecomposition():
    # V = diag(1, 2): s = 1, 1 + 1/2
    got = design.direct_uncertainty_scores([[1.0, 0.0], [1.0, 1.0]], lam=1.0, past=[[0.0, 1.0]])
    np.testing.assert_allclose(got, [1.0, 1.5], rtol=1e-15)
    rng = np.random.default_rng(3)
    phi, past, lam = rng.normal(size=(7, 4)), rng.normal(size=(3, 4)), 0.3
    w, Q = np.linalg.eigh(lam * np.eye(4) + past.T @ past)
    expect = np.sum((phi @ Q) ** 2 / w, axis=1)  # φᵀ Q diag(1/w) Qᵀ φ
    got = design.direct_uncertainty_scores(phi, lam=lam, past=past)
    np.testing.assert_allclose(got, expect, rtol=1e-12)
    alone = design.direct_uncertainty_scores(phi, lam=lam)
    np.testing.assert_allclose(alone, np.sum(phi * phi, axis=1) / lam, rtol=1e-14)


@pytest.mark.parametrize("n_past", [0, 3])
def test_selection_check_agrees_on_random_features(n_past):
    rng = np.random.default_rng(10 + n_past)
    phi, past = rng.normal(size=(14, 6)), rng.normal(size=(n_past, 6))
    out = design.gradient_selection_check(phi, 5, lam=0.5, past=past if n_past else None)
    assert out["picks"] == out["brute_force_picks"]
    assert out["picks"] == design.brute_force_greedy_logdet(phi, 5, lam=0.5, past=past)[0]
    assert len(set(out["picks"])) == 5
    assert out["scores_max_rel_error"] < 1e-10


def test_selection_check_reports_a_wrong_selection_and_wrong_scores(monkeypatch):
    """What the check guards: picks in another order, or Woodbury scores 10 % off, show up."""
    rng = np.random.default_rng(4)
    phi, past = rng.normal(size=(10, 4)), rng.normal(size=(2, 4))
    fast = reference.gradient_uncertainty_batch

    def reversed_picks(*args, **kw):
        sel = fast(*args, **kw)
        return sel._replace(indices=sel.indices[::-1])

    monkeypatch.setattr(reference, "gradient_uncertainty_batch", reversed_picks)
    out = design.gradient_selection_check(phi, 4, lam=1.0, past=past)
    assert out["picks"] == out["brute_force_picks"][::-1] != out["brute_force_picks"]
    init = reference.gradient_design_init
    monkeypatch.setattr(
        reference,
        "gradient_design_init",
        lambda *a, **kw: init(*a, **kw)._replace(scores=1.1 * init(*a, **kw).scores),
    )
    out = design.gradient_selection_check(phi, 4, lam=1.0, past=past)
    assert out["scores_max_rel_error"] == pytest.approx(0.1, rel=1e-9)


def test_new_references_refuse_bad_input():
    phi = np.ones((3, 2))
    with pytest.raises(ValueError, match="lam:"):
        design.direct_uncertainty_scores(phi, lam=-1.0)
    with pytest.raises(ValueError, match=r"past: expected shape \(P, 2\)"):
        design.direct_uncertainty_scores(phi, lam=1.0, past=np.ones(2))
    with pytest.raises(ValueError, match="n:"):
        design.gradient_selection_check(phi, 0, lam=1.0)
    with pytest.raises(ValueError, match=r"past: expected shape \(P, 2\)"):
        design.gradient_selection_check(phi, 1, lam=1.0, past=np.ones((1, 3)))

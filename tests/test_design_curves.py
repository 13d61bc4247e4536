"""design.budget_curve against an independent float64 computation: for every prefix of a
selection order, the ridge DPO objective minimised by SciPy's BFGS from its own NumPy formula,
then the logit errors and pair metrics by plain loops over the pairs."""

import jax
import numpy as np
import pytest
from scipy.optimize import minimize

from jaxpref import design

BETA, GAMMA = 0.7, 0.3


def _pool(seed=0, N=10, d=3):
    rng = np.random.default_rng(seed)
    phi = rng.normal(size=(N, d))
    b = 0.5 * rng.normal(size=N)
    labels = (rng.random(N) < 0.6).astype(np.float64)
    return phi, labels, b, rng.normal(size=d), rng.permutation(N)


def _mle_by_bfgs(phi, s, b, idx):
    """argmin Σ_{i∈idx} −s_i log σ(h_i) − (1 − s_i) log σ(−h_i) + (γ/2)‖θ‖², h = β(φθ − b)."""

    def objective(theta):
        h = BETA * (phi[idx] @ theta - b[idx])
        nll = s[idx] * np.logaddexp(0.0, -h) + (1 - s[idx]) * np.logaddexp(0.0, h)
        return nll.sum() + 0.5 * GAMMA * theta @ theta

    res = minimize(objective, np.zeros(phi.shape[1]), method="BFGS", options={"gtol": 1e-11})
    return res.x


def _loop_metrics(theta, star, phi, b):
    logits = [BETA * (sum(p * (t - u) for p, t, u in zip(row, theta, star))) for row in phi]
    h = [BETA * (float(row @ theta) - bi) for row, bi in zip(phi, b)]
    flips = [np.sign(row @ theta - bi) != np.sign(row @ star - bi) for row, bi in zip(phi, b)]
    return {
        "max": max(abs(x) for x in logits),
        "mean": sum(abs(x) for x in logits) / len(phi),
        "error_rate": sum(flips) / len(phi),
        "accuracy": sum(x > 0 for x in h) / len(phi),
        "margin": sum(h) / len(phi),
        "nll": sum(np.log1p(np.exp(-x)) for x in h) / len(phi),
    }


@pytest.mark.parametrize("seed", [0, 1])
def test_every_prefix_against_bfgs_and_loops(seed):
    phi, s, b, star, order = _pool(seed)
    budgets = [2, 5, 10]
    with jax.enable_x64(True):
        curve = design.budget_curve(order, budgets, phi, s, b, star, beta=BETA, gamma=GAMMA)
    assert curve.thetas.shape == (3, 3) and curve.errors.max.shape == (3,)
    for g, n in enumerate(budgets):
        theta = _mle_by_bfgs(phi, s, b, order[:n])
        np.testing.assert_allclose(curve.thetas[g], theta, atol=1e-7)
        want = _loop_metrics(theta, star, phi, b)
        for field in ("max", "mean", "error_rate"):
            assert float(getattr(curve.errors, field)[g]) == pytest.approx(want[field], abs=1e-7)
        for field in ("accuracy", "margin", "nll"):
            assert float(getattr(curve.fit, field)[g]) == pytest.approx(want[field], abs=1e-7)


def test_the_full_order_recovers_theta_star_with_zero_error():
    """θ* fitted on all N labels is the curve's last θ̂ when the last budget covers the pool."""
    phi, s, b, _, order = _pool(2)
    with jax.enable_x64(True):
        star = _mle_by_bfgs(phi, s, b, np.arange(phi.shape[0]))
        curve = design.budget_curve(order, [2, 5, 10], phi, s, b, star, beta=BETA, gamma=GAMMA)
    assert float(curve.errors.max[-1]) < 1e-7 and float(curve.errors.error_rate[-1]) == 0.0
    assert float(curve.errors.max[0]) > 1e-3  # two pairs do not pin θ* down


def test_bad_theta_star_is_refused_before_any_fit(library_checks_only):
    phi, s, b, star, order = _pool()
    with pytest.raises(ValueError, match=r"theta_star: expected shape \(3,\)"):
        design.budget_curve(order, [2], phi, s, b, star[:2])
    with pytest.raises(ValueError, match="theta_star: contains 1 non-finite"):
        design.budget_curve(order, [2], phi, s, b, np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="budgets: each must be in"):
        design.budget_curve(order, [11], phi, s, b, star)


def test_compare_methods_equals_select_and_budget_curve_per_key():
    """Every (rule, key) of the comparison is ``select`` then ``budget_curve`` run on their own;
    the deterministic rules' one run stands for each key because a run with another key gives
    the same picks; the random rule differs between keys. (ADPO and certainty, the two slow
    compiles, are left out: they go through the same ``select`` call as these three.)"""
    phi, s, b, star, _ = _pool(3, N=12)
    budgets, keys = [3, 6], [jax.random.key(0), jax.random.key(1)]
    kw = dict(beta=BETA, gamma=GAMMA, alpha=2.0, num_candidates=4)
    with jax.enable_x64(True):
        methods = ("ADPO+", "APO", "uniform")
        out = design.compare_methods(keys, phi, s, b, budgets, star, methods=methods, **kw)
        assert tuple(out) == methods
        for method, runs in out.items():
            assert runs.indices.shape == (2, 6) and runs.curve.errors.max.shape == (2, 2)
            for i, key in enumerate(keys):
                res = design.select(method, key, phi, s, b, 6, **kw)
                c = design.budget_curve(
                    res.indices, budgets, phi, s, b, star, beta=BETA, gamma=GAMMA
                )
                np.testing.assert_array_equal(runs.indices[i], res.indices, err_msg=method)
                for got, want in zip(jax.tree.leaves(runs.curve), jax.tree.leaves(c)):
                    np.testing.assert_allclose(got[i], want, rtol=1e-12, err_msg=method)
            if method in design.DETERMINISTIC:
                assert (runs.kappa is None) == (method != "ADPO+")
            else:
                assert not np.array_equal(runs.indices[0], runs.indices[1]), method
    assert out["ADPO+"].kappa.shape == (2,) and out["uniform"].kappa is None


def test_compare_methods_refuses_bad_arguments(library_checks_only):
    phi, s, b, star, _ = _pool()
    keys = [jax.random.key(0)]
    for args, match in [
        (dict(methods=["ADPO", "greedy"]), "methods: need names from"),
        (dict(keys=[]), "keys: need at least one"),
        (dict(budgets=[]), r"budgets: need a non-empty 1-D grid, got shape \(0,\)"),
    ]:
        kw = dict(keys=keys, budgets=[2]) | args
        with pytest.raises(ValueError, match=match):
            design.compare_methods(
                kw.pop("keys"),
                phi,
                s,
                b,
                kw.pop("budgets"),
                star,
                methods=kw.get("methods", ["APO"]),
            )

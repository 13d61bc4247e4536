"""The checked-entry-point convention of the math layer: integer inputs promoted, half precision
refused by Cholesky-based code, out-of-range indices and full buffers raise, enumerations that
cannot be held are refused. Each test guards a silent failure seen before the fix."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpref
from jaxpref import linalg
from jaxpref.pbpo import confidence as C
from jaxpref.pbpo import envs
from jaxpref.robust import estimator, objective


def _problem(dtype=float):
    rng = np.random.default_rng(0)
    phi = rng.integers(-2, 3, size=(3, 4, 2)).astype(dtype)
    ref = np.log(np.full((3, 4), 0.25))
    pref = rng.uniform(0.1, 0.9, size=(3, 4, 4))
    return phi, ref, pref


def test_integer_features_are_promoted():
    """Integer φ used to cast pref and weights to integers (all zero): the objective vanished."""
    phi, ref, pref = _problem(int)
    as_int = objective.preference_problem(phi, ref, pref)
    as_float = objective.preference_problem(phi.astype(float), ref, pref)
    assert jnp.issubdtype(as_int.phi.dtype, jnp.floating)
    theta = jnp.array([0.3, -0.2], as_int.phi.dtype)
    np.testing.assert_allclose(
        objective.sail_objective(theta, as_int), objective.sail_objective(theta, as_float)
    )
    assert float(jnp.min(as_int.pref)) > 0


def test_out_of_range_indices_raise():
    """JAX clamps out-of-range gathers; pair_gradient_estimate(context=100) used to return the
    last context's gradient."""
    prob = objective.preference_problem(*_problem())
    theta = jnp.zeros(2, prob.phi.dtype)
    estimator.pair_gradient_estimate(theta, prob, 0.1, 2, 3, 0)  # in range: fine
    for args, name in (((100, 0, 1), "context"), ((0, 4, 1), "first"), ((0, 1, -1), "second")):
        with pytest.raises(ValueError, match=name):
            estimator.pair_gradient_estimate(theta, prob, 0.1, *args)


def test_half_precision_refused_by_cholesky():
    A = jnp.eye(3)
    for dt in (jnp.float16, jnp.bfloat16):
        with pytest.raises(ValueError, match="too imprecise"):
            linalg.psd_solve(A.astype(dt), jnp.ones(3, dt))
        with pytest.raises(ValueError, match="too imprecise"):  # static: also under jit
            jax.jit(linalg.psd_logdet)(A.astype(dt))
    np.testing.assert_allclose(linalg.psd_logdet(2 * A.astype(jnp.float32)), 3 * np.log(2.0), 1e-6)


def test_confidence_update_past_capacity():
    """A full buffer used to drop the write but still add ΔφΔφᵀ to Σ (Σ ≠ λI + Σ stored)."""
    state = C.confidence_init(2, 2, 1.0)
    for v in ([1.0, 0.0], [0.0, 1.0]):
        state = C.confidence_update(state, jnp.array(v), 1.0)
    with pytest.raises(ValueError, match="full"):
        C.confidence_update(state, jnp.array([1.0, 1.0]), 0.0)
    update = jax.jit(C.confidence_update)  # traced count: refused in the graph
    with pytest.raises(jax.errors.JaxRuntimeError, match="state: the buffer is full"):
        jax.block_until_ready(update(state, jnp.array([1.0, 1.0]), 0.0))
    with jaxpref.value_checks(False):  # unchecked: the state is kept, Σ = λI + Σ stored
        kept = jax.jit(lambda *a: C.confidence_update(*a))(state, jnp.array([1.0, 1.0]), 0.0)
    np.testing.assert_allclose(kept.gram, C.gram_matrix(state.delta_phi, 1.0))
    assert int(kept.count) == 2


def test_token_mdp_refuses_an_enumeration_too_large():
    with pytest.raises(ValueError, match="horizon"):  # 2^40 sequences
        envs.token_mdp(jax.random.key(0), num_contexts=2, vocab=2, horizon=40, d=4)
    env = envs.token_mdp(jax.random.key(0), num_contexts=2, vocab=2, horizon=3, d=4)
    assert env.features.shape == (2, 8, 4)


def test_gram_is_checked_under_jit_and_vmap():
    """``check_psd`` used to be skipped under tracing: a singular or asymmetric Σ gave NaN or a
    wrong width inside a caller's jit. Now the Cholesky pivots are checked in the graph."""
    value = jax.jit(lambda g: C.pessimistic_value(jnp.zeros(2), g, 1.0, jnp.ones(2)))
    np.testing.assert_allclose(value(jnp.eye(2)), -np.sqrt(2.0), rtol=1e-6)
    bad = {
        "singular": jnp.array([[1.0, 0.0], [0.0, 0.0]]),
        "not positive definite": jnp.array([[1.0, 0.0], [0.0, -1.0]]),
        "not symmetric": jnp.array([[1.0, 2.0], [0.0, 1.0]]),
    }
    for problem, gram in bad.items():
        with pytest.raises(jax.errors.JaxRuntimeError, match=f"gram: .*{problem}"):
            jax.block_until_ready(value(gram))
    stacked = jnp.stack([jnp.eye(2), bad["singular"]])
    with pytest.raises(jax.errors.JaxRuntimeError, match="gram"):
        jax.block_until_ready(jax.vmap(value)(stacked))
    np.testing.assert_allclose(jax.vmap(value)(jnp.stack([jnp.eye(2)] * 2)), -np.sqrt(2.0), 1e-6)

"""Log-linear policy functions and the neural policy's last-layer linearisation."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpref.policies import loglinear
from jaxpref.policies.neural import MLPPolicy, last_layer_features, last_layer_params


def test_log_probs_and_score_function():
    key = jax.random.key(0)
    phi = jax.random.normal(key, (5, 3), jnp.float64)
    theta = jnp.array([0.5, -1.0, 2.0])
    lp = loglinear.log_probs(theta, phi)
    np.testing.assert_allclose(jnp.exp(lp).sum(), 1.0)
    logits = np.asarray(phi @ theta)
    np.testing.assert_allclose(lp, logits - np.log(np.exp(logits).sum()))
    for y in range(5):
        auto = jax.grad(lambda t: loglinear.log_probs(t, phi)[y])(theta)
        np.testing.assert_allclose(loglinear.score_function(theta, phi, y), auto, rtol=1e-12)


def test_sampling_frequencies():
    phi = jnp.eye(3)
    theta = jnp.log(jnp.array([0.2, 0.3, 0.5]))
    ys = loglinear.sample(jax.random.key(1), theta, phi, (20000,))
    freq = np.bincount(np.asarray(ys), minlength=3) / ys.size
    np.testing.assert_allclose(freq, [0.2, 0.3, 0.5], atol=0.015)


def test_dpo_logit_is_beta_times_policy_minus_reference_logratio():
    phi = jax.random.normal(jax.random.key(2), (4, 3), jnp.float64)
    theta, theta0, beta = jnp.array([1.0, 0.0, -1.0]), jnp.array([0.2, 0.1, 0.0]), 0.7
    lp, lp0 = loglinear.log_probs(theta, phi), loglinear.log_probs(theta0, phi)
    h = loglinear.dpo_logit(theta, phi[0] - phi[1], phi[0] @ theta0 - phi[1] @ theta0, beta)
    np.testing.assert_allclose(h, beta * ((lp[0] - lp[1]) - (lp0[0] - lp0[1])))


def test_neural_policy_is_loglinear_in_last_layer():
    model = MLPPolicy(6, (16, 8), rngs=nnx.Rngs(0))
    psi = jax.random.normal(jax.random.key(3), (2, 5, 6), jnp.float32)
    phi, theta = last_layer_features(model, psi), last_layer_params(model)
    assert phi.shape == (2, 5, 8) and theta.shape == (8,)
    np.testing.assert_allclose(
        model(psi), jax.vmap(lambda p: loglinear.log_probs(theta, p))(phi), atol=1e-6
    )

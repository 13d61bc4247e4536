"""Optax solvers on a softmax policy reach the closed-form optima (arXiv 2405.16455)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxpref.regularizers as R

REWARDS = jnp.array([1.0, 0.2, -0.5, 0.7])
REF = jnp.array([0.5, 0.3, 0.15, 0.05])
BETA, ALPHA = 0.5, 0.1

CASES = {
    "kl": (
        lambda p: R.kl_regularizer(p, REF, BETA),
        lambda: R.kl_rlhf_policy(REWARDS, jnp.log(REF), BETA),
    ),
    "pm": (lambda p: R.pm_regularizer(p, 0.3, 0.0), lambda: R.pm_policy(REWARDS)),
    "cpm": (
        lambda p: R.conditional_pm_regularizer(p, REF, ALPHA),
        lambda: R.conditional_pm_policy(REWARDS, jnp.log(REF), ALPHA),
    ),
    # E_π[R] = −β D_f(π ‖ π_ref) with the per-response R_k(π) = −β π_ref,k f(π/π_ref,k)/π
    "jensen_shannon": (
        lambda p: -BETA * REF * R.jensen_shannon.f(p / REF) / p,
        lambda: jnp.log(R.f_rlhf_policy(REWARDS, REF, BETA, R.jensen_shannon)),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_exact_gradient_ascent_reaches_closed_form(name):
    reg, closed = CASES[name]
    init, update = R.exact_gradient_ascent(REWARDS, reg, optax.adam(0.05))
    state, trace = R.run_solver(update, init(jnp.zeros(4)), 1500)
    np.testing.assert_allclose(jax.nn.softmax(state.logits), jnp.exp(closed()), atol=1e-6)
    assert int(state.step) == 1500
    assert float(trace[-1]) >= float(trace[0])  # ascent


def test_pm_constant_c2_does_not_move_the_optimum():
    """Remark 3.4: E_π[C₂/π] = K C₂ is constant, so any C₂ gives softmax(r)."""
    reg = lambda p: R.pm_regularizer(p, -1.0, 0.7)  # noqa: E731
    init, update = R.exact_gradient_ascent(REWARDS, reg, optax.adam(0.05))
    state, trace = R.run_solver(update, init(jnp.zeros(4)), 1500)
    np.testing.assert_allclose(
        jax.nn.softmax(state.logits), jnp.exp(R.pm_policy(REWARDS)), atol=1e-6
    )
    lse = jax.scipy.special.logsumexp(REWARDS)
    np.testing.assert_allclose(trace[-1], lse - 1.0 + 4 * 0.7, rtol=1e-9)  # log Z + C₁ + K C₂


@pytest.mark.parametrize("name", list(CASES))
def test_reinforce_loo_reaches_closed_form(name):
    reg, closed = CASES[name]
    sched = optax.exponential_decay(0.1, transition_steps=300, decay_rate=0.5)
    init, update = R.reinforce_loo(REWARDS, reg, optax.adam(sched), num_samples=64)
    state, _ = R.run_solver(update, init(jnp.zeros(4)), 2000, jax.random.key(1))
    np.testing.assert_allclose(jax.nn.softmax(state.logits), jnp.exp(closed()), atol=0.02)


def test_reinforce_loo_gradient_is_unbiased():
    reg = CASES["cpm"][0]
    logits = jnp.array([0.3, -0.2, 0.5, 0.0])
    exact = jax.grad(R.expected_objective)(logits, REWARDS, reg)

    def one(key):
        samples = jax.random.categorical(key, logits, shape=(8,))
        return jax.grad(R.reinforce_loo_surrogate)(logits, samples, REWARDS, reg)

    grads = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(0), 40000))
    se = grads.std(0) / np.sqrt(grads.shape[0])
    assert bool(jnp.all(jnp.abs(grads.mean(0) - exact) < 5 * se + 1e-6))


def test_expected_objective_hand_case_and_bad_input():
    logits = jnp.log(jnp.array([0.5, 0.5]))
    got = R.expected_objective(logits, jnp.array([1.0, 0.0]), lambda p: -jnp.log(p))
    np.testing.assert_allclose(got, 0.5 + np.log(2), rtol=1e-12)
    with pytest.raises(ValueError, match="num_samples"):
        R.reinforce_loo(REWARDS, CASES["pm"][0], optax.sgd(0.1), num_samples=1)
    with pytest.raises(ValueError, match="rewards"):
        R.exact_gradient_ascent(jnp.array([0.0, jnp.nan]), CASES["pm"][0], optax.sgd(0.1))


def test_parametric_ascent_on_a_tabular_policy_reaches_the_gibbs_optimum():
    """Any parameterisation: a prefix table over the 7 sequences of a toy language reaches
    softmax(r̃) (Gibbs variational principle), exactly and by REINFORCE-LOO."""
    from jaxpref.policies.autoregressive import sequence_logps, toy_language

    lang = toy_language(2, 2)
    shaped = jnp.asarray(np.random.default_rng(0).normal(size=len(lang.sequences)))
    logits_fn = lambda t: sequence_logps(t, lang)  # noqa: E731
    table0 = jnp.zeros((lang.num_nodes, lang.num_tokens))
    want = jnp.exp(R.gibbs_policy(shaped))
    for num_samples, steps, atol in ((None, 1500, 1e-6), (64, 1500, 0.03)):
        lr = 0.1 if num_samples is None else optax.exponential_decay(0.1, 300, 0.5)
        init, update = R.parametric_ascent(
            logits_fn, shaped, R.pm_regularizer, optax.adam(lr), num_samples=num_samples
        )
        state, trace = R.run_solver(update, init(table0), steps, jax.random.key(2))
        np.testing.assert_allclose(jnp.exp(logits_fn(state.logits)), want, atol=atol)
        assert float(trace[-1]) > float(trace[0])
    np.testing.assert_allclose(  # the optimum's value is log Σ e^{r̃}
        trace[-1], jax.scipy.special.logsumexp(shaped), atol=1e-3
    )
    init, _ = R.parametric_ascent(logits_fn, shaped[:5], R.pm_regularizer, optax.adam(0.1))
    with pytest.raises(ValueError, match="logits_fn: gives shape"):
        init(table0)

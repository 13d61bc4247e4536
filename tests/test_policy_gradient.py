"""Shaped token rewards, GAE, PPO's clipped losses and RLOO against loops in float64."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxpref.losses.policy_gradient import (
    gae_advantages,
    leave_one_out_advantages,
    ppo_policy_loss,
    ppo_value_loss,
    shaped_token_rewards,
)


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    lengths = np.array([5, 1, 3, 6])
    mask = (np.arange(6)[None] < lengths[:, None]).astype(np.float64)
    return rng.normal(size=(4, 6)) * mask, rng.normal(size=(4, 6)), mask, lengths


def test_shaped_token_rewards_put_the_clipped_score_on_the_last_token(batch):
    penalty, _, mask, lengths = batch
    scores = np.array([7.0, -0.5, -9.0, 2.0])
    got = np.asarray(
        shaped_token_rewards(
            jnp.asarray(penalty),
            jnp.asarray(scores),
            jnp.asarray(mask),
            beta=0.3,
            clip_reward_value=5.0,
        )
    )
    want = -0.3 * penalty * mask
    for i, n in enumerate(lengths):
        want[i, n - 1] += np.clip(scores[i], -5, 5)
    np.testing.assert_allclose(got, want)


def _gae_loop(r, v, lengths, gamma, lam):
    adv = np.zeros_like(r)
    for i, n in enumerate(lengths):
        last = 0.0
        for t in reversed(range(n)):
            nxt = v[i, t + 1] if t + 1 < n else 0.0
            delta = r[i, t] + gamma * nxt - v[i, t]
            last = delta + gamma * lam * last
            adv[i, t] = last
    return adv, (adv + v) * (np.arange(r.shape[1])[None] < lengths[:, None])


@pytest.mark.parametrize("gamma, lam", [(1.0, 0.95), (0.9, 0.5), (1.0, 1.0)])
def test_gae_equals_the_backward_recursion(batch, gamma, lam):
    r, v, mask, lengths = batch
    adv, ret = gae_advantages(
        jnp.asarray(r), jnp.asarray(v), jnp.asarray(mask), gamma=gamma, lam=lam
    )
    want_adv, want_ret = _gae_loop(r, v, lengths, gamma, lam)
    np.testing.assert_allclose(np.asarray(adv), want_adv, atol=1e-12)
    np.testing.assert_allclose(np.asarray(ret), want_ret, atol=1e-12)
    if gamma == lam == 1.0:  # Monte-Carlo: reward-to-go minus the value
        togo = np.flip(np.cumsum(np.flip(r * mask, 1), 1), 1)
        np.testing.assert_allclose(np.asarray(adv), (togo - v) * mask, atol=1e-12)


def test_ppo_policy_loss_clips_in_the_direction_that_matters():
    logp = jnp.log(jnp.array([[1.5, 0.5, 1.5, 0.5]]))  # ratios vs old log-prob 0
    old = jnp.zeros((1, 4))
    adv = jnp.array([[1.0, 1.0, -1.0, -1.0]])
    got = np.asarray(ppo_policy_loss(logp, old, adv, clip=0.2))
    # A>0: min(ρ, 1.2)·A is the objective; A<0: max(ρ, 0.8)·A (pessimistic bound)
    np.testing.assert_allclose(got, [[-1.2, -0.5, 1.5, 0.8]], rtol=1e-12)


def test_ppo_value_loss_is_half_the_larger_squared_error():
    v, old, ret = jnp.array([[2.0, 0.0]]), jnp.array([[0.0, 0.0]]), jnp.array([[1.0, 1.0]])
    got = np.asarray(ppo_value_loss(v, old, ret, clip=0.2))
    np.testing.assert_allclose(got, [[0.5 * max(1.0, 0.8**2), 0.5]], rtol=1e-12)


def test_leave_one_out_advantages_against_a_loop():
    r = np.random.default_rng(1).normal(size=(3, 4))
    want = np.array([[r[i, k] - np.mean(np.delete(r[i], k)) for k in range(4)] for i in range(3)])
    np.testing.assert_allclose(np.asarray(leave_one_out_advantages(jnp.asarray(r))), want)
    np.testing.assert_allclose(
        np.asarray(leave_one_out_advantages(jnp.asarray(r))).sum(1), 0, atol=1e-12
    )  # the baseline is unbiased and the sum is zero
    with pytest.raises(ValueError, match="K >= 2"):
        leave_one_out_advantages(jnp.ones((2, 1)))


def test_bad_shapes_and_values(library_checks_only):
    z = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="scores: expected shape"):
        shaped_token_rewards(z, jnp.zeros(3), z, beta=0.1)
    with pytest.raises(ValueError, match="beta"):
        shaped_token_rewards(z, jnp.zeros(2), z, beta=-1.0)
    with pytest.raises(ValueError, match="clip"):
        ppo_policy_loss(z, z, z, clip=1.5)
    with pytest.raises(ValueError, match="expected shape \\(B, T\\)"):
        gae_advantages(jnp.zeros(3), jnp.zeros(3), jnp.zeros(3))

"""dpo_loss / btl_nll / plackett_luce_nll: hand cases, identities, brute force, extremes, errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxpref.losses import LOSS_TYPES, btl_nll, dpo_loss, plackett_luce_nll


def _logps(margins, dtype=jnp.float64):
    m = jnp.asarray(margins, dtype)
    z = jnp.zeros_like(m)
    return m, z, z, z  # policy_chosen carries the whole margin


def test_hand_values():
    pc, pr, rc, rr = _logps([0.0, 2.0])
    np.testing.assert_allclose(
        dpo_loss(pc, pr, rc, rr, beta=0.5), [np.log(2), np.log1p(np.exp(-1.0))]
    )
    np.testing.assert_allclose(dpo_loss(pc, pr, rc, rr, beta=0.5, loss_type="hinge"), [1.0, 0.0])
    np.testing.assert_allclose(dpo_loss(pc, pr, rc, rr, beta=0.5, loss_type="ipo"), [1.0, 1.0])


def test_margin_uses_all_four_logps():
    # m = (1 - 0.5) - (-2 - (-1)) = 1.5
    out = dpo_loss(
        jnp.array([1.0]), jnp.array([-2.0]), jnp.array([0.5]), jnp.array([-1.0]), beta=1.0
    )
    np.testing.assert_allclose(out, -np.log(1 / (1 + np.exp(-1.5))))


def test_sigmoid_is_btl_on_implicit_rewards():
    key = jax.random.key(0)
    pc, pr, rc, rr = jax.random.normal(key, (4, 16), jnp.float64)
    beta = 0.3
    implicit_c, implicit_r = beta * (pc - rc), beta * (pr - rr)
    np.testing.assert_allclose(dpo_loss(pc, pr, rc, rr, beta=beta), btl_nll(implicit_c, implicit_r))


def test_label_smoothing_identities():
    pc, pr, rc, rr = _logps(np.linspace(-5, 5, 11))
    base = dpo_loss(pc, pr, rc, rr, beta=0.7)
    np.testing.assert_allclose(dpo_loss(pc, pr, rc, rr, beta=0.7, loss_type="robust"), base)
    eps = 0.2  # cDPO = BTL with soft label 1 - ε
    soft = btl_nll(0.7 * pc, 0.0 * pc, jnp.full(pc.shape, 1 - eps))
    np.testing.assert_allclose(dpo_loss(pc, pr, rc, rr, beta=0.7, label_smoothing=eps), soft)


def test_robust_loss_is_unbiased_under_label_flips():
    # Chowdhury et al.: E over a flip with prob ε of the rDPO loss = the clean loss.
    pc, pr, rc, rr = _logps(np.linspace(-4, 4, 9))
    eps, beta = 0.15, 0.8
    kept = dpo_loss(pc, pr, rc, rr, beta=beta, loss_type="robust", label_smoothing=eps)
    flipped = dpo_loss(pr, pc, rr, rc, beta=beta, loss_type="robust", label_smoothing=eps)
    clean = dpo_loss(pc, pr, rc, rr, beta=beta)
    np.testing.assert_allclose((1 - eps) * kept + eps * flipped, clean, rtol=1e-12)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_extreme_margins_finite_values_and_grads(loss_type, dtype):
    pc, pr, rc, rr = _logps([-1e4, -30.0, 0.0, 30.0, 1e4], dtype)
    eps = 0.1 if loss_type in ("sigmoid", "robust") else 0.0
    f = lambda x: dpo_loss(x, pr, rc, rr, beta=0.1, loss_type=loss_type, label_smoothing=eps)
    assert f(pc).dtype == dtype
    assert np.all(np.isfinite(f(pc)))
    g = jax.grad(lambda x: f(x).sum())(pc)
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_grads_and_jit(loss_type):
    pc, pr, rc, rr = jax.random.normal(jax.random.key(1), (4, 5), jnp.float64)
    eps = 0.1 if loss_type in ("sigmoid", "robust") else 0.0
    f = lambda a, b: dpo_loss(a, b, rc, rr, beta=0.5, loss_type=loss_type, label_smoothing=eps)
    check_grads(f, (pc + 3.0, pr), order=1, modes=["rev"])  # hinge: stay off its kink
    np.testing.assert_allclose(jax.jit(f)(pc, pr), f(pc, pr))


def test_plackett_luce_brute_force_normalises_and_reduces_to_btl():
    scores = jnp.array([0.3, -1.2, 2.0, 0.5])
    perms = np.array(list(itertools.permutations(range(4))))
    nll = plackett_luce_nll(jnp.broadcast_to(scores, perms.shape), jnp.asarray(perms))
    np.testing.assert_allclose(np.exp(-np.asarray(nll)).sum(), 1.0, rtol=1e-12)
    # the probability of one ranking, by hand
    s = np.asarray(scores)[[2, 0, 3, 1]]
    p = np.prod([np.exp(s[k]) / np.exp(s[k:]).sum() for k in range(4)])
    np.testing.assert_allclose(plackett_luce_nll(scores, jnp.array([2, 0, 3, 1])), -np.log(p))
    pair = jnp.array([[1.5, -0.5], [0.0, 2.0]])
    np.testing.assert_allclose(plackett_luce_nll(pair), btl_nll(pair[:, 0], pair[:, 1]))


def test_btl_labels():
    r1, r2 = jnp.array([2.0, 2.0]), jnp.array([1.0, 1.0])
    np.testing.assert_allclose(
        btl_nll(r1, r2, jnp.array([1.0, 0.0])), [np.log1p(np.exp(-1.0)), np.log1p(np.exp(1.0))]
    )


def test_bad_input_errors():
    z = jnp.zeros(3)
    with pytest.raises(ValueError, match="shape mismatch"):
        dpo_loss(z, jnp.zeros(2), z, z)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(z, z, z, z, beta=0.0)
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(z, z, z, z, loss_type="kto")
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(z, z, z, z, loss_type="robust", label_smoothing=0.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(z, z, z, z, loss_type="ipo", label_smoothing=0.1)
    with pytest.raises(ValueError, match="policy_chosen_logps.*non-finite"):
        dpo_loss(jnp.array([0.0, jnp.nan, 0.0]), z, z, z)
    with pytest.raises(ValueError, match="labels"):
        btl_nll(z, z, jnp.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="ranking"):
        plackett_luce_nll(jnp.zeros((1, 3)), jnp.array([[0, 0, 1]]))

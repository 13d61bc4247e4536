"""dpo_loss / btl_nll / plackett_luce_nll: hand cases, identities, brute force, extremes, errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxpref.losses import LOSS_TYPES, btl_nll, dpo_loss, logistic_loss, plackett_luce_nll
from jaxpref.losses.preference import SMOOTHED


def _eps(loss_type):
    return 0.1 if loss_type in SMOOTHED + ("exo_pair",) else 0.0


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
    eps = _eps(loss_type)
    f = lambda x: dpo_loss(x, pr, rc, rr, beta=0.1, loss_type=loss_type, label_smoothing=eps)
    assert f(pc).dtype == dtype
    assert np.all(np.isfinite(f(pc)))
    g = jax.grad(lambda x: f(x).sum())(pc)
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_grads_and_jit(loss_type):
    pc, pr, rc, rr = jax.random.normal(jax.random.key(1), (4, 5), jnp.float64)
    eps = _eps(loss_type)
    f = lambda a, b: dpo_loss(a, b, rc, rr, beta=0.5, loss_type=loss_type, label_smoothing=eps)
    if loss_type not in ("aot", "aot_unpaired"):  # sorting has kinks where values cross
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


def test_bad_input_errors(library_checks_only):
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


# ---- TRL's loss family, each against its paper's formula computed another way in float64 ----


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.fixture(scope="module")
def logps4():
    rng = np.random.default_rng(3)
    return tuple(rng.normal(size=12) * 2 for _ in range(4))  # pc, pr, rc, rr


def _ours(logps4, loss_type, **kw):
    return np.asarray(dpo_loss(*map(jnp.asarray, logps4), loss_type=loss_type, **kw))


def test_exo_pair_is_the_kl_between_two_point_distributions(logps4):
    pc, pr, rc, rr = logps4
    beta, eps = 0.7, 0.05
    # EXO-pref (K = 2): KL(p_θ ‖ p_label) with p_θ = softmax(β·[ρ_w, ρ_l]), p_label = [1 − ε, ε]
    logits = beta * np.stack([pc - rc, pr - rr], -1)
    q = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    p = np.array([1 - eps, eps])
    kl = (q * (np.log(q) - np.log(p))).sum(-1)
    np.testing.assert_allclose(_ours(logps4, "exo_pair", beta=beta, label_smoothing=eps), kl)
    with pytest.raises(ValueError, match="label_smoothing"):
        _ours(logps4, "exo_pair", beta=beta)  # needs ε > 0


def test_nca_pair_against_its_definition(logps4):
    pc, pr, rc, rr = logps4
    beta = 0.4
    r_w, r_l = beta * (pc - rc), beta * (pr - rr)
    # NCA: −log σ(r_w) − ½ Σ_{y ∈ {w, l}} log σ(−r_y)
    want = -np.log(_sig(r_w)) - 0.5 * (np.log(_sig(-r_w)) + np.log(_sig(-r_l)))
    np.testing.assert_allclose(_ours(logps4, "nca_pair", beta=beta), want)


def test_sppo_hard_is_squared_error_to_eta_times_centred_win_probability(logps4):
    pc, pr, rc, rr = logps4
    beta = 0.25
    eta, p_win = 1.0 / beta, np.array([1.0, 0.0])  # hard probabilities: the winner won
    rho = np.stack([pc - rc, pr - rr], -1)
    want = ((rho - eta * (p_win - 0.5)) ** 2).sum(-1)
    np.testing.assert_allclose(_ours(logps4, "sppo_hard", beta=beta), want)


def test_apo_losses_against_formulas_and_their_anchoring(logps4):
    pc, pr, rc, rr = logps4
    beta = 0.6
    rw, rl = pc - rc, pr - rr
    zero = (1 - _sig(beta * rw)) + _sig(beta * rl)
    down = _sig(beta * rw) + (1 - _sig(beta * (rw - rl)))
    np.testing.assert_allclose(_ours(logps4, "apo_zero", beta=beta), zero)
    np.testing.assert_allclose(_ours(logps4, "apo_down", beta=beta), down)
    # APO-zero raises the chosen and lowers the rejected likelihood; APO-down lowers both
    f = lambda lt: jax.grad(
        lambda a, b: dpo_loss(a, b, *map(jnp.asarray, (rc, rr)), beta=beta, loss_type=lt).sum(),
        (0, 1),
    )
    g_w, g_l = f("apo_zero")(jnp.asarray(pc), jnp.asarray(pr))
    assert np.all(g_w < 0) and np.all(g_l > 0)
    g_w, g_l = f("apo_down")(jnp.asarray(pc), jnp.asarray(pr))
    assert np.all(g_l > 0) and np.all(g_w + g_l > 0)  # lowering both sides lowers the loss


def test_discopop_blends_logistic_and_exponential(logps4):
    pc, pr, rc, rr = logps4
    beta, tau = 0.8, 0.3
    z = beta * ((pc - rc) - (pr - rr))
    w = _sig(z / tau)
    want = (1 - w) * np.log1p(np.exp(-z)) + w * np.exp(-z)
    np.testing.assert_allclose(_ours(logps4, "discopop", beta=beta, discopop_tau=tau), want)
    # τ → 0: pure logistic below 0, pure exponential above
    tiny = _ours(logps4, "discopop", beta=beta, discopop_tau=1e-6)
    np.testing.assert_allclose(tiny, np.where(z > 0, np.exp(-z), np.log1p(np.exp(-z))), rtol=1e-9)


def test_aot_matches_sorted_quantiles_and_reduces_to_dpo_for_one_pair(logps4):
    pc, pr, rc, rr = logps4
    beta, eps = 0.5, 0.1
    a = sorted(pc - pr)
    b = sorted(rc - rr)
    want = [
        -(1 - eps) * np.log(_sig(beta * (x - y))) - eps * np.log(_sig(-beta * (x - y)))
        for x, y in zip(a, b)
    ]
    np.testing.assert_allclose(_ours(logps4, "aot", beta=beta, label_smoothing=eps), want)
    a_u, b_u = sorted(pc - rc), sorted(pr - rr)
    want_u = [np.log1p(np.exp(-beta * (x - y))) for x, y in zip(a_u, b_u)]
    np.testing.assert_allclose(_ours(logps4, "aot_unpaired", beta=beta), want_u)
    one = tuple(x[:1] for x in logps4)
    np.testing.assert_allclose(_ours(one, "aot", beta=beta), _ours(one, "sigmoid", beta=beta))
    # padding rows (valid = False) neither move the real rows' quantiles nor add loss
    padded = tuple(np.concatenate([x, [1e3, -1e3]]) for x in logps4)
    valid = jnp.asarray([True] * 12 + [False] * 2)
    out = _ours(padded, "aot", beta=beta, label_smoothing=eps, valid=valid)
    np.testing.assert_allclose(out[:12], want)
    np.testing.assert_array_equal(out[12:], 0.0)


def test_length_normalised_ipo_is_trl_form(logps4):
    pc, pr, rc, rr = logps4
    beta = 0.2
    lw, ll = np.arange(1.0, 13.0), np.arange(12.0, 0.0, -1.0)
    want = ((pc - rc) / lw - (pr - rr) / ll - 1 / (2 * beta)) ** 2
    got = _ours(
        logps4, "ipo", beta=beta, chosen_lengths=jnp.asarray(lw), rejected_lengths=jnp.asarray(ll)
    )
    np.testing.assert_allclose(got, want)
    with pytest.raises(ValueError, match="chosen_lengths"):
        _ours(logps4, "sigmoid", chosen_lengths=jnp.asarray(lw), rejected_lengths=jnp.asarray(ll))


def test_logistic_loss_against_float64_bernoulli_nll():
    """The one Bernoulli-NLL primitive vs. −p log q − (1 − p) log(1 − q), q = 1/(1 + e^{−h}),
    written out in NumPy float64 (moderate |h|, where that naive form is exact enough)."""
    h = np.linspace(-12.0, 12.0, 49)[:, None]
    p = np.array([0.0, 0.1, 0.5, 0.9, 1.0])[None, :]
    q = 1.0 / (1.0 + np.exp(-h))
    want = -(p * np.log(q) + (1 - p) * np.log(1 - q))
    got = np.asarray(logistic_loss(jnp.asarray(h), jnp.asarray(p)))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    # derivative σ(h) − p in h, at h = 0 included (a relu/abs form gets −p there)
    g = jax.vmap(jax.vmap(jax.grad(logistic_loss), (None, 0)), (0, None))(h[:, 0], p[0])
    np.testing.assert_allclose(g, q - p, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_logistic_loss_large_logits_keep_the_tail(dtype):
    """Large |h|: no overflow, and the tail ℓ(h; 1) = log(1 + e^{−h}) ≈ e^{−h} survives (the
    form softplus(h) − p·h returns 0 there)."""
    h = jnp.asarray([20.0, 50.0, 1e4, -1e4], dtype)
    with_one = np.asarray(logistic_loss(h, jnp.ones_like(h)), np.float64)
    np.testing.assert_allclose(with_one[:2], np.exp(-np.array([20.0, 50.0])), rtol=1e-5)
    assert with_one[2] == 0.0 and with_one[3] == pytest.approx(1e4, rel=1e-6)
    with_zero = np.asarray(logistic_loss(h, jnp.zeros_like(h)), np.float64)
    assert with_zero[2] == pytest.approx(1e4, rel=1e-6) and with_zero[3] == 0.0
    assert np.all(np.isfinite(jax.grad(lambda x: logistic_loss(x, 0.3).sum())(h)))

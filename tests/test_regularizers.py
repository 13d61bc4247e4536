"""PM regularizers, closed-form optima, pairwise preferences, f-divergences, links.

Xiao et al., arXiv 2405.16455.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.optimize import minimize

import jaxpref.regularizers as R

REWARDS = np.array([1.0, 0.2, -0.5, 0.7])
REF = np.array([0.5, 0.3, 0.15, 0.05])


def brute_force_max(objective, k):
    """Independent float64 maximiser of objective(π) on the simplex (SciPy BFGS, log-weights)."""

    def to_simplex(z):
        w = np.exp(z - z.max())
        return w / w.sum()

    best = None
    for start in np.random.default_rng(0).normal(size=(4, k)):
        res = minimize(
            lambda z: -float(objective(to_simplex(z))),
            start,
            method="BFGS",
            options=dict(gtol=1e-10, maxiter=2000),
        )
        if best is None or res.fun < best.fun:
            best = res
    return to_simplex(best.x)


# ------------------------------------------------------------------ regularizers and the ODE
def test_pm_regularizer_hand_case():
    got = R.pm_regularizer(jnp.array([0.5, 1.0]), c1=1.0, c2=2.0)
    np.testing.assert_allclose(got, [np.log(2) + 1 + 4, 0 + 1 + 2], rtol=1e-12)


def test_response_dependent_and_kl_hand_cases():
    got = R.response_dependent_pm_regularizer(jnp.array([0.5, 0.25]), 0.0, jnp.array([1.0, 2.0]))
    np.testing.assert_allclose(got, [np.log(2) + 2, np.log(4) + 8], rtol=1e-12)
    kl = R.kl_regularizer(jnp.array([0.5]), jnp.array([0.25]), beta=0.5)
    np.testing.assert_allclose(kl, [-0.5 * np.log(2)], rtol=1e-12)


@pytest.mark.parametrize("c1,c2", [(0.0, 0.0), (1.3, -0.4), (-2.0, 3.0)])
def test_pm_regularizer_solves_ode(c1, c2):
    grid = jnp.linspace(0.05, 1.0, 9)
    res = R.pm_ode_residual(lambda p: -jnp.log(p) + c1 + c2 / p, grid)
    np.testing.assert_allclose(res, 0.0, atol=1e-9)


def test_kl_penalty_not_pm():
    """Prop. 3.7: β ≠ 1 breaks the ODE; β = 1 solves it per response but c_k varies with k."""
    grid = jnp.linspace(0.05, 1.0, 9)
    beta = 0.5
    res = R.pm_ode_residual(lambda p: -beta * jnp.log(p / 0.3), grid)
    np.testing.assert_allclose(res, (1 - beta) / grid, rtol=1e-9)
    ref = jnp.asarray(REF)
    consts = R.pm_stationarity_constant(lambda p: -jnp.log(p / ref), grid, 4)
    np.testing.assert_allclose(consts, np.broadcast_to(np.log(REF) - 1.0, (9, 4)), atol=1e-9)
    pm = R.pm_stationarity_constant(lambda p: -jnp.log(p) + 0.7 + 0.2 / p, grid, 4)
    assert np.ptp(np.asarray(pm)) < 1e-9  # one constant c' for every k and π (eq. (3.7))


@pytest.mark.parametrize("link", list(R.BUILTIN_LINKS.values()), ids=lambda g: g.name)
def test_link_regularizer_solves_generalised_ode(link):
    grid = jnp.linspace(0.1, 0.45, 6)  # inside the range of every built-in link
    gprime = lambda p: jax.grad(link.g)(link.g_inv(p))  # noqa: E731
    reg = lambda p: R.link_pm_regularizer(p, link, c1=0.3, c2=0.1)  # noqa: E731
    np.testing.assert_allclose(R.pm_ode_residual(reg, grid, gprime), 0.0, atol=1e-8)


def test_exp_link_regularizer_is_theorem_1():
    p = jnp.linspace(0.05, 1.0, 7)
    np.testing.assert_allclose(
        R.link_pm_regularizer(p, R.exp_link, c1=0.2, c2=0.3),
        R.pm_regularizer(p, 0.2 + 1.0, 0.3),
        rtol=1e-12,
    )  # G(g⁻¹(π)) = π


def test_conditional_pm_regularizer_cases():
    p, ref = jnp.array([0.5, 0.5]), jnp.array([0.4, 0.05])
    got = R.conditional_pm_regularizer(p, ref, alpha=0.1)
    np.testing.assert_allclose(got, [np.log(2), np.log(2) + np.log(0.05)], rtol=1e-12)
    # α = 1: KL with β = 1 for every response with π_ref < 1
    np.testing.assert_allclose(
        R.conditional_pm_regularizer(p, ref, 1.0), R.kl_regularizer(p, ref, 1.0), rtol=1e-12
    )


def test_token_penalty_code_variant():
    logp = jnp.log(jnp.array([[0.5, 0.25, 0.8]]))
    ref = jnp.log(jnp.array([[0.6, 0.3, 0.1]]))
    got = R.token_conditional_pm_penalty(logp, ref, 0.3, mask=jnp.array([[1.0, 1.0, 0.0]]))
    # 0.6 > 0.3: entropy term; 0.3 is not > 0.3 (strict, as in the code): KL term; masked → 0
    np.testing.assert_allclose(got, [[np.log(0.5), np.log(0.25) - np.log(0.3), 0.0]], rtol=1e-12)


# ------------------------------------------------------------------ closed forms vs brute force
def test_pm_policy_brute_force():
    obj = lambda p: np.sum(p * (REWARDS - np.log(p) + 0.4 + 0.3 / p))  # noqa: E731
    np.testing.assert_allclose(
        np.exp(R.pm_policy(jnp.asarray(REWARDS))), brute_force_max(obj, 4), atol=1e-5
    )


def test_kl_rlhf_policy_brute_force_and_uniform_identity():
    beta = 0.5
    obj = lambda p: np.sum(p * (REWARDS - beta * np.log(p / REF)))  # noqa: E731
    got = np.exp(R.kl_rlhf_policy(jnp.asarray(REWARDS), jnp.log(jnp.asarray(REF)), beta))
    np.testing.assert_allclose(got, brute_force_max(obj, 4), atol=1e-5)
    uniform = jnp.log(jnp.full(4, 0.25))
    np.testing.assert_allclose(
        R.kl_rlhf_policy(jnp.asarray(REWARDS), uniform, 1.0),
        R.pm_policy(jnp.asarray(REWARDS)),
        atol=1e-12,
    )


@pytest.mark.parametrize("alpha", [0.04, 0.1, 0.2, 0.4])
def test_conditional_pm_policy_brute_force(alpha):
    inside = REF >= alpha
    obj = lambda p: np.sum(p * (REWARDS - np.log(p) + np.where(inside, 0, np.log(REF))))  # noqa
    got = np.exp(R.conditional_pm_policy(jnp.asarray(REWARDS), jnp.log(jnp.asarray(REF)), alpha))
    np.testing.assert_allclose(got, brute_force_max(obj, 4), atol=1e-5)
    # hand formula: e^r on M, π_ref e^r off M, one normaliser
    w = np.exp(REWARDS) * np.where(inside, 1.0, REF)
    np.testing.assert_allclose(got, w / w.sum(), rtol=1e-10)
    # Theorem 4: conditional on M it is the PM policy restricted to M
    cond = got[inside] / got[inside].sum()
    np.testing.assert_allclose(
        cond, np.exp(REWARDS[inside]) / np.exp(REWARDS[inside]).sum(), rtol=1e-10
    )


def test_conditional_pm_limits():
    r, lref = jnp.asarray(REWARDS), jnp.log(jnp.asarray(REF))
    np.testing.assert_allclose(R.conditional_pm_policy(r, lref, 0.01), R.pm_policy(r), atol=1e-12)
    np.testing.assert_allclose(
        R.conditional_pm_policy(r, lref, 1.0), R.kl_rlhf_policy(r, lref, 1.0), atol=1e-12
    )


@pytest.mark.parametrize(
    "div",
    [R.reverse_kl, R.forward_kl, R.jensen_shannon, R.alpha_divergence(0.5)],
    ids=lambda d: d.name,
)
def test_f_rlhf_policy_brute_force(div):
    beta = 0.7
    f = {
        "reverse_kl": lambda u: u * np.log(u),
        "forward_kl": lambda u: -np.log(u),
        "jensen_shannon": lambda u: u * np.log(u) - (1 + u) * np.log((1 + u) / 2),
        "alpha_0.5": lambda u: (u**0.5 - 0.5 * u - 0.5) / (0.5 * -0.5),
    }[div.name]
    obj = lambda p: np.sum(p * REWARDS) - beta * np.sum(REF * f(p / REF))  # noqa: E731
    got = R.f_rlhf_policy(jnp.asarray(REWARDS), jnp.asarray(REF), beta, div)
    np.testing.assert_allclose(got, brute_force_max(obj, 4), atol=2e-5)
    np.testing.assert_allclose(
        R.f_divergence(got, jnp.asarray(REF), div),
        np.sum(REF * f(np.asarray(got) / REF)),
        rtol=1e-8,
    )


def test_f_rlhf_reverse_kl_is_prop_5_1():
    got = R.f_rlhf_policy(jnp.asarray(REWARDS), jnp.asarray(REF), 0.3, R.reverse_kl)
    want = np.exp(R.kl_rlhf_policy(jnp.asarray(REWARDS), jnp.log(jnp.asarray(REF)), 0.3))
    np.testing.assert_allclose(got, want, rtol=1e-8)


# ------------------------------------------------------------------ pairwise preferences
def test_eq_5_2_matches_two_response_policy():
    r, lref, beta = jnp.array([0.3, -0.4]), jnp.log(jnp.array([0.8, 0.2])), 0.5
    pol = R.kl_rlhf_policy(r, lref, beta)
    p_ref = R.pairwise_preference(lref[0], lref[1])
    got = R.kl_rlhf_pairwise_preference(p_ref, R.reward_preference(r[0], r[1], beta))
    np.testing.assert_allclose(got, R.pairwise_preference(pol[0], pol[1]), rtol=1e-12)
    eq53 = R.f_rlhf_pairwise_preference(p_ref, r[0], r[1], beta, R.reverse_kl)
    np.testing.assert_allclose(eq53, got, rtol=1e-12)  # (5.3) with KL reduces to (5.2)


def test_bias_and_collapse():
    p = jnp.linspace(0.05, 0.95, 19)
    np.testing.assert_allclose(R.kl_rlhf_pairwise_preference(0.5, p), p, rtol=1e-12)
    assert bool(jnp.all(R.kl_rlhf_pairwise_preference(0.2, p) < p))  # Fig. 2: underestimates
    assert bool(jnp.all(R.kl_rlhf_pairwise_preference(0.8, p) > p))
    np.testing.assert_array_equal(R.kl_rlhf_pairwise_preference(0.0, p), 0.0)  # collapse
    np.testing.assert_array_equal(R.kl_rlhf_pairwise_preference(1.0, p), 1.0)
    assert float(R.tempered_preference(0.7, 0.1)) > 0.99  # App. A.3 claim
    q, pr = jnp.array([0.3, 0.3, 0.7, 0.0, 1.0]), jnp.array([0.8, 0.2, 0.5, 0.9, 0.1])
    lim = R.preference_collapse_limit(q, pr)
    near = R.kl_rlhf_pairwise_preference(q, R.tempered_preference(pr, 0.1))
    np.testing.assert_allclose(lim, near, atol=1e-5)
    np.testing.assert_allclose(lim, [1.0, 0.0, 0.7, 0.0, 1.0])


# ------------------------------------------------------------------ PM divergence
def testpm_divergence_unchecked_hand_case_and_code_score():
    got = R.pm_divergence(jnp.log(0.5), jnp.log(0.5), jnp.log(3.0), 0.0)  # p = ½, q = ¾
    want = 0.5 * np.log(0.5 / 0.75) + 0.5 * np.log(0.5 / 0.25)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    sq = R.code_pm_squared_gap(jnp.log(0.5), jnp.log(0.25), 2.0, 0.5)
    np.testing.assert_allclose(sq, (1.5 - np.log(2)) ** 2, rtol=1e-12)


def testpm_divergence_unchecked_brute_force_and_stability():
    rng = np.random.default_rng(1)
    a, b, r1, r2 = rng.normal(size=(4, 50)) * 3
    p, q = 1 / (1 + np.exp(-(a - b))), 1 / (1 + np.exp(-(r1 - r2)))
    want = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    np.testing.assert_allclose(R.pm_divergence(a, b, r1, r2), want, rtol=1e-9, atol=1e-12)
    big = R.pm_divergence(
        jnp.array([0.0, -1e4], jnp.float32),
        jnp.array([-1e4, 0.0], jnp.float32),
        jnp.array([1.0, 2.0], jnp.float32),
        jnp.array([0.0, 0.0], jnp.float32),
    )
    assert big.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(big)))
    np.testing.assert_allclose(big, [np.log1p(np.exp(-1.0)), np.log1p(np.exp(2.0))], rtol=1e-5)
    np.testing.assert_allclose(R.pm_divergence(a, b, a - b, 0 * a), 0.0, atol=1e-12)


def testpm_divergence_unchecked_transforms():
    rng = np.random.default_rng(2)
    a, b, r1, r2 = (jnp.asarray(v) for v in rng.normal(size=(4, 6)))
    eager = R.pm_divergence(a, b, r1, r2)
    np.testing.assert_allclose(jax.jit(R.pm_divergence)(a, b, r1, r2), eager, rtol=1e-12)
    loop = [R.pm_divergence(a[i], b[i], r1[i], r2[i]) for i in range(6)]
    np.testing.assert_allclose(jax.vmap(R.pm_divergence)(a, b, r1, r2), loop, rtol=1e-12)
    check_grads(lambda x, y: R.pm_divergence(x, y, r1, r2), (a, b), order=2, modes=["rev"])


def test_closed_forms_float32_and_vmap():
    r = jnp.asarray(REWARDS, jnp.float32)
    lref = jnp.log(jnp.asarray(REF, jnp.float32))
    for fn in (
        lambda: R.kl_rlhf_policy(r, lref, 0.5),
        lambda: R.conditional_pm_policy(r, lref, 0.1),
        lambda: R.pm_policy(r),
    ):
        out = fn()
        assert out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))
    rs = jnp.asarray(np.random.default_rng(3).normal(size=(5, 4)))
    batched = jax.vmap(lambda x: R.conditional_pm_policy(x, jnp.log(jnp.asarray(REF)), 0.1))(rs)
    loop = [R.conditional_pm_policy(x, jnp.log(jnp.asarray(REF)), 0.1) for x in rs]
    np.testing.assert_allclose(batched, loop, rtol=1e-12)
    jitted = jax.jit(R.kl_rlhf_policy)(jnp.asarray(REWARDS), jnp.log(jnp.asarray(REF)), 0.5)
    np.testing.assert_allclose(
        jitted, R.kl_rlhf_policy(jnp.asarray(REWARDS), jnp.log(jnp.asarray(REF)), 0.5), rtol=1e-12
    )


# ------------------------------------------------------------------ generalised links
@pytest.mark.parametrize("link", [R.sigmoid_link, R.arctan_link, R.exp_link], ids=lambda g: g.name)
def test_link_maximiser_brute_force(link):
    r = jnp.array([0.6, 0.1, -0.3])
    for scale in (1.0, float(jnp.sum(link.g(r)))):

        def obj(p, scale=scale):
            return np.sum(
                p
                * (
                    np.asarray(r)
                    + np.asarray(R.link_pm_regularizer(jnp.asarray(p), link, scale=scale))
                )
            )

        got = R.link_pm_maximiser(r, link, scale=scale)
        np.testing.assert_allclose(got, brute_force_max(obj, 3), atol=1e-4)
    # with s = Σ g(r) the maximiser is the generalised PL policy
    np.testing.assert_allclose(
        R.link_pm_maximiser(r, link, scale=float(jnp.sum(link.g(r)))),
        R.generalized_pl_policy(r, link),
        atol=1e-10,
    )


def test_theorem_3_verbatim_matches_pl_for_exponential_links_only():
    """Eq. (3.14) with s = 1 is PM for every g = c·e^{ar} (g⁻¹(Sπ) − g⁻¹(π) is a constant), and
    not for the sigmoid link."""
    r = jnp.array([0.6, 0.1, -0.3])
    scaled_exp = R.make_link(
        "2exp(r/2)",
        lambda x: 2.0 * jnp.exp(0.5 * x),
        lambda p: 2.0 * jnp.log(0.5 * p),
        lambda x: 4.0 * jnp.exp(0.5 * x),
    )
    for link in (R.exp_link, scaled_exp):
        np.testing.assert_allclose(
            R.link_pm_maximiser(r, link), R.generalized_pl_policy(r, link), atol=1e-10
        )
    gap = jnp.max(
        jnp.abs(R.link_pm_maximiser(r, R.sigmoid_link) - R.generalized_pl_policy(r, R.sigmoid_link))
    )
    assert float(gap) > 0.02  # eq. (3.14) with s = 1 is not PM for the sigmoid link


def test_link_maximiser_is_a_distribution_or_raises():
    """Guards the bisection bracket: the old [lo − max r, hi − min r] missed the root (sums of
    0.135 and 20.08); every answer must now be a distribution satisfying the first-order
    condition g⁻¹(sπ_k) − r_k = c, and impossible cases must raise."""
    rng = np.random.default_rng(0)
    for link, scales in (
        (R.exp_link, (1.0, np.exp(-12.0), np.exp(12.0))),
        (R.sigmoid_link, (0.5, 2.5)),
        (R.arctan_link, (1.0, 5.0)),
        (R.linear_link, (40.0,)),
    ):
        for _ in range(3):
            r = jnp.asarray(
                rng.uniform(-12, 12, size=4) if link is not R.linear_link else rng.uniform(0, 3, 4)
            )
            for scale in scales:
                p = np.asarray(R.link_pm_maximiser(r, link, scale=scale))
                assert abs(p.sum() - 1) < 1e-6 and np.all(p > 0), (link.name, scale, p)
                c = np.asarray(link.g_inv(scale * jnp.asarray(p))) - np.asarray(r)
                np.testing.assert_allclose(c, c[0], atol=1e-5)
    with pytest.raises(ValueError, match="no maximiser"):  # σ < 1: Σσ(r + c) = 1 needs K > 1
        R.link_pm_maximiser(jnp.array([0.3]), R.sigmoid_link)
    with pytest.raises(ValueError, match="no maximiser"):  # linear, s = 1: some r_k + c < 0
        R.link_pm_maximiser(jnp.array([3.0, 0.1, 0.2]), R.linear_link)


def test_generalized_pl_policy_is_stable():
    """With the exp link it is a stabilised softmax: rewards [89, 0] overflow e^r in float32."""
    p = R.generalized_pl_policy(jnp.array([89.0, 0.0], jnp.float32), R.exp_link)
    assert np.all(np.isfinite(p)) and float(p[0]) == pytest.approx(1.0)
    assert float(p[1]) == pytest.approx(np.exp(-89.0), abs=1e-37)  # float32 subnormal range
    fast = R.make_link("exp2", lambda x: jnp.exp(2 * x), lambda q: 0.5 * jnp.log(q), jnp.exp)
    with pytest.raises(ValueError, match="rewards"):  # a link without a stable form: overflow
        R.generalized_pl_policy(jnp.array([1e3, 0.0], jnp.float32), fast)


def test_eq_5_3_outside_the_range_of_f_prime_raises():
    """Eq. (5.3) is undefined once r/β reaches sup f′ (log 2 for JS, 0 for forward KL)."""
    ok = R.f_rlhf_pairwise_preference(0.5, 0.6, 0.1, 1.0, R.jensen_shannon)
    assert np.isfinite(float(ok))
    with pytest.raises(ValueError, match="reward_1.*log|reward_1"):
        R.f_rlhf_pairwise_preference(0.5, 0.7, 0.1, 1.0, R.jensen_shannon)  # 0.7 ≥ log 2
    with pytest.raises(ValueError, match="reward_2"):
        R.f_rlhf_pairwise_preference(0.5, -1.0, 0.5, 1.0, R.forward_kl)
    with pytest.raises(ValueError, match="reward_1"):
        R.f_rlhf_pairwise_preference(0.5, 2.1, 0.0, 1.0, R.alpha_divergence(0.5))  # sup = 2


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: R.pm_regularizer(jnp.array([0.0, 0.5])), "probs"),
        (lambda: R.pm_regularizer(jnp.array([1.5])), "probs"),
        (lambda: R.kl_regularizer(jnp.array([0.5]), jnp.array([0.5, 0.5])), "shape"),
        (lambda: R.kl_regularizer(jnp.array([0.5]), jnp.array([0.5]), beta=0.0), "beta"),
        (lambda: R.conditional_pm_regularizer(jnp.array([0.5]), jnp.array([0.5]), 0.0), "alpha"),
        (lambda: R.conditional_pm_policy(jnp.zeros(2), jnp.log(jnp.ones(2) / 2), 1.2), "alpha"),
        (lambda: R.kl_rlhf_policy(jnp.zeros(2), jnp.array([0.1, -1.0]), 1.0), "ref_logps"),
        (lambda: R.kl_rlhf_policy(jnp.zeros(2), jnp.zeros(3), 1.0), "shape"),
        (lambda: R.kl_rlhf_policy(jnp.zeros(2), jnp.zeros(2), -1.0), "beta"),
        (lambda: R.pm_divergence(jnp.zeros(2), jnp.zeros(3), jnp.zeros(2), jnp.zeros(2)), "shape"),
        (lambda: R.token_conditional_pm_penalty(jnp.zeros(2), jnp.zeros(2), 1.5), "alpha"),
        (lambda: R.make_link("down", lambda x: jnp.exp(-x), None, None), "increasing"),
        (
            lambda: R.make_link("bump", lambda x: 1 + jnp.sin(x) ** 2, None, None, 0, 3),
            "increasing",
        ),
        (lambda: R.make_link("neg", lambda x: x, None, None, -1.0, 1.0), "> 0"),
        (
            lambda: R.link_pm_regularizer(
                jnp.array([0.5]), R.Link("down", lambda x: -x, None, None, -1.0, -0.5)
            ),
            "increasing",
        ),
        (
            lambda: R.f_rlhf_policy(jnp.zeros(2), jnp.array([0.5, 0.0]), 1.0, R.forward_kl),
            "ref_probs",
        ),
    ],
)
def test_bad_input_raises(call, match, library_checks_only):
    with pytest.raises(ValueError, match=match):
        call()


def test_gradients_and_dtypes():
    r, lref = jnp.asarray(REWARDS), jnp.log(jnp.asarray(REF))
    check_grads(lambda x: R.kl_rlhf_policy(x, lref, 0.5), (r,), order=2, modes=["fwd", "rev"])
    check_grads(lambda x: R.conditional_pm_policy(x, lref, 0.1), (r,), order=2, modes=["rev"])
    p = jnp.array([0.2, 0.7])
    check_grads(lambda q: R.pm_regularizer(q, 0.1, 0.2), (p,), order=2, modes=["rev"])
    check_grads(
        lambda q: R.conditional_pm_regularizer(q, jnp.array([0.05, 0.5]), 0.1),
        (p,),
        order=2,
        modes=["rev"],
    )
    for dt in (jnp.float32, jnp.float64):
        q = p.astype(dt)
        assert R.pm_regularizer(q).dtype == dt
        assert R.kl_regularizer(q, q[::-1], 0.5).dtype == dt
        assert R.link_pm_regularizer(q, R.sigmoid_link).dtype == dt

"""Alignment metrics of Xiao et al. (Section 6.1): exact by enumeration and by sampling."""

import ast
import pathlib
import statistics

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpref.metrics.alignment import (
    PairPreferences,
    alignment_metrics_from_samples,
    exact_alignment_metrics,
    preference_collapse,
    preference_collapse_fraction,
    reference_pair_preferences,
    reference_perplexity,
    sampled_alignment_metrics,
    win_rate,
)
from jaxpref.regularizers import pm_policy

RNG = np.random.default_rng(0)
S = 7
LOGP = np.log(RNG.dirichlet(np.ones(S)))
REF = np.log(RNG.dirichlet(np.ones(S)))
REWARDS = RNG.normal(size=S)
LENGTHS = RNG.integers(1, 6, size=S).astype(float)


def loop_reference():
    """Independent float64 double loop over all responses and pairs."""
    p = np.exp(LOGP)
    pm = 0.0
    for i in range(S):
        for j in range(S):
            a = 1 / (1 + np.exp(-(LOGP[i] - LOGP[j])))
            b = 1 / (1 + np.exp(-(REWARDS[i] - REWARDS[j])))
            pm += p[i] * p[j] * (a * np.log(a / b) + (1 - a) * np.log((1 - a) / (1 - b)))
    ppl = sum(p[i] * np.exp(LOGP[i]) ** (-1 / LENGTHS[i]) for i in range(S))
    return dict(
        pm_divergence=pm,
        length=p @ LENGTHS,
        perplexity=ppl,
        entropy=-(p @ LOGP),
        kl=p @ (LOGP - REF),
    )


def test_hand_case():
    got = exact_alignment_metrics(
        jnp.log(jnp.array([0.5, 0.5])),
        jnp.log(jnp.array([0.25, 0.75])),
        jnp.array([np.log(3.0), 0.0]),
        jnp.array([1.0, 2.0]),
    )
    # pairs (1,2) and (2,1) each with weight ¼: KL(Bern(½) ‖ Bern(¾)) = KL(Bern(½) ‖ Bern(¼))
    half = 0.5 * np.log(0.5 / 0.75) + 0.5 * np.log(0.5 / 0.25)
    np.testing.assert_allclose(got.pm_divergence, 0.5 * half, rtol=1e-12)
    np.testing.assert_allclose(got.length, 1.5)
    np.testing.assert_allclose(got.perplexity, 0.5 * 2 + 0.5 * np.sqrt(2), rtol=1e-12)
    np.testing.assert_allclose(got.entropy, np.log(2), rtol=1e-12)
    np.testing.assert_allclose(got.kl, 0.5 * np.log(2) + 0.5 * np.log(2 / 3), rtol=1e-12)


def test_exact_matches_double_loop():
    got = exact_alignment_metrics(*(jnp.asarray(v) for v in (LOGP, REF, REWARDS, LENGTHS)))
    for k, v in loop_reference().items():
        np.testing.assert_allclose(getattr(got, k), v, rtol=1e-10, err_msg=k)


def test_sampled_agrees_with_exact():
    args = tuple(jnp.asarray(v) for v in (LOGP, REF, REWARDS, LENGTHS))
    exact = exact_alignment_metrics(*args)
    est = sampled_alignment_metrics(jax.random.key(0), *args, 40000)
    for k in exact._fields:
        np.testing.assert_allclose(
            getattr(est, k), getattr(exact, k), rtol=0.03, atol=3e-3, err_msg=k
        )


def test_from_samples_hand_case_and_consistency():
    half, quarter = np.log(0.5), np.log(0.25)
    got = alignment_metrics_from_samples(
        jnp.array([half]),
        jnp.array([quarter]),
        jnp.array([quarter]),
        jnp.array([half]),
        jnp.array([1.0]),
        jnp.array([0.0]),
        jnp.array([1.0]),
        jnp.array([2.0]),
    )
    p, q = 2 / 3, 1 / (1 + np.exp(-1.0))  # σ(log 2), σ(1)
    np.testing.assert_allclose(
        got.pm_divergence, p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q)), rtol=1e-12
    )
    np.testing.assert_allclose(got.length, 1.5)
    np.testing.assert_allclose(got.perplexity, (2.0 + 2.0) / 2, rtol=1e-12)  # ½^-1, (¼)^-½
    np.testing.assert_allclose(got.entropy, (np.log(2) + np.log(4)) / 2, rtol=1e-12)
    np.testing.assert_allclose(got.kl, (np.log(2) - np.log(2)) / 2, atol=1e-12)
    with pytest.raises(ValueError, match="length_2"):
        alignment_metrics_from_samples(*(jnp.array([-1.0]),) * 6, jnp.ones(1), jnp.zeros(1))


def test_identities_and_float32():
    r = jnp.asarray(REWARDS)
    zero = exact_alignment_metrics(pm_policy(r), jnp.asarray(REF), r, jnp.asarray(LENGTHS))
    np.testing.assert_allclose(zero.pm_divergence, 0.0, atol=1e-12)  # the PM policy matches
    same = exact_alignment_metrics(jnp.asarray(REF), jnp.asarray(REF), r, jnp.asarray(LENGTHS))
    np.testing.assert_allclose(same.kl, 0.0, atol=1e-12)
    f32 = exact_alignment_metrics(
        *(jnp.asarray(v, jnp.float32) for v in (LOGP, REF, REWARDS, LENGTHS))
    )
    assert all(v.dtype == jnp.float32 for v in f32)
    np.testing.assert_allclose(f32.pm_divergence, loop_reference()["pm_divergence"], rtol=1e-4)


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(policy_logps=jnp.array([0.1, -1.0])), "policy_logps"),
        (dict(lengths=jnp.array([0.0, 1.0])), "lengths"),
        (dict(rewards=jnp.array([0.0, 1.0, 2.0])), "shape"),
    ],
)
def test_bad_input(bad, match, library_checks_only):
    half = jnp.log(jnp.array([0.5, 0.5]))
    args = dict(policy_logps=half, ref_logps=half, rewards=jnp.zeros(2), lengths=jnp.ones(2))
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        exact_alignment_metrics(**args)
    with pytest.raises(ValueError, match="num_samples"):
        sampled_alignment_metrics(jax.random.key(0), *(jnp.ones(1) * -1.0,) * 3, jnp.ones(1), 0)


def test_math_modules_import_only_math():
    root = pathlib.Path(__file__).resolve().parents[1] / "jaxpref"
    files = [*sorted((root / "regularizers").glob("*.py")), root / "metrics" / "alignment.py"]
    banned = ("flax", "orbax", "datasets", "transformers", "jaxpref.train", "jaxpref.llm")
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            assert not any(n.startswith(banned) for n in names), (f, names)


# ------------------------------------------------ preference collapse (Section 5.2, Figs. 3-4)
def _collapse_world():
    """A reference with one dominant, one middling and two rare responses (pairs near 0/1)."""
    ref = np.log(np.array([0.6, 0.3, 0.07, 0.03]))
    rewards = np.array([0.2, -0.1, 0.4, 0.0])
    return ref, rewards


def test_pair_preferences_match_a_float64_loop_and_their_pairs_follow_pi_ref():
    ref, rewards = _collapse_world()
    n = 40000
    pairs = reference_pair_preferences(jax.random.key(3), ref, rewards, n)
    first, second = np.asarray(pairs.first), np.asarray(pairs.second)
    for i in range(0, n, 97):  # every 97th pair, by the two-response ratio in float64
        a, b = first[i], second[i]
        pa, pb = np.exp(ref[a]), np.exp(ref[b])
        assert abs(float(pairs.reference[i]) - pa / (pa + pb)) < 1e-6
        bt = 1.0 / (1.0 + np.exp(rewards[b] - rewards[a]))
        assert abs(float(pairs.reward[i]) - bt) < 1e-6
    counts = np.zeros((4, 4))
    np.add.at(counts, (first, second), 1)
    joint = np.outer(np.exp(ref), np.exp(ref))  # independent draws from π_ref
    sd = np.sqrt(joint * (1 - joint) / n)
    assert np.all(np.abs(counts / n - joint) < 5 * sd + 1e-12)


def test_collapse_fraction_counts_like_a_loop_and_matches_enumeration():
    p = np.array([0.0, 0.05, 0.0499, 0.5, 0.95, 0.9501, 1.0, 0.3])
    for margin in (0.05, 0.0, 0.3, 0.4):  # strict: p = margin or 1 − margin is not extreme
        loop = sum(1 for q in p if q < margin or q > 1 - margin) / len(p)
        assert float(preference_collapse_fraction(p, margin=margin)) == pytest.approx(loop)
    assert float(preference_collapse_fraction(p)) == pytest.approx(4 / 8)  # default margin 0.05
    # over distinct pairs from π_ref: the sampled fraction estimates the enumerated one
    ref, rewards = _collapse_world()
    pairs = reference_pair_preferences(jax.random.key(5), ref, rewards, 40000)
    distinct = np.asarray(pairs.first != pairs.second)
    probs = np.exp(ref)
    for field, score in (("reference", ref), ("reward", rewards)):
        num = den = 0.0
        for a in range(4):
            for b in range(4):
                if a != b:
                    q = 1.0 / (1.0 + np.exp(score[b] - score[a]))
                    den += probs[a] * probs[b]
                    num += probs[a] * probs[b] * (q < 0.05 or q > 0.95)
        exact = num / den
        sampled = float(preference_collapse_fraction(np.asarray(getattr(pairs, field))[distinct]))
        assert abs(sampled - exact) < 5 * np.sqrt(exact * (1 - exact) / distinct.sum()) + 1e-9
    assert 0.0 == float(preference_collapse_fraction(np.asarray(pairs.reward)[distinct]))


def test_preference_collapse_keeps_distinct_pairs_in_order_and_counts_like_a_loop():
    """A hand-built draw: the pairs with y₁ = y₂ dropped (order kept) and the two fractions
    counted by a loop over what is left, for two margins; a draw of only ties is refused."""
    pairs = PairPreferences(
        first=np.array([0, 1, 2, 2, 3, 0]),
        second=np.array([1, 1, 0, 2, 1, 3]),
        reference=np.array([0.99, 0.5, 0.02, 0.5, 0.7, 0.96]),
        reward=np.array([0.55, 0.5, 0.45, 0.5, 0.04, 0.6]),
    )
    keep = [0, 2, 4, 5]  # pairs 1 and 3 are ties (y₁ = y₂)
    for margin in (0.05, 0.3):
        got = preference_collapse(pairs, margin=margin)
        np.testing.assert_array_equal(got.reference, pairs.reference[keep])
        np.testing.assert_array_equal(got.reward, pairs.reward[keep])
        for field, frac in (("reference", got.reference_fraction), ("reward", got.reward_fraction)):
            values = getattr(pairs, field)[keep]
            loop = sum(1 for q in values if q < margin or q > 1 - margin) / len(keep)
            assert float(frac) == pytest.approx(loop), (field, margin)
    ties = pairs._replace(second=pairs.first)
    with pytest.raises(ValueError, match="pairs"):
        preference_collapse(ties)


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: reference_pair_preferences(jax.random.key(0), np.zeros((2, 2)), np.zeros(4), 3),
            "ref_logps",
        ),
        (
            lambda: reference_pair_preferences(
                jax.random.key(0), np.log([0.5, 0.5]), np.zeros(3), 3
            ),
            "rewards",
        ),
        (
            lambda: reference_pair_preferences(
                jax.random.key(0), np.array([0.1, -1.0]), np.zeros(2), 3
            ),
            "ref_logps",
        ),
        (
            lambda: reference_pair_preferences(
                jax.random.key(0), np.log([0.5, 0.5]), np.zeros(2), 0
            ),
            "num_pairs",
        ),
        (lambda: preference_collapse_fraction(np.array([0.2, 1.2])), "preferences"),
        (lambda: preference_collapse_fraction(np.array([0.2, np.nan])), "preferences"),
        (lambda: preference_collapse_fraction(np.zeros((2, 2))), "preferences"),
        (lambda: preference_collapse_fraction(np.zeros(0)), "preferences"),
        (lambda: preference_collapse_fraction(np.array([0.2]), margin=0.5), "margin"),
    ],
)
def test_bad_collapse_arguments_are_named(call, match, library_checks_only):
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------ reference perplexity and win-rate
def test_reference_perplexity_matches_a_loop_and_the_perplexity_column_at_the_reference():
    p = np.exp(LOGP)
    loop = sum(p[i] * np.exp(REF[i]) ** (-1 / LENGTHS[i]) for i in range(S))
    got = reference_perplexity(*(jnp.asarray(v) for v in (LOGP, REF, LENGTHS)))
    np.testing.assert_allclose(got, loop, rtol=1e-12)
    at_ref = exact_alignment_metrics(*(jnp.asarray(v) for v in (REF, REF, REWARDS, LENGTHS)))
    np.testing.assert_allclose(
        reference_perplexity(*(jnp.asarray(v) for v in (REF, REF, LENGTHS))),
        at_ref.perplexity,
        rtol=1e-12,
    )


def test_win_rate_hand_case_and_identities():
    got = win_rate(jnp.array([1.0, 2.0, 3.0, 0.0]), jnp.array([2.0, 2.0, 1.0, -1.0]))
    w = [0.0, 0.5, 1.0, 1.0]  # loss, tie, win, win
    np.testing.assert_allclose(got.rate, 0.625, rtol=1e-12)
    np.testing.assert_allclose(got.se, statistics.stdev(w) / 2.0, rtol=1e-12)
    a, b = np.random.default_rng(3).integers(0, 4, size=(2, 50)).astype(float)  # many ties
    ab, ba = win_rate(jnp.asarray(a), jnp.asarray(b)), win_rate(jnp.asarray(b), jnp.asarray(a))
    np.testing.assert_allclose(ab.rate, (1 + np.mean(np.sign(a - b))) / 2, rtol=1e-12)
    np.testing.assert_allclose(ab.rate + ba.rate, 1.0, rtol=1e-12)  # what one wins, the other loses
    np.testing.assert_allclose(ab.se, ba.se, rtol=1e-12)
    one = win_rate(jnp.array([1.0]), jnp.array([0.0]))
    assert float(one.rate) == 1.0 and np.isnan(one.se)  # no spread from one comparison


@pytest.mark.parametrize(
    "scores,baseline,match",
    [
        (np.zeros(3), np.zeros(2), "shape"),
        (np.zeros((2, 2)), np.zeros((2, 2)), "scores"),
        (np.zeros(0), np.zeros(0), "scores"),
        (np.array([0.0, np.nan]), np.zeros(2), "scores"),
    ],
)
def test_win_rate_bad_input(scores, baseline, match, library_checks_only):
    with pytest.raises(ValueError, match=match):
        win_rate(scores, baseline)

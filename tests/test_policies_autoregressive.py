"""The tabular autoregressive policy over the enumerable toy language (jaxpref.policies
.autoregressive), the token-gated shaped reward and REINFORCE-LOO on its sequence log-probs,
each against an independent computation (a per-sequence loop, the penalty's expectation, an
enumeration of every sample tuple)."""

import itertools
import statistics

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxpref.regularizers as R
from jaxpref.policies import autoregressive as A


def _table(lang, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(scale * rng.normal(size=(lang.num_nodes, lang.num_tokens)))


def _loop_logp(table, vocab, max_len, seq):
    """log π(y) by walking the prefixes of one sequence with Python dicts (no path arrays)."""
    rows = {p: i for i, p in enumerate(_prefixes(vocab, max_len))}
    logsm = np.asarray(jax.nn.log_softmax(table, axis=-1))
    total = sum(logsm[rows[seq[:i]], seq[i]] for i in range(len(seq)))
    return total + (logsm[rows[seq], vocab] if len(seq) < max_len else 0.0)  # end token


def _prefixes(vocab, max_len):
    return [p for n in range(max_len) for p in itertools.product(range(vocab), repeat=n)]


@pytest.mark.parametrize("vocab,max_len", [(1, 1), (2, 3), (3, 2)])
def test_sequence_logps_match_a_loop_and_sum_to_one(vocab, max_len):
    lang = A.toy_language(vocab, max_len)
    assert len(lang.sequences) == sum(vocab**m for m in range(max_len + 1))
    assert len(set(lang.sequences)) == len(lang.sequences)
    assert lang.num_nodes == len(_prefixes(vocab, max_len)) and lang.num_tokens == vocab + 1
    np.testing.assert_array_equal(lang.lengths, [len(s) + 1 for s in lang.sequences])
    table = _table(lang)
    got = A.sequence_logps(table, lang)
    want = [_loop_logp(table, vocab, max_len, s) for s in lang.sequences]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jnp.sum(jnp.exp(got)), 1.0, rtol=1e-12)
    tok = A.token_logps(table, lang)
    assert np.all(np.asarray(tok)[lang.mask == 0] == 0.0)


def test_bad_input_is_refused():
    lang = A.toy_language(2, 2)
    with pytest.raises(ValueError, match="table_logits"):
        A.sequence_logps(jnp.zeros((3, 2)), lang)
    with pytest.raises(ValueError, match="max_len"):  # 2^40 sequences
        A.toy_language(2, 40)
    with pytest.raises(ValueError, match="vocab_size"):
        A.toy_language(0, 2)


def test_token_shaped_reward_reproduces_the_penalised_objective():
    """E_π[r − Σ_i c_i] with the code's per-token penalty equals E_π[r̃ − log π] for every
    policy (theory/pm_rlhf.md §6); checked by enumeration for random tables and each α."""
    lang = A.toy_language(2, 3)
    ref_tok = A.token_logps(_table(lang, 1, scale=2.0), lang)
    rewards = jnp.asarray(np.random.default_rng(2).normal(size=len(lang.sequences)))
    for alpha in (0.05, 0.3, 0.6, 1.0):
        shaped = R.token_conditional_pm_shaped_reward(rewards, ref_tok, alpha, lang.mask)
        for seed in range(3):
            tok = A.token_logps(_table(lang, 10 + seed), lang)
            logp = jnp.sum(tok, -1)
            penalty = R.token_conditional_pm_penalty(tok, ref_tok, alpha, lang.mask)
            want = jnp.sum(jnp.exp(logp) * (rewards - jnp.sum(penalty, -1)))
            got = jnp.sum(jnp.exp(logp) * (shaped - logp))
            np.testing.assert_allclose(got, want, rtol=1e-12)
    with pytest.raises(ValueError, match="rewards"):
        R.token_conditional_pm_shaped_reward(rewards[:3], ref_tok, 0.3, lang.mask)


def test_reinforce_loo_on_sequence_logps_is_unbiased_for_the_table():
    """The mean of ∇ of the REINFORCE-LOO surrogate over every (y₁, y₂) ~ π ⊗ π, weighted by
    its probability, is the exact gradient of E_π[r̃ − log π] w.r.t. the prefix table."""
    lang = A.toy_language(2, 2)  # 7 sequences: 49 ordered pairs
    table = _table(lang, 3)
    shaped = jnp.asarray(np.random.default_rng(4).normal(size=len(lang.sequences)))

    def surrogate(tab, idx):
        return R.reinforce_loo_surrogate(A.sequence_logps(tab, lang), idx, shaped, R.pm_regularizer)

    probs = np.exp(np.asarray(A.sequence_logps(table, lang)))
    pairs = jnp.array(list(itertools.product(range(len(probs)), repeat=2)))
    grads = jax.vmap(jax.grad(surrogate), in_axes=(None, 0))(table, pairs)
    weights = probs[pairs[:, 0]] * probs[pairs[:, 1]]
    mean = jnp.tensordot(jnp.asarray(weights), grads, axes=1)

    def objective(tab):
        logp = A.sequence_logps(tab, lang)
        return jnp.sum(jnp.exp(logp) * (shaped - logp))

    np.testing.assert_allclose(mean, jax.grad(objective)(table), atol=1e-12)


# ------------------------------------------------ the toy problem and its tabular optimiser
def test_length_biased_reward_hand_case_and_its_invariances(library_checks_only):
    """Three sequences by hand; a reward of the token multiset (not of positions), blind to a
    constant shift of the noise, with the asked mean and spread."""
    lang = A.toy_language(2, 1)  # (), (0,), (1,)
    got = A.length_biased_reward(lang, [1.0, -1.0], [0.0, 0.0, 0.0], length_bonus=0.5, scale=2.0)
    raw = [0.0, 1.0 + 0.5, -1.0 + 0.5]
    mu, sd = statistics.fmean(raw), statistics.pstdev(raw)
    np.testing.assert_allclose(got, [2.0 * (u - mu) / sd for u in raw], rtol=1e-12)

    lang = A.toy_language(3, 3)
    rng = np.random.default_rng(5)
    values, noise = rng.normal(size=3), rng.normal(size=len(lang.sequences))
    r = A.length_biased_reward(lang, values, noise, length_bonus=0.3, scale=0.1)
    np.testing.assert_allclose([r.mean(), r.std()], [0.0, 0.1], atol=1e-12)
    shifted = A.length_biased_reward(lang, values, noise + 4.0, length_bonus=0.3, scale=0.1)
    np.testing.assert_allclose(shifted, r, atol=1e-12)
    flat = A.length_biased_reward(lang, values, 0 * noise, length_bonus=0.3, scale=0.1)
    where = {s: k for k, s in enumerate(lang.sequences)}
    for s in lang.sequences:  # a permutation of the content scores the same without noise
        np.testing.assert_allclose(flat[where[tuple(sorted(s))]], flat[where[s]], atol=1e-12)
    longer = A.length_biased_reward(lang, values, 0 * noise, length_bonus=50.0, scale=1.0)
    by_len = [longer[lang.lengths == m] for m in (1, 2, 3, 4)]
    assert all(a.max() < b.min() for a, b in itertools.pairwise(by_len))  # the bonus wins
    for kwargs, match in (
        (dict(token_values=values[:2]), "token_values"),
        (dict(noise=noise[:3]), "noise"),
        (dict(scale=0.0), "scale"),
    ):
        args = dict(token_values=values, noise=noise, length_bonus=0.3, scale=0.1) | kwargs
        with pytest.raises(ValueError, match=match):
            A.length_biased_reward(lang, **args)
    with pytest.raises(ValueError, match="constant"):
        A.length_biased_reward(A.toy_language(1, 1), [0.0], [0.0, 0.0], length_bonus=0, scale=1)


def test_toy_problem_is_the_documented_draw():
    """The draws in the documented order from default_rng(seed); π_ref by a prefix loop."""
    prob = A.toy_problem(2, 3, seed=7, ref_temperature=2.0, reward_scale=0.2)
    rng = np.random.default_rng(7)
    table = rng.normal(size=(prob.lang.num_nodes, prob.lang.num_tokens))
    values, noise = rng.normal(size=2), rng.normal(size=len(prob.lang.sequences))
    np.testing.assert_allclose(prob.ref_table, table / 2.0, rtol=1e-12)
    want = A.length_biased_reward(prob.lang, values, noise, length_bonus=0.3, scale=0.2)
    np.testing.assert_allclose(prob.reward, want, rtol=1e-12)
    loop = [_loop_logp(table / 2.0, 2, 3, s) for s in prob.lang.sequences]
    np.testing.assert_allclose(prob.ref_logps, loop, rtol=1e-12)
    np.testing.assert_allclose(jnp.sum(prob.ref_token_logps, -1), prob.ref_logps, rtol=1e-12)
    np.testing.assert_allclose(jnp.sum(jnp.exp(prob.ref_logps)), 1.0, rtol=1e-12)


@pytest.fixture(scope="module")
def optimised():
    lang = A.toy_language(2, 2)
    shaped = jnp.asarray(np.random.default_rng(0).normal(size=(3, len(lang.sequences))))
    table0 = _table(lang, 1)
    key = jax.random.key(3)
    exact = A.optimise_table(shaped, table0, lang, optax.adam(0.1), num_steps=300, key=key)
    sampled = A.optimise_table(
        shaped, table0, lang, optax.adam(0.05), num_steps=20, key=key, num_samples=8
    )
    return lang, shaped, table0, key, exact, sampled


def test_optimise_table_reaches_the_gibbs_optimum_of_each_reward(optimised):
    """E_π[r̃ − log π] is maximised by softmax(r̃) over all sequence distributions (Gibbs)."""
    lang, shaped, _, _, exact, _ = optimised
    assert exact.shape == (3, lang.num_nodes, lang.num_tokens)
    for i in range(3):
        got = jnp.exp(A.sequence_logps(exact[i], lang))
        np.testing.assert_allclose(got, jnp.exp(R.gibbs_policy(shaped[i])), atol=1e-6)


def test_optimise_table_runs_equal_one_parametric_ascent_each(optimised):
    """A batched run (exact and REINFORCE-LOO; the middle one, so a mix-up of runs shows) is
    the single run of ``parametric_ascent`` on ``sequence_logps`` with the same step keys."""
    lang, shaped, table0, key, exact, sampled = optimised
    for tables, lr, steps, n in ((exact, 0.1, 300, None), (sampled, 0.05, 20, 8)):
        init, update = R.parametric_ascent(
            lambda t: A.sequence_logps(t, lang),
            shaped[1],
            R.pm_regularizer,
            optax.adam(lr),
            num_samples=n,
        )
        state, _ = R.run_solver(update, init(table0), steps, key)
        np.testing.assert_allclose(tables[1], state.logits, rtol=1e-9, atol=1e-9)
        assert not np.allclose(tables[0], tables[1])


def test_optimise_table_refuses_bad_arguments(library_checks_only):
    lang = A.toy_language(2, 2)
    table0, opt, key = _table(lang), optax.adam(0.1), jax.random.key(0)
    for shaped, kwargs, match in (
        (jnp.zeros((2, 5)), {}, "shaped_rewards"),
        (jnp.zeros(7), {}, "shaped_rewards"),
        (jnp.zeros((2, 7)), dict(num_samples=1), "num_samples"),
        (jnp.zeros((2, 7)), dict(num_steps=0), "num_steps"),
        (jnp.full((2, 7), jnp.nan), {}, "shaped_rewards"),
    ):
        args = dict(num_steps=3, key=key) | kwargs
        with pytest.raises(ValueError, match=match):
            A.optimise_table(shaped, table0, lang, opt, **args)
    with pytest.raises(ValueError, match="table_logits"):
        A.optimise_table(jnp.zeros((2, 7)), table0[:2], lang, opt, num_steps=3, key=key)


def test_rlhf_shaped_rewards_match_a_per_sequence_loop():
    """Each method's r̃ rebuilt from π_ref's table by walking every sequence's prefixes in
    float64 NumPy (sequence gate on the product of the token probabilities, token gate per
    token); the token gate at α = 1 is KL RLHF's r̃; each Gibbs optimum softmax(r̃) maximises
    E_π[r̃ − log π] against random tables."""
    prob = A.toy_problem(2, 3, seed=4, ref_temperature=0.5)
    beta, seq_a, tok_a = 0.5, (0.01, 0.05), (0.1, 0.3, 1.0)
    got = A.rlhf_shaped_rewards(prob, beta, seq_alphas=seq_a, token_alphas=tok_a)
    want_keys = ["KL RLHF", "PM RLHF", "cPM seq α=0.01", "cPM seq α=0.05"]
    assert list(got) == want_keys + ["cPM token α=0.1", "cPM token α=0.3", "cPM token α=1"]
    table = np.asarray(prob.ref_table, np.float64)
    probs = np.exp(table - table.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    rows = {p: i for i, p in enumerate(_prefixes(2, 3))}
    r = np.asarray(prob.reward, np.float64) / beta
    for k, seq in enumerate(prob.lang.sequences):
        path = [(seq[:i], seq[i]) for i in range(len(seq))]
        path += [(seq, 2)] if len(seq) < 3 else []  # the end token unless forced
        tok = [probs[rows[p], t] for p, t in path]
        ref_y = np.prod(tok)
        want = {"KL RLHF": r[k] + np.log(ref_y), "PM RLHF": r[k]}
        for a in seq_a:
            want[f"cPM seq α={a:g}"] = r[k] + (np.log(ref_y) if ref_y < a else 0.0)
        for a in tok_a:
            want[f"cPM token α={a:g}"] = r[k] + sum(np.log(q) for q in tok if q <= a)
        for name, value in want.items():
            np.testing.assert_allclose(got[name][k], value, rtol=1e-10, atol=1e-12, err_msg=name)
    np.testing.assert_array_equal(got["cPM token α=1"], got["KL RLHF"])
    others = [A.sequence_logps(_table(prob.lang, seed), prob.lang) for seed in range(3)]
    for shaped in got.values():
        value = lambda logp, s=shaped: float(jnp.sum(jnp.exp(logp) * (s - logp)))  # noqa: E731
        assert all(value(R.gibbs_policy(shaped)) > value(o) for o in others)
    with pytest.raises(ValueError, match="beta"):
        A.rlhf_shaped_rewards(prob, 0.0)

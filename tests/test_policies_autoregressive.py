"""The tabular autoregressive policy over the enumerable toy language (jaxpref.policies
.autoregressive), the token-gated shaped reward and REINFORCE-LOO on its sequence log-probs,
each against an independent computation (a per-sequence loop, the penalty's expectation, an
enumeration of every sample tuple)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
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

"""``train.alignment_eval``: two tiny Llamas (the golden checkpoints) answer the same prompts
greedily and a reward model judges them; each row of a batch must get the answer and scores its
prompt gets in a batch of its own, and a policy ties with itself. The human-response perplexity
equals exp of the mean completion-token NLL computed row by row from the full logits, and every
column of ``alignment_columns`` equals its float64 NumPy computation from the same samples."""

import pathlib
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpref import llm
from jaxpref.data.tokenize import EncodedCompletion
from jaxpref.metrics.alignment import win_rate
from jaxpref.train.alignment_eval import alignment_columns, greedy_comparison, human_perplexity
from jaxpref.train.mesh import make_mesh
from jaxpref.train.rollout import EncodedPrompt, rollout_step_key, sample_and_score

GOLDEN = pathlib.Path(__file__).parent / "golden"
TOKENS = types.SimpleNamespace(pad_token_id=0, eos_token_id=2)  # the golden configs' ids


@pytest.fixture(scope="module")
def setup():
    policy, baseline = (
        llm.from_pretrained(GOLDEN / "llama2"),
        llm.from_pretrained(GOLDEN / "llama3"),
    )
    judge = llm.reward_model_from_pretrained(GOLDEN / "reward_llama")
    ids = ([5, 17, 33, 8, 41, 9, 60], [12, 70, 3], [88, 14, 25, 51, 7])  # three lengths
    prompts = [EncodedPrompt(list(p), None, i) for i, p in enumerate(ids)]
    return policy, baseline, judge, prompts


def _compare(policy, baseline, judge, prompts):
    return greedy_comparison(
        policy, baseline, judge, prompts, tokenizer=TOKENS, max_new_tokens=4, seed=0
    )


def test_each_row_is_its_prompts_own(setup):
    """A row mix-up (answers, scores or lengths attached to the wrong prompt) fails this: each
    prompt alone, three times over (the same program shape), gives row i's values."""
    policy, baseline, judge, prompts = setup
    both = _compare(policy, baseline, judge, prompts)
    for i, prompt in enumerate(prompts):
        alone = _compare(policy, baseline, judge, [prompt] * 3)
        np.testing.assert_allclose(both.scores[i], alone.scores, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(both.baseline_scores[i], alone.baseline_scores, atol=1e-6)
        assert (alone.lengths == both.lengths[i]).all()
        assert (alone.identical == both.identical[i]).all()
    assert not both.identical.all()  # two different models answer differently
    want = win_rate(both.scores, both.baseline_scores)  # the policy's, not the baseline's
    assert float(both.win.rate) == float(want.rate) and float(both.win.se) == float(want.se)


def test_a_policy_ties_with_itself(setup):
    policy, _, judge, prompts = setup
    same = _compare(policy, policy, judge, prompts)
    assert same.identical.all()
    np.testing.assert_array_equal(same.scores, same.baseline_scores)
    assert float(same.win.rate) == 0.5 and float(same.win.se) == 0.0
    with pytest.raises(ValueError, match="prompts"):
        _compare(policy, policy, judge, [])


HUMAN = [
    EncodedCompletion([1, 5, 17], [33, 8, 41]),
    EncodedCompletion([1, 12], [70, 3, 9, 60, 14]),
    EncodedCompletion([1, 88, 14, 25, 51], [7]),
]


def _logp64(model, ids, mask):
    """(B, L−1, V) float64 log-probabilities of token t + 1 given tokens ≤ t."""
    logits = np.asarray(model(jnp.asarray(ids), jnp.asarray(mask)), np.float64)[:, :-1]
    return logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)


def test_human_perplexity_is_the_exp_mean_completion_nll(setup):
    """Row by row from the full logits (float64 NumPy log-softmax): a batch whose rows were
    padded, shifted or masked wrongly, or a mean over the wrong tokens, fails this; so does a
    result that depends on how the rows are batched (the last batch is partly empty)."""
    policy, human = setup[0], HUMAN
    nll, count = 0.0, 0
    for row in human:
        ids = np.array([row.prompt + row.completion])
        logits = np.asarray(policy(ids), np.float64)[0]
        logp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
        for t in range(len(row.prompt), ids.shape[1]):  # token t given tokens < t
            nll -= logp[t - 1, ids[0, t]]
            count += 1
    want = np.exp(nll / count)
    mesh = make_mesh(devices=jax.devices()[:1])
    for batch_rows in (1, 2, 4):
        got = human_perplexity(policy, human, TOKENS, mesh, batch_rows)
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_alignment_columns_are_their_float64_definitions(setup):
    """Each column recomputed in float64 NumPy from the full logits of the same samples (drawn
    again with the key of the function's one batch): a pair made of two prompts' samples, a
    padding row counted, a mean over the wrong tokens, a KL or entropy taken at the wrong
    position, or the reward scale β applied to the wrong term fails this. Four rows a batch for
    three prompts leaves one padding pair, which must be dropped."""
    policy, ref, judge, prompts = setup
    oracle = types.SimpleNamespace(score=lambda ids, mask, _lengths: judge(ids, mask))
    sampling = types.SimpleNamespace(max_new_tokens=5, temperature=1.5, top_k=0, top_p=1.0)
    mesh, beta, seed = make_mesh(devices=jax.devices()[:1]), 0.5, 3
    kw = dict(beta=beta, sampling=sampling, tokenizer=TOKENS, mesh=mesh, seed=seed)
    got = alignment_columns(policy, ref, oracle, prompts, HUMAN, batch_rows=4, **kw)

    idx = np.array([0, 0, 1, 1, 2, 2, -1, -1])  # the function's one batch: each prompt twice
    key = rollout_step_key(seed, 0)
    samples, scores, _ = sample_and_score(
        policy, prompts, idx, key, config=sampling, tokenizer=TOKENS, oracle=oracle, mesh=mesh
    )
    ids, mask = np.asarray(samples.tokens)[:6], np.asarray(samples.mask)[:6]
    counted = np.asarray(samples.response_mask)[:6, 1:].astype(bool)  # predicts token t + 1
    assert counted.sum(1).min() >= 1
    logq, logr = _logp64(policy, ids, mask), _logp64(ref, ids, mask)
    tok = np.take_along_axis(logq, ids[:, 1:, None], axis=-1)[..., 0]
    ref_tok = np.take_along_axis(logr, ids[:, 1:, None], axis=-1)[..., 0]
    logp, ref_logp = (np.where(counted, t, 0.0).sum(1) for t in (tok, ref_tok))
    lengths = counted.sum(1)
    q = np.exp(logq)
    entropy = np.where(counted, -(q * logq).sum(-1), 0.0).sum()
    kl = np.where(counted, (q * (logq - logr)).sum(-1), 0.0).sum()
    s = np.asarray(scores, np.float64)[:6]
    dl, ds = logp[0::2] - logp[1::2], (s[0::2] - s[1::2]) / beta  # the pairs are one prompt's
    p, r = 1 / (1 + np.exp(-dl)), 1 / (1 + np.exp(-ds))
    want = {
        "pm_divergence": np.mean(p * np.log(p / r) + (1 - p) * np.log((1 - p) / (1 - r))),
        "pm_squared_gap": np.mean((beta * ds - dl) ** 2),
        "length": lengths.mean(),
        "perplexity": human_perplexity(policy, HUMAN, TOKENS, mesh, 4),
        "sample_perplexity": np.mean(np.exp(-logp / lengths)),
        "entropy": entropy / lengths.sum(),
        "kl": kl / lengths.sum(),
        "score": s.mean(),
        "kl_sampled": np.mean(logp - ref_logp),
    }
    assert set(got) == set(want)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=2e-4, atol=1e-6, err_msg=name)
    assert got["pm_divergence"] > 1e-4 and got["kl"] > 1e-4  # the samples do differ

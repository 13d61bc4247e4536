"""``train.alignment_eval``: two tiny Llamas (the golden checkpoints) answer the same prompts
greedily and a reward model judges them; each row of a batch must get the answer and scores its
prompt gets in a batch of its own, and a policy ties with itself. The human-response perplexity
equals exp of the mean completion-token NLL computed row by row from the full logits."""

import pathlib
import types

import jax
import numpy as np
import pytest

from jaxpref import llm
from jaxpref.data.tokenize import EncodedCompletion
from jaxpref.metrics.alignment import win_rate
from jaxpref.train.alignment_eval import greedy_comparison, human_perplexity
from jaxpref.train.mesh import make_mesh
from jaxpref.train.rollout import EncodedPrompt

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


def test_human_perplexity_is_the_exp_mean_completion_nll(setup):
    """Row by row from the full logits (float64 NumPy log-softmax): a batch whose rows were
    padded, shifted or masked wrongly, or a mean over the wrong tokens, fails this; so does a
    result that depends on how the rows are batched (the last batch is partly empty)."""
    policy = setup[0]
    human = [
        EncodedCompletion([1, 5, 17], [33, 8, 41]),
        EncodedCompletion([1, 12], [70, 3, 9, 60, 14]),
        EncodedCompletion([1, 88, 14, 25, 51], [7]),
    ]
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

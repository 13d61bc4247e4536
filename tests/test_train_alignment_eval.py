"""``train.alignment_eval.greedy_comparison``: two tiny Llamas (the golden checkpoints) answer
the same prompts greedily and a reward model judges them; each row of a batch must get the
answer and scores its prompt gets in a batch of its own, and a policy ties with itself."""

import pathlib
import types

import numpy as np
import pytest

from jaxpref import llm
from jaxpref.metrics.alignment import win_rate
from jaxpref.train.alignment_eval import greedy_comparison
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

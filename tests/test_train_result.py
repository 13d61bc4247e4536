"""``TrainResult.summary`` / ``first_eval`` and ``GreedyComparison.summary``: the JSON records
the LLM experiments write, checked on hand-built results (no model is trained)."""

import math

import numpy as np

from jaxpref.metrics.alignment import win_rate
from jaxpref.train import TrainResult
from jaxpref.train.alignment_eval import GreedyComparison
from jaxpref.train.fit import FitResult


def _result(history):
    fit = FitResult(state=None, step=4, history=history, final_eval={"eval_loss": 1.5})
    return TrainResult("out", None, fit, {"train": {"rows": {"kept": 3}}})


def test_train_result_summary_finds_the_step_zero_row():
    rows = [{"step": 2, "loss": 2.0}, {"step": 0, "eval_loss": 3.0}, {"step": 4, "eval_loss": 1.5}]
    got = _result(rows).summary()
    assert got == {
        "history": rows,
        "final_eval": {"eval_loss": 1.5},
        "first_eval": {"step": 0, "eval_loss": 3.0},  # not the first row logged
        "data_report": {"train": {"rows": {"kept": 3}}},
    }
    assert _result(rows[:1]).first_eval is None  # no eval before the first update


def test_greedy_comparison_summary_by_hand():
    """Three prompts: a win, a tie (½) and a loss; means and the tie rule by hand."""
    s, b = np.array([1.0, 0.5, -1.0]), np.array([0.0, 0.5, 2.0])
    lengths, base_lengths = np.array([3, 4, 8]), np.array([5, 4, 6])
    same = np.array([False, True, False])
    c = GreedyComparison(s, b, lengths, base_lengths, same, win_rate(s, b))
    got = c.summary("dpo", "sft")
    assert list(got["mean_reward"]) == ["sft", "dpo"]  # the baseline first
    assert got["num_prompts"] == 3 and got["identical_answers"] == 1 / 3
    assert got["mean_reward"] == {"sft": 2.5 / 3, "dpo": 0.5 / 3}
    assert got["mean_length"] == {"sft": 5.0, "dpo": 5.0}
    w = [1.0, 0.5, 0.0]
    assert got["dpo_win_rate"] == 0.5
    se = math.sqrt(sum((x - 0.5) ** 2 for x in w) / 2) / math.sqrt(3)  # ddof = 1
    assert math.isclose(got["win_rate_se"], se, rel_tol=1e-6)
    one = GreedyComparison(*(x[:1] for x in c[:5]), win_rate(s[:1], b[:1])).summary()
    assert one["policy_win_rate"] == 1.0 and math.isnan(one["win_rate_se"])

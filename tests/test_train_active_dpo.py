"""``jaxpref train active-dpo`` (ActiveDPO's Algorithm 1) end to end on a tiny model with every
selector, and its bad input."""

import json

import llm_task
import numpy as np
import pytest

from jaxpref import llm
from jaxpref.train import ActiveDPOConfig, train


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """The synthetic task, a random tiny policy and a random reward-model oracle (the loop's
    machinery is under test, not the oracle's quality)."""
    root = tmp_path_factory.mktemp("active_task")
    data = llm_task.write_dataset(root / "data", n_train=32, n_test=4)
    base = llm_task.make_model_dir(root / "base")
    rm = llm.reward_model_from_pretrained(base, seed=3)
    llm.save_reward_model(rm, root / "rm")
    llm_task.make_tokenizer().save_pretrained(str(root / "rm"))
    return {"data": data, "base": base, "rm": root / "rm"}


def _config(task, out, **kw):
    base = dict(
        model_name_or_path=str(task["base"]),
        reward_model_path=str(task["rm"]),
        dataset_name=str(task["data"]),
        output_dir=str(out),
        max_new_tokens=4,
        max_prompt_length=12,
        per_device_train_batch_size=1,
        rounds=2,
        budget=4,
        prompts_per_round=4,
        epochs_per_round=2,
        projection_dim=64,
        lora_r=2,
        save_steps=0,
        disable_tqdm=True,
        logging_steps=1,
        report_to="none",
    )
    return ActiveDPOConfig(**{**base, **kw})


def _rounds(out):
    return [json.loads(line) for line in (out / "active_rounds.jsonl").read_text().splitlines()]


def test_active_dpo_runs_rounds_selects_labels_and_trains(task, tmp_path):
    out = tmp_path / "run"
    result = train(_config(task, out), log=lambda _: None)
    rounds = _rounds(out)
    assert [r["round"] for r in rounds] == [1, 2]
    for r in rounds:
        assert len(set(r["picks"])) == 4 and set(r["labels"]) <= {0.0, 1.0}
        assert r["active/pool_pairs"] + r["active/identical_dropped"] == 12  # 4 prompts × C(3, 2)
        # greedy picks: the uncertainty of each pick never increases within the batch (Eq. 4)
        assert all(a >= b - 1e-6 for a, b in zip(r["values"], r["values"][1:]))
    assert rounds[1]["active/labelled"] == 8
    rows = 8  # 8 CPU devices × 1 row; ⌈2 epochs × 4 pairs / 8⌉ = 1 step per round
    train_rows = [h for h in result.history if "loss" in h]
    assert len(train_rows) == 2 * int(np.ceil(2 * 4 / rows))
    assert all(np.isfinite(h["loss"]) for h in train_rows)
    assert np.isfinite(result.final_eval["eval_score"])


@pytest.mark.slow
@pytest.mark.parametrize("selector", ["adpo_plus", "apo", "aplp", "uniform"])
def test_rival_selectors_run_on_the_same_loop(task, tmp_path, selector):
    out = tmp_path / selector
    result = train(_config(task, out, selector=selector), log=lambda _: None)
    rounds = _rounds(out)
    assert [len(set(r["picks"])) for r in rounds] == [4, 4]
    if selector == "apo":  # one fixed pool: no pair is picked twice across rounds
        assert not set(rounds[0]["picks"]) & set(rounds[1]["picks"])
        assert rounds[0]["active/pool_pairs"] + rounds[0]["active/identical_dropped"] == 24
    assert np.isfinite(result.final_eval["eval_score"])


def test_bad_input_names_the_option(task, tmp_path):
    with pytest.raises(ValueError, match="budget"):
        _config(task, tmp_path, budget=13)  # 4 prompts × 3 pairs = 12
    with pytest.raises(ValueError, match="design_lambda"):
        _config(task, tmp_path, design_lambda=0.0)
    with pytest.raises(ValueError, match="projection_dim"):
        _config(task, tmp_path, projection_dim=0)
    with pytest.raises(ValueError, match="use_peft"):
        _config(task, tmp_path, use_peft=False)
    with pytest.raises(ValueError, match="selector"):
        _config(task, tmp_path, selector="bald")
    with pytest.raises(ValueError, match="budget"):
        _config(task, tmp_path, selector="apo", rounds=2, budget=13)  # 26 > 2 × 4 × 3

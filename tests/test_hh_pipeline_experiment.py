"""The HH pipeline (SFT -> reward -> DPO) at test scale: the machinery, not a winner."""

import json

from jaxpref.cli import run_experiment
from jaxpref.llm import from_pretrained, reward_model_from_pretrained


def test_hh_pipeline_runs_every_stage_and_reports(tmp_path):
    results, out = run_experiment("hh_pipeline", "test", tmp_path / "run", quiet=True)
    s = results["stages"]
    assert results["data"] == {**results["data"], "train_rows": 96, "eval_rows": 32}
    assert s["sft"]["final_eval"]["eval_loss"] < s["sft"]["first_eval"]["eval_loss"]
    assert s["dpo"]["first_eval"]["eval_rewards/margins"] == 0.0  # the policy is its reference
    assert s["dpo"]["final_eval"]["eval_rewards/margins"] != 0.0
    for stage in ("sft", "reward", "dpo"):
        assert "malformed" in s[stage]["data_report"]["train"]["rows"]
        assert (out / stage / "model.safetensors").exists()
    from_pretrained(out / "dpo")
    reward_model_from_pretrained(out / "reward")
    g = results["generation"]
    assert g["num_prompts"] == 8 and 0.0 <= g["dpo_win_rate"] <= 1.0
    assert json.loads((out / "results.json").read_text())["generation"] == g
    assert (out / "hh_pipeline_curves.png").stat().st_size > 10_000

"""robust_sail_llm and pbpo_llm at test scale: the machinery, not a winner (SFT -> reward model
-> online runs take minutes on a loaded 2-core CPU, hence ``slow``)."""

import numpy as np
import pytest

from jaxpref.cli import run_experiment


@pytest.mark.slow
def test_robust_sail_llm_machinery(tmp_path):
    results = run_experiment("robust_sail_llm", "test", tmp_path / "run", quiet=True)[0]
    runs = {r["rho"]: r for r in results["runs"]}
    assert runs[0.0]["loss"] == runs[None]["loss"]  # ρ = 0 is nominal online DPO exactly
    assert runs[0.0]["true_oracle"] == runs[None]["true_oracle"]
    assert all(e == 0.0 for e in runs[0.0]["excess"])
    assert all(e >= 0.0 for e in runs[0.3]["excess"]) and max(runs[0.3]["excess"]) > 0
    for r in results["runs"]:
        assert 0.0 <= r["true_oracle"]["win_rate"] <= 1.0
        assert np.isfinite(r["true_oracle"]["kl"]) and np.isfinite(r["true_oracle"]["reward"])
    cov = results["set_coverage"]
    assert 0.0 <= cov["0.0"] <= cov["0.3"] <= 1.0  # U_ρ grows with ρ
    assert (tmp_path / "run" / "robust_sail_llm.png").exists()


@pytest.mark.slow
def test_pbpo_llm_machinery(tmp_path):
    results = run_experiment("pbpo_llm", "test", tmp_path / "run", quiet=True)[0]
    cfg = results["config"]
    episodes, m = cfg["num_episodes"], cfg["pairs_per_episode"]
    for r in results["runs"]:
        assert [p["pairs"] for p in r["curve"]][-1] == episodes * m  # same labelling budget
        assert 0.0 <= r["true_oracle"]["win_rate"] <= 1.0
        if r["arm"] == "online_dpo":
            continue
        assert [row["confidence/pairs"] for row in r["train"]] == [
            m * (1 + s // cfg["episode_steps"]) for s in range(len(r["train"]))
        ]
        explored = [row for row in r["train"] if "explore/bonus" in row]
        assert len(explored) == episodes
        if r["arm"] != "uniform":  # best-of-N on the bonus beats the candidates' mean
            assert all(row["explore/bonus"] >= row["explore/bonus_all"] for row in explored)
    assert (tmp_path / "run" / "pbpo_llm.png").exists()

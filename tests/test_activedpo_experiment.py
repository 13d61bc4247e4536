"""The ActiveDPO experiment at test scale: the machinery on the real model's features (projection
= the materialised matrix, low-rank picks = brute-force log-det greedy, scores = the direct V⁻¹)
and one reward-vs-labels curve per selector and seed. Not a winner. Marked slow: SFT, a reward
model and two active runs take minutes (the same checks run fast in tests/test_activedpo.py and
tests/test_train_active_dpo.py)."""

import numpy as np
import pytest

from jaxpref.cli import run_experiment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("activedpo") / "run"
    return run_experiment("activedpo", "test", out, quiet=True)[0]


def test_machinery_on_the_real_features(results):
    c = results["checks"]
    assert c["lora_parameters"] > results["config"]["projection_dim"]
    assert c["projection_max_abs_error"] <= 1e-5 * max(1.0, c["projection_scale"])
    assert c["picks"] == c["brute_force_picks"]
    assert c["scores_max_rel_error"] < 1e-6


def test_one_curve_per_selector_and_seed(results):
    cfg = results["config"]
    assert len(results["curves"]) == len(cfg["selectors"]) * len(cfg["seeds"])
    for curve in results["curves"]:
        xs = [x for x, _ in curve["points"]]
        assert xs == [cfg["budget"] * t for t in range(cfg["rounds"] + 1)]
        assert all(np.isfinite(y) for _, y in curve["points"])
    start = {c["points"][0][1] for c in results["curves"] if c["seed"] == cfg["seeds"][0]}
    assert len(start) == 1  # every selector starts from the same SFT policy and eval key

"""PM RLHF's Table 2 pipeline on a language model at test scale: what must hold there."""

import pytest

from jaxpref.cli import run_experiment
from jaxpref.experiments.pm_rlhf_llm import COLUMNS


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_experiment("pm_rlhf_llm", "test", tmp_path_factory.mktemp("pm") / "run", quiet=True)[
        0
    ]


def _run(results, method, alpha=None):
    return next(r for r in results["runs"] if r["method"] == method and r["alpha"] == alpha)


def test_token_gate_at_alpha_one_is_kl_rlhf_exactly(results):
    kl, gate = _run(results, "kl"), _run(results, "cond_pm_token", 1.0)
    assert gate["columns"] == kl["columns"]
    assert gate["last_train_row"] == {**kl["last_train_row"]}


def test_unconditional_pm_has_the_largest_entropy(results):
    pm = _run(results, "pm")["columns"]["entropy"]
    others = [r["columns"]["entropy"] for r in results["runs"] if r["method"] != "pm"]
    assert pm > max(others)


def test_every_column_under_both_definitions(results):
    for r in results["runs"]:
        assert set(COLUMNS) <= set(r["columns"])
        assert r["columns"]["pm_divergence"] >= 0 and r["columns"]["pm_squared_gap"] >= 0
        assert 1 <= r["columns"]["length"] <= results["config"]["max_new_tokens"]
    assert results["data"]["sft"] * 2 == pytest.approx(results["data"]["rm"], abs=2)

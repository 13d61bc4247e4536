"""The PbPO regret experiment at scale "test" asserts the theory's shape (arXiv 2511.12867)."""

import pytest

from jaxpref.experiments import pbpo


@pytest.fixture(scope="module")
def results():
    return pbpo.run(pbpo.config("test"))


def test_regret_vs_k_slope_near_half(results):
    s = results["regret_vs_K"]["methods"]["pbpo"]["slope"]
    assert 0.25 <= s <= 0.75, s  # Õ(√K): slope 1/2 up to log factors and burn-in


def test_pbpo_beats_greedy(results):
    m = results["regret_vs_K"]["methods"]
    assert m["pbpo"]["mean"][-1] < 0.5 * m["greedy"]["mean"][-1]
    assert m["greedy"]["slope"] > 0.9  # no exploration: linear regret


def test_regret_grows_with_d(results):
    r = results["regret_vs_d"]
    assert r["regret"][-1] > r["regret"][0] and r["slope"] > 0.4


def test_ablation_and_outputs(results, tmp_path):
    assert set(results["ablation"]) == {"agnostic_only", "aware_only", "pbpo"}
    assert all(v > 0 for v in results["ablation"].values())
    files = pbpo.plot(results, tmp_path)
    assert files and all(f.stat().st_size > 0 for f in files)
    assert "pbpo" in pbpo.table(results)
    with pytest.raises(ValueError, match="scale"):
        pbpo.config("huge")

"""The PbPO regret experiment at scale "test" (arXiv 2511.12867): what each radius does.

The √K / d shapes are asserted for the heuristic radius (κ = 1, uncertified: it covers θ* in
57–66 % of runs, `tests/test_pbpo_confidence.py`); the covering radii are run in the same
compiled map (section 5) and asserted to keep PbPO at its first policy over K ≤ 256 here.
"""

import numpy as np
import pytest

from jaxpref.experiments import pbpo


@pytest.fixture(scope="module")
def results():
    return pbpo.run(pbpo.config("test", radius="heuristic"))


def test_heuristic_radius_regret_is_sublinear(results):
    """Guards exploration + pessimism: PbPO's slope well below greedy's linear one, and less than
    half its regret at K = 256 (seen: slope 0.41 vs 1.00, 40.6 vs 213.1)."""
    m = results["regret_vs_K"]["methods"]
    assert m["greedy"]["slope"] > 0.9  # no exploration: linear regret
    assert m["pbpo"]["slope"] < m["greedy"]["slope"] - 0.4, m["pbpo"]["slope"]
    assert m["pbpo"]["mean"][-1] < 0.5 * m["greedy"]["mean"][-1]


def test_covering_radii_keep_pbpo_at_its_first_policy(results):
    """With κ = 4 or the certified κ the pessimistic step never leaves π_1 = uniform within
    K ≤ 256: per-episode regret is constant, so cumulative regret is exactly linear in K (a
    radius that shrank faster than β_k(δ) would learn and fail this)."""
    r = results["regret_vs_radius"]
    ks = np.asarray(r["K"], float)
    for name in ("certified", "local"):
        mean = np.asarray(r["methods"][name]["mean"])
        np.testing.assert_allclose(mean / mean[0], ks / ks[0], rtol=0.02, err_msg=name)
    heuristic = np.asarray(r["methods"]["heuristic"]["mean"])
    np.testing.assert_allclose(heuristic, results["regret_vs_K"]["methods"]["pbpo"]["mean"])


def test_regret_grows_with_d(results):
    r = results["regret_vs_d"]
    assert r["regret"][-1] > r["regret"][0] and r["slope"] > 0.4


def test_ablation_every_exploration_rule_beats_greedy(results, tmp_path):
    """Each exploration rule alone (and the alternation) keeps regret below half of greedy's at
    K = 256 (seen: 43.0, 35.8, 40.6 vs 213.1)."""
    greedy = results["regret_vs_K"]["methods"]["greedy"]["mean"][-1]
    assert set(results["ablation"]) == {"agnostic_only", "aware_only", "pbpo"}
    for name, v in results["ablation"].items():
        assert v < 0.5 * greedy, (name, v, greedy)
    files = pbpo.plot(results, tmp_path)
    assert files and all(f.stat().st_size > 10_000 for f in files)
    assert "heuristic radius" in pbpo.table(results)
    with pytest.raises(ValueError, match="scale"):
        pbpo.config("huge")
    with pytest.raises(ValueError, match="radius"):
        pbpo.config("test", radius="tight")

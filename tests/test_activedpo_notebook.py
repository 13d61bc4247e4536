"""The teaching notebook 05 runs top to bottom; its online greedy selection equals the offline
answers (APO on β·φ_diff, brute-force log-det) and the LLM's vmap gradients equal the loop."""

import re

from notebooks import run_notebook


def test_notebook_05_runs_and_online_equals_offline():
    nb = run_notebook("05_activedpo_gradient_uncertainty.ipynb", timeout=600)
    text = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "all equal: True" in text
    gap = float(re.search(r"max \|vmap − loop\| = (\S+)", text).group(1))
    assert gap < 1e-10
    for line in (s for s in text.splitlines() if s.startswith("k=")):
        measured, predicted = (
            float(v) for v in re.findall(r"(?:measured|predicted)\s+(\S+)", line)
        )
        assert abs(measured - predicted) < 0.15 * predicted  # 4000 draws: a few % sampling error

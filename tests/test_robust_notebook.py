"""The teaching notebook 04 runs top to bottom and its online and closed-form answers agree."""

import numpy as np

from notebooks import run_notebook


def test_notebook_04_runs_and_online_matches_closed_form():
    nb = run_notebook("04_oracle_robust_alignment.ipynb", timeout=300)
    text = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "exact gradient" in text and "proximal-point" in text
    line = next(s for s in text.splitlines() if s.startswith("robust objective: online"))
    online, prox = (float(v) for v in line.replace("prox-point", "").split()[3:5])
    assert np.isfinite(online) and abs(online - prox) < 2e-3  # same result, two routes

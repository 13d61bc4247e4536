"""Execute notebooks/03_pbpo_confidence_sets_and_regret.ipynb and check what it prints."""

import importlib.util
import re
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def stdout():
    spec = importlib.util.spec_from_file_location(
        "_jaxpref_notebook_runner", Path(__file__).with_name("notebooks.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    nb = module.run_notebook("03_pbpo_confidence_sets_and_regret.ipynb", timeout=300)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    return "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")


def test_ellipsoids_cover_theta_star_and_shrink(stdout):
    radii = [float(r) for r in re.findall(r"  radius=([\d.]+)", stdout)]
    assert len(radii) == 4 and radii == sorted(radii)  # β_k grows like √log k
    assert stdout.count("theory radius") == 4
    assert len(re.findall(r"theory radius=[\d.]+\s+inside: True", stdout)) == 4


def test_closed_form_equals_solver_and_online_equals_offline(stdout):
    m = re.search(r"closed form ([-\d.e]+)\s+solver ([-\d.e]+)", stdout)
    assert m and float(m.group(1)) == pytest.approx(float(m.group(2)), abs=1e-8)
    assert "online :" in stdout and "offline:" in stdout


def test_regret_ordering(stdout):
    m = re.search(r"\{'pbpo': ([\d.]+), 'greedy': ([\d.]+), 'uniform': ([\d.]+)\}", stdout)
    assert m and float(m.group(1)) < float(m.group(2))

"""Notebooks are committed executed (outputs and figures), and the check that the suite applies
after executing one (`notebooks.compare`) fails when a printed value or a figure changed."""

import pathlib
import re

import nbformat
import pytest
from nbformat import v4

from notebooks import compare

NOTEBOOKS = sorted((pathlib.Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def notebook(*cells):
    return v4.new_notebook(cells=[v4.new_markdown_cell("# t"), *cells])


def cell(text, figures=0):
    outputs = [v4.new_output("stream", name="stdout", text=text)]
    outputs += [v4.new_output("display_data", data={"image/png": "iVBOR"}) for _ in range(figures)]
    return v4.new_code_cell("print()", outputs=outputs, execution_count=1)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_executed_with_figures(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code), "commit it executed"
    assert any(o.output_type == "stream" for c in code for o in c.outputs)
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]


def test_compare_accepts_reruns_within_tolerance():
    old = notebook(cell("loss 0.123456 at step 10\n", figures=1))
    assert compare(old, notebook(cell("loss 0.123460 at step 10\n", figures=1))) is None


@pytest.mark.parametrize(
    "new,match",
    [
        (cell("loss 0.1300 at step 10\n", figures=1), r"code cell 0: printed 'loss 0.1300"),
        (cell("loss 0.123456 at step 11\n", figures=1), r"code cell 0: printed"),
        (cell("gain 0.123456 at step 10\n", figures=1), r"code cell 0: printed 'gain"),
        (cell("loss 0.123456 at step 10\n"), r"code cell 0 drew 0 figures, the committed copy 1"),
        (cell("loss 0.123456 at step 10\nmore\n", figures=1), r"printed 2 lines"),
    ],
)
def test_compare_names_the_first_difference(new, match):
    old = notebook(cell("loss 0.123456 at step 10\n", figures=1))
    message = compare(old, notebook(new))
    assert message is not None
    assert re.search(match, message), message


def test_compare_refuses_an_unexecuted_committed_copy():
    old = notebook(v4.new_code_cell("print(1)"))
    assert "no outputs" in compare(old, notebook(cell("1\n")))

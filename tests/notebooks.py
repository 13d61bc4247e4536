"""Execute a teaching notebook in a fresh kernel of the current interpreter (for the suite), and
check it against the committed copy.

Notebooks are committed executed, so a reader sees their outputs and figures on a code host.
:func:`run_notebook` executes the notebook and compares what every code cell printed with what
the committed file holds (numbers within a tolerance, text exactly; a cell whose figures
disappeared counts too); a notebook that no longer matches fails with the cell and the first
differing line. To commit fresh outputs after a change::

    PYTHONPATH=$PWD python tests/notebooks.py 02_preference_matching_vs_kl.ipynb [...]
"""

from __future__ import annotations

import copy
import os
import re
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INLINE = "module://matplotlib_inline.backend_inline"
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
RTOL, ATOL = 1e-3, 1e-6  # printed numbers of a rerun (XLA and BLAS versions, thread counts)


def execute(name: str, *, timeout: int = 600):
    """``notebooks/<name>`` run top to bottom with the notebooks folder as working directory."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager  # noqa: F401  (ensures jupyter present)
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
        extra_arguments=[],
    )
    client.km = client.create_kernel_manager()
    client.km.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    backend = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = INLINE  # the kernel inherits it: figures become cell outputs
    try:
        client.execute()
    finally:
        if backend is None:
            del os.environ["MPLBACKEND"]
        else:
            os.environ["MPLBACKEND"] = backend
    return nb


def run_notebook(name: str, *, timeout: int = 600, check: bool = True):
    """Execute ``notebooks/<name>``; raise on any cell error, and (``check``) when a code cell's
    printed output or its figures differ from the committed notebook's."""
    import nbformat

    committed = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    nb = execute(name, timeout=timeout)
    if check:
        mismatch = compare(committed, nb)
        if mismatch:
            raise AssertionError(
                f"notebooks/{name}: {mismatch}; if the change is intended, commit fresh outputs "
                f"with `python tests/notebooks.py {name}`"
            )
    return nb


def printed(cell) -> str:
    """A code cell's stdout and text results, in order."""
    parts = []
    for o in cell.get("outputs", []):
        if o.output_type == "stream" and o.name == "stdout":
            parts.append(o.text)
        elif o.output_type in ("execute_result", "display_data"):
            text = o.get("data", {}).get("text/plain", "")
            if "image/png" not in o.get("data", {}) and not text.startswith("<Figure"):
                parts.append(text)
    return "".join(parts)


def figures(cell) -> int:
    return sum("image/png" in o.get("data", {}) for o in cell.get("outputs", []))


def compare(committed, executed) -> str | None:
    """The first difference between two runs of a notebook, or None."""
    old = [c for c in committed.cells if c.cell_type == "code"]
    new = [c for c in executed.cells if c.cell_type == "code"]
    if len(old) != len(new):
        return f"{len(new)} code cells, the committed copy has {len(old)}"
    if not any(c.get("outputs") for c in old):
        return "the committed copy has no outputs (notebooks are committed executed)"
    for i, (a, b) in enumerate(zip(old, new, strict=True)):
        if figures(a) != figures(b):
            return f"code cell {i} drew {figures(b)} figures, the committed copy {figures(a)}"
        diff = _text_diff(printed(a), printed(b))
        if diff:
            return f"code cell {i}: {diff}"
    return None


def _text_diff(old: str, new: str) -> str | None:
    old_lines, new_lines = old.splitlines(), new.splitlines()
    if len(old_lines) != len(new_lines):
        return f"printed {len(new_lines)} lines, the committed copy {len(old_lines)}"
    for a, b in zip(old_lines, new_lines, strict=True):
        if NUMBER.sub("#", a) != NUMBER.sub("#", b) or not _numbers_close(a, b):
            return f"printed {b!r}, the committed copy {a!r}"
    return None


def _numbers_close(a: str, b: str) -> bool:
    xs, ys = NUMBER.findall(a), NUMBER.findall(b)
    return all(abs(float(x) - float(y)) <= ATOL + RTOL * abs(float(x)) for x, y in zip(xs, ys))


def write_executed(name: str) -> None:
    """Execute ``notebooks/<name>`` and store it with its outputs (timing metadata dropped)."""
    import nbformat

    nb = execute(name)
    for cell in nb.cells:
        cell.get("metadata", {}).pop("execution", None)
        cell.setdefault("id", uuid.uuid4().hex[:8])
    nb.metadata.pop("widgets", None)
    nbformat.write(copy.deepcopy(nb), ROOT / "notebooks" / name)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        write_executed(Path(arg).name)
        print(f"wrote notebooks/{Path(arg).name}")

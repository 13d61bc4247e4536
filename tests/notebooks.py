"""Execute a teaching notebook in a fresh kernel of the current interpreter (for the suite)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_notebook(name: str, *, timeout: int = 600) -> "nbformat.NotebookNode":  # noqa: F821
    """Run ``notebooks/<name>`` top to bottom in a temp working dir; raise on any cell error."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager  # noqa: F401  (ensures jupyter present)
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    env_python = sys.executable
    os.environ.setdefault("MPLBACKEND", "Agg")
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
        extra_arguments=[],
    )
    client.kernel_manager_class  # noqa: B018
    client.km = client.create_kernel_manager()
    client.km.kernel_cmd = [env_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    client.execute()
    return nb

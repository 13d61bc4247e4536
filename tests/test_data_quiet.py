"""Loading the shipped tokenizer and the HH-RLHF file prints nothing (no "PyTorch was not
found", no progress bars) unless the user asks transformers for its messages."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = """
from jaxpref.data import HH_RLHF_FILE, load_tokenizer
from jaxpref.data.sources import load_splits
tok = load_tokenizer()
rows = load_splits(HH_RLHF_FILE)["train"]
assert len(tok) > 0 and len(rows) > 0
"""


def run(**env):
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRANSFORMERS_")}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**base, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_loading_prints_nothing():
    out = run()
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and out.stderr == "", out.stderr


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed")
def test_messages_when_asked():
    out = run(TRANSFORMERS_VERBOSITY="warning")
    assert out.returncode == 0, out.stderr
    assert "PyTorch was not found" in out.stderr

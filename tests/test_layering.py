"""The pure math layer imports no model, IO or training code (ARCHITECTURE.md, layers)."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "jaxpref"
MATH = [
    "linalg.py",
    "_checks.py",
    "policies/loglinear.py",
    "losses",
    "design",
    "pbpo",
    "regularizers",
    "robust",
    "metrics",
]
FORBIDDEN = (
    "flax",
    "orbax",
    "datasets",
    "transformers",
    "tokenizers",
    "safetensors",
    "torch",
    "jaxpref.train",
    "jaxpref.llm",
    "jaxpref.data",
    "jaxpref.experiments",
    "jaxpref.cli",
)


def _math_files():
    for entry in MATH:
        path = PKG / entry
        yield from ([path] if path.suffix == ".py" else sorted(path.rglob("*.py")))


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


@pytest.mark.parametrize("path", list(_math_files()), ids=lambda p: str(p.relative_to(PKG)))
def test_math_module_imports(path):
    bad = [m for m in _imports(path) if m.split(".")[0] in FORBIDDEN or m.startswith(FORBIDDEN)]
    assert not bad, f"{path.relative_to(PKG)} imports {bad}"


def test_no_explicit_inverse_outside_linalg():
    offenders = [
        p for p in PKG.rglob("*.py") if p.name != "linalg.py" and "linalg.inv(" in p.read_text()
    ]
    assert not offenders, offenders

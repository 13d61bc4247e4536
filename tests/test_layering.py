"""The pure math layer imports no model, IO or training code (ARCHITECTURE.md, layers)."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "jaxpref"
MATH = [
    "linalg.py",
    "_checks.py",
    "policies/loglinear.py",
    "policies/autoregressive.py",
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


def _package_of(path):
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def _private_cross_imports(path, own=None):
    """Names with a leading underscore imported from another jaxpref package (``_checks`` is
    the project's shared check module, meant for every package)."""
    own = own or _package_of(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxpref"):
            for alias in node.names:
                segs = f"{node.module}.{alias.name}".split(".")[1:]
                if segs[0] in (own, "_checks"):
                    continue
                if own in ("cli", "experiments") and segs[0] in ("cli", "experiments"):
                    continue  # the application layer: the CLI and its runners are one package
                if any(s.startswith("_") and not s.startswith("__") for s in segs):
                    yield ".".join(["jaxpref", *segs])


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else None


def _private_cross_attributes(path, own=None):
    """``mod._name`` where ``mod`` is another jaxpref package's module bound by an import
    (``from jaxpref.pbpo import confidence`` then ``confidence._radius``, or a dotted
    ``jaxpref.pbpo.confidence._radius``)."""
    own = own or _package_of(path)
    tree = ast.parse(path.read_text())
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxpref"):
            bound.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("jaxpref"):
                    bound[a.asname or a.name.split(".")[0]] = a.asname and a.name or "jaxpref"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or isinstance(node.value, ast.Attribute):
            continue  # judge each chain once, from its innermost attribute outwards
        chain = _dotted(node)
        if not chain or chain[0] not in bound:
            continue
        segs = [*bound[chain[0]].split(".")[1:], *chain[1:]]
        if not segs or segs[0] in (own, "_checks"):
            continue
        if own in ("cli", "experiments") and segs[0] in ("cli", "experiments"):
            continue
        if any(s.startswith("_") and not s.startswith("__") for s in segs):
            yield ".".join(["jaxpref", *segs])


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_no_private_cross_package_imports(path):
    bad = list(_private_cross_imports(path)) + list(_private_cross_attributes(path))
    assert not bad, f"{path.relative_to(PKG)} uses private names of another package: {bad}"


def test_private_name_check_sees_imports_and_attribute_access(tmp_path):
    """The rule's own guard: both spellings of a private cross-package use are caught."""
    probe = tmp_path / "probe.py"
    src = (
        "from jaxpref.losses.mle import _x\n"
        "from jaxpref.pbpo import confidence\n"
        "import jaxpref.robust.objective as obj\n"
        "confidence._radius(1)\nobj._y\nconfidence.public\n"
    )
    probe.write_text(src)
    found = list(_private_cross_imports(probe, "design"))
    found += _private_cross_attributes(probe, "design")
    assert sorted(found) == [
        "jaxpref.losses.mle._x",
        "jaxpref.pbpo.confidence._radius",
        "jaxpref.robust.objective._y",
    ]


@pytest.mark.parametrize(
    "layer,forbidden",
    [
        ("llm", ("jaxpref.train", "jaxpref.cli", "jaxpref.experiments")),
        ("data", ("jaxpref.train", "jaxpref.cli", "jaxpref.experiments")),
        ("train", ("jaxpref.cli", "jaxpref.experiments")),
    ],
)
def test_upper_layers(layer, forbidden):
    """ARCHITECTURE.md: llm and data never import train; train never imports cli or experiments."""
    bad = [
        (str(p.relative_to(PKG)), m)
        for p in sorted((PKG / layer).rglob("*.py"))
        for m in _imports(p)
        if m.startswith(forbidden)
    ]
    assert not bad, bad

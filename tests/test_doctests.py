"""The docstring examples of the math layer run as doctests (they rotted unseen before).

They are written for JAX's default float32 and run with x64 off (the suite turns it on)."""

import doctest
import importlib
import pkgutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

PACKAGES = ("design", "metrics", "pbpo", "regularizers", "robust", "policies", "losses")


def _modules():
    names = ["jaxpref.linalg", "jaxpref._checks"]
    for pkg in PACKAGES:
        path = importlib.import_module(f"jaxpref.{pkg}").__path__
        names += [f"jaxpref.{pkg}.{m.name}" for m in pkgutil.iter_modules(path)]
    return names


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=flags)
    with jax.enable_x64(False):
        for test in finder.find(module, globs={"jnp": jnp, "np": np, **vars(module)}):
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"

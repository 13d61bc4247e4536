"""The suite checks the math layer's jaxtyping annotations at run time (tests/conftest.py)."""

import jax
import jax.numpy as jnp
import jaxtyping
import pytest

from jaxpref import linalg
from jaxpref.losses import fit_dpo_mle


def test_a_wrong_shape_raises_the_annotation_error():
    """Guards the hook itself: psd_solve(A: "d d", b: "d ...") with d = 3 against 4 fails in
    the type check, before any Cholesky runs; also while tracing under jit."""
    with pytest.raises(jaxtyping.TypeCheckError, match="psd_solve"):
        linalg.psd_solve(jnp.eye(3), jnp.ones(4))
    with pytest.raises(jaxtyping.TypeCheckError):
        jax.jit(linalg.psd_solve)(jnp.eye(3), jnp.ones(4))
    with pytest.raises(jaxtyping.TypeCheckError, match="labels"):  # N shared by phi and labels
        fit_dpo_mle(jnp.ones((5, 2)), jnp.ones(4))


def test_library_checks_only_fixture_shows_the_library_error(library_checks_only):
    with pytest.raises(ValueError, match="labels: expected shape"):
        fit_dpo_mle(jnp.ones((5, 2)), jnp.ones(4))

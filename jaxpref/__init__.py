"""jaxpref: theory-faithful preference-based alignment in JAX."""

__version__ = "0.1.0"

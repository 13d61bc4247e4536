"""jaxpref: theory-faithful preference-based alignment in JAX.

``jaxpref.value_checks(enabled)`` turns the value checks on JAX arrays on or off;
``jaxpref.wait_value_checks()`` raises the failure of an asynchronous eager check (see
``jaxpref._checks``).
"""

__version__ = "0.1.0"

__all__ = ["value_checks", "wait_value_checks"]


def __getattr__(name: str):
    if name in __all__:  # imported lazily: ``import jaxpref`` stays free of JAX
        from jaxpref import _checks

        return getattr(_checks, name)
    raise AttributeError(f"module 'jaxpref' has no attribute {name!r}")

"""Argument checks for public entry points.

Every check names the argument and the problem and runs before any work. Value checks
(finiteness, signs, ranges) need concrete arrays; under tracing (a caller's own ``jit``)
they are skipped and only the static checks (shapes, dtypes, Python scalars) apply.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds values (not a tracer inside ``jit``/``vmap``/``grad``)."""
    return not isinstance(x, jax.core.Tracer)


def shape_of(name: str, x: Any) -> tuple[int, ...]:
    try:
        return tuple(np.shape(x))
    except Exception as err:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name}: expected an array, got {type(x).__name__}") from err


def check_ndim(name: str, x: Any, ndim: int) -> tuple[int, ...]:
    shape = shape_of(name, x)
    if len(shape) != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {shape}")
    return shape


def check_same_shape(**arrays: Any) -> tuple[int, ...]:
    """All arrays share one shape; the error names every argument and its shape."""
    shapes = {k: shape_of(k, v) for k, v in arrays.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{k}{s}" for k, s in shapes.items())
        raise ValueError(f"shape mismatch: {listed} must all have the same shape")
    return next(iter(shapes.values()))


def check_finite(name: str, x: Any) -> None:
    if x is None or not is_concrete(x):
        return
    a = np.asarray(x)
    if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"{name}: contains {bad} non-finite value(s) (NaN or inf)")


def check_positive(name: str, value: Any) -> None:
    if not is_concrete(value):
        return
    v = np.asarray(value)
    if not np.all(np.isfinite(v)) or not np.all(v > 0):
        raise ValueError(f"{name}: must be finite and > 0, got {value!r}")


def check_nonnegative(name: str, value: Any) -> None:
    if not is_concrete(value):
        return
    v = np.asarray(value)
    if not np.all(np.isfinite(v)) or not np.all(v >= 0):
        raise ValueError(f"{name}: must be finite and >= 0, got {value!r}")


def check_in_range(name: str, value: Any, lo: float, hi: float, *, closed: str = "both") -> None:
    """``lo <= value <= hi``, each end open or closed: closed in {both, left, right, neither}."""
    if not is_concrete(value):
        return
    v = np.asarray(value)
    lo_ok = v >= lo if closed in ("both", "left") else v > lo
    hi_ok = v <= hi if closed in ("both", "right") else v < hi
    if not (np.all(np.isfinite(v)) and np.all(lo_ok) and np.all(hi_ok)):
        left = "[" if closed in ("both", "left") else "("
        right = "]" if closed in ("both", "right") else ")"
        raise ValueError(f"{name}: must lie in {left}{lo}, {hi}{right}, got {value!r}")


def check_binary(name: str, x: Any) -> None:
    if not is_concrete(x):
        return
    a = np.asarray(x)
    if not np.all((a == 0) | (a == 1)):
        raise ValueError(f"{name}: labels must be 0 or 1")


def check_int_in(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if not lo <= int(value) <= hi:
        raise ValueError(f"{name}: must lie in [{lo}, {hi}], got {value}")
    return int(value)


def as_float(name: str, x: Any):
    """``x`` as a JAX array of a floating dtype: integer/bool inputs are promoted to the default
    float dtype (float32, or float64 under x64); complex inputs are refused."""
    import jax.numpy as jnp

    a = jnp.asarray(x)
    if jnp.issubdtype(a.dtype, jnp.complexfloating):
        raise ValueError(f"{name}: expected real values, got dtype {a.dtype}")
    if not jnp.issubdtype(a.dtype, jnp.floating):
        a = a.astype(jnp.result_type(float))
    return a


def check_not_half(name: str, x: Any) -> None:
    """Refuse float16/bfloat16 (static dtype check, also under ``jit``): Cholesky factors and
    solves in half precision are not accurate enough to be trusted."""
    dt = np.dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)
    if dt.itemsize <= 2 and dt.kind == "f" or str(dt) == "bfloat16":
        raise ValueError(
            f"{name}: dtype {dt} is too imprecise for a Cholesky-based computation; "
            "cast to float32 or float64 first"
        )


def check_logps(name: str, x: Any) -> None:
    """Log-probabilities must be finite and ≤ 0 (probabilities in (0, 1])."""
    check_finite(name, x)
    if x is not None and is_concrete(x) and np.any(np.asarray(x) > 0):
        raise ValueError(f"{name}: log-probabilities must be <= 0 (probabilities in (0, 1])")


def check_all_finite(**arrays: Any) -> None:
    for k, v in arrays.items():
        check_finite(k, v)

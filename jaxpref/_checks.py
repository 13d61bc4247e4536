"""Argument checks for public entry points.

Every check names the argument and the problem and runs before any work.

Static checks (shapes, dtypes, Python-scalar and integer arguments) run in Python, eagerly and
while tracing, and raise ``ValueError`` at once.

Value checks (finiteness, signs, ranges, 0/1 labels, log-probabilities ≤ 0) follow one
convention, chosen by where the values live:

* **Host values** (Python scalars, NumPy arrays, lists): checked at once with NumPy; a failure
  raises ``ValueError`` before any work.
* **JAX arrays under tracing** (a caller's ``jit``, ``vmap``, ``grad``, ``scan``/``while``
  bodies, ``shard_map``): the predicate is computed with ``jnp`` in the caller's graph and a
  failure raises from a ``jax.debug.callback``; it surfaces as ``jax.errors.JaxRuntimeError``
  (message: the argument and the problem, e.g. how many values are non-finite) from the
  computation — on CPU at the call, on accelerators at the latest when its results are read.
  The callback is an effect, so XLA never drops it, and call sites need not use a result.
  Under ``vmap`` a ``custom_vmap`` rule reduces the batch (any / sum / first offender) so the
  host is called once, not once per example.
* **Concrete JAX arrays in eager calls**: the same predicate runs as one small jitted program
  (no effect, so jit's fast path), dispatched asynchronously; Python neither waits for the
  array nor copies it. Its result (a flag, a count, one offending value) is read by the next
  checked call of jaxpref once it is ready — an explicit ``device_get`` of a finished scalar,
  never a wait — and a failure raises ``ValueError`` there (the message says it comes from
  an eager call's asynchronous check); :func:`wait_value_checks` waits for all of them, and
  runs at interpreter exit.

Cost. A ``jax.debug.callback`` is an effect, and a jitted function with an effect leaves
jit's C++ dispatch fast path for the Python one: a caller's jitted function that contains
checks pays that per call (once, whatever the number of checks); each check adds one pass over
its array (the reduction ``any``; counting and finding an offender run only on failure).
Measured on the 2-core AMD EPYC machine, 2026-12-01, with other jobs running (load ~3):
``jit(value_and_grad(dpo_loss))``, four checked arrays, took 28–29 µs per call without the
checks and 250–350 µs with them at B = 64; 2.0 ms and 3.4 ms at B = 262,144; with the checks
off, 27 µs (B = 64). At load ~13 the same B = 64 call took 44 µs before and 3.6–4.5 ms with (an
earlier form of) the checks: the dispatch cost is Python and grows with the load. A step of
tens of milliseconds does not notice; a loop of microsecond steps should turn the checks off.
An eager check of a large array costs about one pass over it: ``check_finite`` of a
50,000 × 128 float32 device array took 8.5 ms to dispatch and read back (4.6 ms for a bare
jitted ``all(isfinite)``; 23 ms when the program also counted and located offenders on
success) on the same machine, quiet, 2026-12-02.

The callback sits behind ``lax.cond(bad, report, nothing)``: unconditional, it cost ~1.5–2.4
ms per check per call at load ~2 (a Python call on a host thread each); behind the ``cond``,
nothing measurable per further check. On an accelerator the ``cond``
reads one predicate byte to the host per check; the Python callback runs only on failure.

Production loops turn the in-graph and eager-array value checks off with
``JAXPREF_VALUE_CHECKS=0`` or ``with jaxpref.value_checks(False):`` (read when a function is
traced, so a function jitted while they were on keeps them until it is traced again). Host-value
and static checks always run.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import functools
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap

# ----------------------------------------------------------------------------- the switch

_MODE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "jaxpref_value_checks", default=None
)
_ENV_MODES = {"0": "off", "false": "off", "off": "off", "1": "on", "on": "on", "wait": "wait"}


def _mode() -> str:
    """``on`` (the default), ``off``, or ``wait`` (eager JAX arrays checked on the host)."""
    mode = _MODE.get()
    if mode is None:
        raw = os.environ.get("JAXPREF_VALUE_CHECKS", "1").strip().lower()
        if raw not in _ENV_MODES:
            raise ValueError(f"JAXPREF_VALUE_CHECKS: must be 0, 1 or wait, got {raw!r}")
        mode = _ENV_MODES[raw]
    return mode


def value_checks_enabled() -> bool:
    """Whether value checks on JAX arrays run (``value_checks`` / ``JAXPREF_VALUE_CHECKS``)."""
    return _mode() != "off"


@contextlib.contextmanager
def value_checks(enabled: bool, *, wait: bool = False) -> Iterator[None]:
    """Turn the value checks on JAX arrays (in-graph and eager) on or off in this block.

    Read when a function is traced: ``jax.jit(step)`` traced inside ``value_checks(False)``
    carries no checks. Static checks and checks of host values always run. ``wait=True``
    checks eager JAX arrays at the call instead (waiting for them and copying them to the
    host, as for NumPy inputs): for debugging. Environment: ``JAXPREF_VALUE_CHECKS=0``
    (off), ``1`` (on, the default), ``wait``.

    >>> import jax.numpy as jnp, jaxpref
    >>> from jaxpref.losses import dpo_loss
    >>> with jaxpref.value_checks(False):
    ...     loss = dpo_loss(*jnp.full((4, 2), -1.0))
    """
    token = _MODE.set("off" if not enabled else "wait" if wait else "on")
    try:
        yield
    finally:
        _MODE.reset(token)


# -------------------------------------------------- failures of eager (asynchronous) checks

_MESSAGES: list[str] = []  # message templates, indexed by the id the graph carries
_MESSAGE_IDS: dict[str, int] = {}
_PENDING: list[tuple] = []  # (template, bad, count, example): eager checks not yet read
_MAX_PENDING = 1024  # beyond this many unread eager checks, wait for them
_LOCK = threading.Lock()
_DEFERRED_NOTE = (
    " (reported by the asynchronous check of an eager call; see jaxpref.wait_value_checks)"
)


def _message_id(template: str) -> int:
    with _LOCK:
        if template not in _MESSAGE_IDS:
            _MESSAGE_IDS[template] = len(_MESSAGES)
            _MESSAGES.append(template)
        return _MESSAGE_IDS[template]


def _raise_pending(wait: bool = False) -> None:
    """Read the eager checks whose results are ready (all of them with ``wait``) and raise the
    first failure. A ready result is read with an explicit ``device_get`` of one scalar."""
    if not _PENDING:
        return
    wait = wait or len(_PENDING) > _MAX_PENDING
    with _LOCK:
        done = [e for e in _PENDING if wait or e[1].is_ready()]
        _PENDING[:] = [e for e in _PENDING if not any(e is d for d in done)]
    for template, bad, count, example in done:
        if bool(jax.device_get(bad)):
            count, example = jax.device_get((count, example))
            raise ValueError(
                template.format(count=int(count), example=example.item()) + _DEFERRED_NOTE
            )


def wait_value_checks() -> None:
    """Wait for the value checks of earlier eager calls; raise the first failure as
    ``ValueError``. (A check in a caller's ``jit`` fails its own computation instead.)"""
    _raise_pending(wait=True)


atexit.register(wait_value_checks)


# ------------------------------------------------------------------------- in-graph checks


def _report(count, example, message_id) -> None:
    """Host side of a failed in-graph check: raise its message."""
    if np.any(count):
        template = _MESSAGES[int(np.ravel(message_id)[0])]
        raise ValueError(
            template.format(count=int(np.sum(count)), example=np.ravel(example)[0].item())
        )


def _describe(flat, values, message_id) -> None:
    """On failure only: count the offenders, take the first one's value, call the host."""
    example = values[jnp.argmax(flat)]
    jax.debug.callback(_report, jnp.sum(flat, dtype=jnp.int32), example, message_id)


@functools.cache
def _emitter() -> Callable:
    """``emit(bad, flat_mask, flat_values, message_id)``: report when ``bad``. The hot path is
    the one reduction ``bad``; counting and finding an offender run only on failure. One host
    call per ``vmap``: the rule reduces ``bad`` and folds the batch into the flat arrays."""

    @custom_vmap
    def emit(bad, flat, values, message_id):
        jax.lax.cond(bad, _describe, lambda *_: None, flat, values, message_id)
        return bad

    @emit.def_vmap
    def _rule(axis_size, in_batched, bad, flat, values, message_id):
        def unbatch(a, batched):  # (axis_size, n) -> (axis_size * n,)
            return (a if batched else jnp.broadcast_to(a, (axis_size, *a.shape))).reshape(-1)

        bad = jnp.any(bad) if in_batched[0] else bad
        flat, values = unbatch(flat, in_batched[1]), unbatch(values, in_batched[2])
        message_id = message_id[0] if in_batched[3] else message_id
        return emit(bad, flat, values, message_id), False

    return emit


def _flat_values(x):
    """``x`` flattened, as real floats, without a tangent (a message needs no derivative)."""
    values = jnp.ravel(x)
    if jnp.iscomplexobj(values):
        values = jnp.abs(values)
    if not jnp.issubdtype(values.dtype, jnp.floating):
        values = values.astype(jnp.float32)
    return jax.lax.stop_gradient(values)


def _reduce(x, bad_mask: Callable):
    """(any failure, how many, the first offender's value) of the element-wise ``bad_mask(x)``.
    The hot path is the one reduction ``any``; counting and finding an offender (an ``argmax``,
    the costlier pass) run only on failure (zeros otherwise), with the mask computed again inside
    the branch, so that no mask array is written out for it."""

    def detail(x):
        flat = jnp.ravel(bad_mask(x))
        return jnp.sum(flat, dtype=jnp.int32), _flat_values(x)[jnp.argmax(flat)]

    def nothing(x):
        return jnp.zeros((), jnp.int32), jnp.zeros((), _flat_values(x).dtype)

    bad = jnp.any(bad_mask(x))
    return (bad, *jax.lax.cond(bad, detail, nothing, x))


def _bad_mask(xp, kind: str, v, lo=None, hi=None, closed=None):
    """Element-wise failure of a value check, in NumPy (``xp=np``) or in the graph (jnp)."""
    if kind == "finite":
        return ~xp.isfinite(v)
    if kind == "flag":
        return v != 0
    if kind == "binary":
        return ~((v == 0) | (v == 1))
    if kind == "nonpositive":
        return v > 0
    ok = xp.isfinite(v)
    if kind == "positive":
        return ~(ok & (v > 0))
    if kind == "nonnegative":
        return ~(ok & (v >= 0))
    lo_ok = v >= lo if closed in ("both", "left") else v > lo
    hi_ok = v <= hi if closed in ("both", "right") else v < hi
    return ~(ok & lo_ok & hi_ok)


@functools.cache
def _eager_program(kind: str, lo, hi, closed) -> Callable:
    """The check of a concrete array as one jitted program (no effect, so jit's fast path)."""
    return jax.jit(lambda x: _reduce(x, lambda v: _bad_mask(jnp, kind, v, lo, hi, closed)))


def _template(name: str, problem: str, size: int) -> str:
    """Message template: the argument, the problem, and for arrays how many values fail."""
    if size == 1:
        return f"{name}: {problem}, got {{example!r}}"
    return f"{name}: {problem}; {{count}} of {size} value(s) are not (e.g. {{example!r}})"


def _value_check(
    name: str, x: Any, kind: str, problem: str, lo=None, hi=None, closed=None, *, fixed=None
) -> None:
    """Run one value check by the convention of the module docstring (``fixed``: a message
    template used whatever the size)."""
    _raise_pending()
    if x is None:
        return
    traced = isinstance(x, jax.core.Tracer)
    mode = _mode() if isinstance(x, jax.Array) else "host"
    if mode == "off":
        return
    if traced or mode == "on":  # in the graph: the caller's, or one dispatched asynchronously
        if x.size == 0 or (kind == "finite" and not jnp.issubdtype(x.dtype, jnp.inexact)):
            return
        template = fixed or _template(name, problem, x.size)
        if traced:
            flat = jnp.ravel(_bad_mask(jnp, kind, x, lo, hi, closed))
            message_id = jnp.int32(_message_id(template))
            _emitter()(jnp.any(flat), flat, _flat_values(x), message_id)
        else:
            result = _eager_program(kind, lo, hi, closed)(x)
            with _LOCK:
                _PENDING.append((template, *result))
        return
    v = np.asarray(x)
    if kind == "finite" and v.dtype.kind not in "fc":
        return
    with np.errstate(invalid="ignore"):
        mask = _bad_mask(np, kind, v, lo, hi, closed)
    if v.size and np.any(mask):
        example = v.ravel()[np.argmax(mask.ravel())].item()
        text = (fixed or _template(name, problem, v.size)).format(
            count=int(np.sum(mask)), example=example
        )
        raise ValueError(text)


# ---------------------------------------------------------------------------- static checks


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds values (not a tracer inside ``jit``/``vmap``/``grad``)."""
    return not isinstance(x, jax.core.Tracer)


def shape_of(name: str, x: Any) -> tuple[int, ...]:
    try:
        return tuple(np.shape(x))
    except Exception as err:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name}: expected an array, got {type(x).__name__}") from err


def check_ndim(name: str, x: Any, ndim: int) -> tuple[int, ...]:
    _raise_pending()
    shape = shape_of(name, x)
    if len(shape) != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {shape}")
    return shape


def check_same_shape(**arrays: Any) -> tuple[int, ...]:
    """All arrays share one shape; the error names every argument and its shape."""
    _raise_pending()
    shapes = {k: shape_of(k, v) for k, v in arrays.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{k}{s}" for k, s in shapes.items())
        raise ValueError(f"shape mismatch: {listed} must all have the same shape")
    return next(iter(shapes.values()))


def check_int_in(name: str, value: Any, lo: int, hi: int) -> int:
    _raise_pending()
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if not lo <= int(value) <= hi:
        raise ValueError(f"{name}: must lie in [{lo}, {hi}], got {value}")
    return int(value)


def as_float(name: str, x: Any):
    """``x`` as a JAX array of a floating dtype: integer/bool inputs are promoted to the default
    float dtype (float32, or float64 under x64); complex inputs are refused."""
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


# ----------------------------------------------------------------------------- value checks


def check_finite(name: str, x: Any) -> None:
    """No NaN or inf in ``x`` (``None`` and integer arrays pass)."""
    fixed = f"{name}: contains {{count}} non-finite value(s) (NaN or inf)"
    _value_check(name, x, "finite", "", fixed=fixed)


def check_positive(name: str, value: Any) -> None:
    _value_check(name, value, "positive", "must be finite and > 0")


def check_nonnegative(name: str, value: Any) -> None:
    _value_check(name, value, "nonnegative", "must be finite and >= 0")


def check_in_range(name: str, value: Any, lo: float, hi: float, *, closed: str = "both") -> None:
    """``lo <= value <= hi``, each end open or closed: closed in {both, left, right, neither}."""
    if closed not in ("both", "left", "right", "neither"):
        raise ValueError(f"closed: must be both, left, right or neither, got {closed!r}")
    left = "[" if closed in ("both", "left") else "("
    right = "]" if closed in ("both", "right") else ")"
    problem = f"must lie in {left}{lo}, {hi}{right}"
    _value_check(name, value, "range", problem, float(lo), float(hi), closed)


def check_binary(name: str, x: Any) -> None:
    _value_check(name, x, "binary", "labels must be 0 or 1")


def check_logps(name: str, x: Any) -> None:
    """Log-probabilities must be finite and ≤ 0 (probabilities in (0, 1])."""
    check_finite(name, x)
    problem = "log-probabilities must be <= 0 (probabilities in (0, 1])"
    _value_check(name, x, "nonpositive", problem)


def array_namespace(*xs: Any):
    """``jax.numpy`` when any of ``xs`` is a JAX array (traced or not), else ``numpy``: compute a
    :func:`check_condition` flag where its operands live, so host inputs are checked at once."""
    return jnp if any(isinstance(x, jax.Array) for x in xs) else np


def check_condition(name: str, bad: Any, problem: str) -> None:
    """Refuse when any element of ``bad`` is true: a failure condition the caller computed from
    its arguments (an index out of range, a sum that is not positive, a row that is not a
    permutation), checked by the convention of the module docstring (at once for host values,
    in the graph for JAX arrays). The message is ``f"{name}: {problem}"``."""
    fixed = f"{name}: {problem}".replace("{", "{{").replace("}", "}}")
    _value_check(name, bad, "flag", problem, fixed=fixed)


def check_all_finite(**arrays: Any) -> None:
    for k, v in arrays.items():
        check_finite(k, v)

"""The value-check convention of ``jaxpref._checks``: host values raise at once; JAX arrays are
checked in the graph (under the caller's ``jit``, ``vmap``, ``grad``, ``scan``, ``shard_map``)
or, eagerly, by an asynchronous program that neither waits for the array nor copies it; one
switch turns the JAX-array checks off while static checks stay on.

The suite's conftest sets ``JAXPREF_VALUE_CHECKS=wait`` (eager errors at the call); the tests
here that need the default set it with ``value_checks(True)``.
"""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

import jaxpref
from jaxpref import losses, pbpo, robust
from jaxpref.metrics import alignment

JaxRuntimeError = jax.errors.JaxRuntimeError
NAN = float("nan")


def _clear_runtime_tokens():
    """A failed sharded computation leaves its error in JAX's runtime tokens until the next
    ``effects_barrier``; it was raised at its call already."""
    try:
        jax.effects_barrier()
    except JaxRuntimeError:
        pass


@pytest.fixture(autouse=True)
def _quiet_callback_log():
    """A failing ``jax.debug.callback`` logs its traceback before JAX raises it; expected here."""
    logger = logging.getLogger("jax._src.debugging")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    _clear_runtime_tokens()
    yield
    _clear_runtime_tokens()
    logger.setLevel(level)


def _dpo(pc, beta=0.1):
    z = -jnp.ones_like(pc)
    return losses.dpo_loss(pc, z, z, z, beta=beta)


def _btl(labels):
    return losses.btl_nll(jnp.zeros(3), jnp.ones(3), labels)


def _worst(h, p=0.5, rho=0.1):
    return robust.worst_case_pair_loss(h, p, rho)


def _worst_p(p):
    return robust.worst_case_pair_loss(jnp.zeros(3), p, 0.1)


def _worst_rho(rho):
    return robust.worst_case_pair_loss(jnp.zeros(3), 0.5, rho)


def _fit(labels):
    phi = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    return pbpo.fit_btl_mle(phi, labels, lam=1.0, max_iters=3)[0]


def _lengths(lengths):
    s = lengths.shape[0]
    return alignment.exact_alignment_metrics(-jnp.ones(s), -jnp.ones(s), jnp.zeros(s), lengths)


def _align(logps):
    s = logps.shape[0]
    return alignment.exact_alignment_metrics(logps, jnp.full(s, -1.0), jnp.zeros(s), jnp.ones(s))


# (label, entry point, good argument, bad argument, what the message must say) — every check
# kind (finite, positive, in-range, non-negative, binary, log-probability) through real entry
# points of losses, robust, pbpo and metrics.
CASES = [
    ("finite", _dpo, [-1.0, -2.0, -1.5], [-1.0, NAN, np.inf], "policy_chosen_logps.*2 non-finite"),
    ("positive", _lengths, [1.0, 2.0], [1.0, 0.0], r"lengths: must be finite and > 0; 1 of 2"),
    ("range_labels", _btl, [0.0, 1.0, 0.3], [0.0, 1.5, 0.3], r"labels: must lie in \[0.0, 1.0\]"),
    ("finite_robust", _worst, [0.0, 1.0, -1.0], [0.0, NAN, -1.0], "h: contains 1 non-finite"),
    ("range_robust", _worst_p, 0.5, 1.5, r"p_nominal: must lie in \[0.0, 1.0\]"),
    ("nonnegative", _worst_rho, 0.1, -0.1, r"rho: must be finite and >= 0"),
    ("binary", _fit, [0.0, 1.0, 1.0], [0.0, 0.5, 1.0], "labels: labels must be 0 or 1; 1 of 3"),
    ("logps", _align, [-1.0, -2.0], [-1.0, 0.5], r"policy_logps: log-probabilities must be <= 0"),
]
IDS = [c[0] for c in CASES]


def _f64(x):
    return jnp.asarray(x, jnp.float64)


@pytest.mark.parametrize(("label", "fn", "good", "bad", "match"), CASES, ids=IDS)
def test_jit_raises_on_bad_values_and_not_on_good(label, fn, good, bad, match):
    jitted = jax.jit(fn)
    out = jax.block_until_ready(jitted(_f64(good)))
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(out))
    with pytest.raises(JaxRuntimeError, match=match):
        jax.block_until_ready(jitted(_f64(bad)))


@pytest.mark.parametrize(("label", "fn", "good", "bad", "match"), CASES, ids=IDS)
def test_eager_numpy_raises_value_error_at_the_call(label, fn, good, bad, match):
    """Host values: ``ValueError`` at the call, before any work (the conventional path)."""
    if label in ("finite", "finite_robust", "binary", "logps", "range_labels", "positive"):
        with pytest.raises(ValueError, match=match):
            _eager_numpy(fn, bad)
    else:  # a Python scalar
        with pytest.raises(ValueError, match=match):
            fn(bad)


def _eager_numpy(fn, bad):
    if fn is _dpo:
        z = -np.ones(3)
        return losses.dpo_loss(np.asarray(bad), z, z, z)
    if fn is _worst:
        return robust.worst_case_pair_loss(np.asarray(bad), 0.5, 0.1)
    if fn is _btl:
        return losses.btl_nll(np.zeros(3), np.ones(3), np.asarray(bad))
    if fn is _fit:
        return pbpo.fit_btl_mle(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), np.asarray(bad))
    if fn is _lengths:
        return alignment.exact_alignment_metrics(
            -np.ones(2), -np.ones(2), np.zeros(2), np.asarray(bad)
        )
    lp = np.asarray(bad)
    return alignment.exact_alignment_metrics(lp, -np.ones(2), np.zeros(2), np.ones(2))


def test_vmap_reports_once_for_the_whole_batch():
    batch = _f64([[-1.0, -1.0, -1.0], [-1.0, NAN, -1.0], [np.inf, NAN, -1.0]])
    assert np.all(np.isfinite(jax.jit(jax.vmap(_dpo))(batch[:1])))
    # 3 non-finite values over the batch: the rule sums the per-example counts.
    with pytest.raises(JaxRuntimeError, match="policy_chosen_logps: contains 3 non-finite"):
        jax.block_until_ready(jax.jit(jax.vmap(_dpo))(batch))
    with pytest.raises(JaxRuntimeError, match="h: contains 3 non-finite"):
        jax.block_until_ready(jax.vmap(jax.vmap(_worst))(batch[1:].reshape(2, 3, 1)))


def test_grad_jvp_and_scan_keep_the_check():
    good, bad = _f64([-1.0, -2.0, -1.5]), _f64([-1.0, NAN, -1.0])
    loss = lambda pc: _dpo(pc).sum()  # noqa: E731
    assert np.all(np.isfinite(jax.jit(jax.grad(loss))(good)))
    with pytest.raises(JaxRuntimeError, match="policy_chosen_logps: contains 1 non-finite"):
        jax.block_until_ready(jax.jit(jax.grad(loss))(bad))
    with pytest.raises(JaxRuntimeError, match="h: contains 1 non-finite"):
        jax.block_until_ready(jax.jvp(lambda h: _worst(h).sum(), (bad,), (good,)))

    def scanned(rows):
        return jax.lax.scan(lambda c, r: (c + loss(r), None), 0.0, rows)[0]

    rows = jnp.stack([good, good, bad])
    assert np.isfinite(jax.jit(scanned)(rows[:2]))
    with pytest.raises(JaxRuntimeError, match="policy_chosen_logps: contains 1 non-finite"):
        jax.block_until_ready(jax.jit(scanned)(rows))
    # a scalar argument traced through a while loop's body
    beta_loop = lambda b: jax.lax.fori_loop(0, 2, lambda i, c: c + loss(good * 0 + b), 0.0)  # noqa: E731
    with pytest.raises(JaxRuntimeError, match=r"policy_chosen_logps: contains 3 non-finite"):
        jax.block_until_ready(jax.jit(beta_loop)(np.nan))


def test_sharded_inputs_and_shard_map():
    mesh = jax.make_mesh((4,), ("batch",))
    spec = NamedSharding(mesh, PartitionSpec("batch"))
    good = jax.device_put(_f64(-np.ones(8)), spec)
    bad = jax.device_put(_f64(-np.ones(8)).at[5].set(NAN), spec)
    assert np.all(np.isfinite(jax.jit(_dpo)(good)))
    with pytest.raises(JaxRuntimeError, match="policy_chosen_logps: contains 1 non-finite"):
        jax.block_until_ready(jax.jit(_dpo)(bad))
    per_shard = jax.shard_map(_dpo, mesh=mesh, in_specs=PartitionSpec("batch"), out_specs=spec.spec)
    assert np.all(np.isfinite(jax.jit(per_shard)(good)))
    with pytest.raises(JaxRuntimeError, match="policy_chosen_logps: contains 1 non-finite"):
        jax.block_until_ready(jax.jit(per_shard)(bad))


@jax.jit
def _slow_copy(values, a):
    """``values``, returned by a program that first spends ~1 s in matrix products (dispatched
    asynchronously, so its result is not ready when the call returns)."""
    for _ in range(4):
        a = jnp.tanh(a @ a)
    return values + 0.0 * a[0, 0]


@pytest.mark.parametrize("bad", [False, True], ids=["good", "bad"])
def test_eager_device_array_is_checked_without_waiting_for_it(bad):
    """The default for eager JAX arrays: the check neither waits for the argument nor copies it
    to the host (``transfer_guard`` refuses implicit copies on accelerators; on CPU, where the
    array is host memory, ``is_ready`` shows that nothing waited for it), and a bad value is
    still reported, by ``wait_value_checks``."""
    values = _f64([-1.0, NAN if bad else -2.0, -1.0])
    a = jnp.full((768, 768), 1.0 / 768)
    with jaxpref.value_checks(True):
        _dpo(_f64([-1.0, -2.0, -1.0]))  # compile the check programs and the loss's ops first
        jax.block_until_ready(_slow_copy(values, a))
        pc = _slow_copy(values, a)
        if pc.is_ready():
            pytest.skip("the producer ran synchronously: nothing to observe")
        with jax.transfer_guard_device_to_host("disallow"):
            out = _dpo(pc)
        assert not pc.is_ready(), "the value check waited for its argument"
        assert out.shape == (3,)
        if bad:
            with pytest.raises(ValueError, match="policy_chosen_logps: contains 1 non-finite"):
                jaxpref.wait_value_checks()
        else:
            jaxpref.wait_value_checks()
            assert np.all(np.isfinite(out))


def test_eager_failure_is_raised_by_the_next_checked_call():
    """Without ``wait_value_checks`` a failure is raised by a later check once its result is
    ready: one of the same call or the next call's first; and only once."""
    good = _f64([-1.0, -1.0, -1.0])
    with jaxpref.value_checks(True):
        with pytest.raises(ValueError, match="h: contains 1 non-finite.*asynchronous check"):
            _worst(_f64([0.0, NAN, 0.0]))
            for entry in list(jaxpref._checks._PENDING):  # let the asynchronous checks finish
                jax.block_until_ready(entry[1:])
            _dpo(good)
        _dpo(good)
        jaxpref.wait_value_checks()


def test_wait_mode_checks_eager_device_arrays_at_the_call():
    with jaxpref.value_checks(True, wait=True):
        with pytest.raises(ValueError, match="policy_chosen_logps: contains 1 non-finite"):
            _dpo(_f64([-1.0, NAN, -1.0]))
        # the count and the first offender, computed by the eager program only on failure
        with pytest.raises(
            ValueError, match=r"lengths: .* 2 of 4 value\(s\) are not \(e.g. -3.0\)"
        ):
            _lengths(jnp.asarray([1.0, -3.0, 2.0, 0.0]))
        _lengths(jnp.asarray([1.0, 3.0, 2.0, 5.0]))


def test_the_switch_turns_array_value_checks_off_but_not_static_checks(
    monkeypatch, library_checks_only
):
    bad = _f64([-1.0, NAN, -1.0])
    with jaxpref.value_checks(False):
        # traced without checks (a fresh function: a jitted one already traced keeps its checks)
        out = jax.block_until_ready(jax.jit(lambda pc: _dpo(pc))(bad))
        assert np.isnan(out[1])
        _worst(bad)
        assert not jaxpref._checks._PENDING  # nothing was dispatched
        with pytest.raises(ValueError, match="shape mismatch"):
            losses.dpo_loss(bad, bad[:2], bad, bad)
        with pytest.raises(ValueError, match="beta"):  # a Python scalar: a host value
            _dpo(-jnp.ones(3), -1.0)
        with pytest.raises(ValueError, match="policy_chosen_logps"):  # a NumPy array: too
            losses.dpo_loss(np.asarray(bad), bad, bad, bad)
    monkeypatch.setenv("JAXPREF_VALUE_CHECKS", "0")
    assert not jaxpref._checks.value_checks_enabled()
    assert np.isnan(jax.jit(lambda pc: _dpo(pc) + 0.0)(bad)[1])
    monkeypatch.setenv("JAXPREF_VALUE_CHECKS", "1")
    with pytest.raises(JaxRuntimeError, match="policy_chosen_logps"):
        jax.block_until_ready(jax.jit(lambda pc: _dpo(pc) * 1.0)(bad))
    monkeypatch.setenv("JAXPREF_VALUE_CHECKS", "maybe")
    with pytest.raises(ValueError, match="JAXPREF_VALUE_CHECKS"):
        _dpo(bad)


def test_computed_conditions_are_checked_in_the_graph_too():
    """The checks a function computes from its arguments (``check_condition``: an index range, a
    permutation) used to be skipped under ``jit``; there they now fail the computation, and on
    host values they still raise ``ValueError`` at once."""
    from jaxpref._checks import check_condition

    rng = np.random.default_rng(0)
    phi, pref = rng.normal(size=(3, 4, 2)), rng.uniform(0.1, 0.9, size=(3, 4, 4))
    prob = robust.preference_problem(phi, np.log(np.full((3, 4), 0.25)), pref)
    theta = jnp.zeros(2, prob.phi.dtype)
    grad_at = jax.jit(lambda c: robust.pair_gradient_estimate(theta, prob, 0.1, c, 0, 1))
    grad_at(2)  # in range: fine
    with pytest.raises(JaxRuntimeError, match="context: must lie in"):
        jax.block_until_ready(grad_at(100))  # JAX would clamp the gather to context 2

    nll = jax.jit(losses.plackett_luce_nll)
    nll(jnp.zeros((2, 3)), jnp.array([[2, 0, 1], [0, 1, 2]]))
    with pytest.raises(JaxRuntimeError, match="ranking: each row must be a permutation"):
        jax.block_until_ready(nll(jnp.zeros((2, 3)), jnp.array([[2, 0, 1], [0, 0, 2]])))

    with pytest.raises(ValueError, match=r"x: a \{literal\} brace"):
        check_condition("x", np.array([False, True]), "a {literal} brace")
    check_condition("x", np.array([False, False]), "never raised")

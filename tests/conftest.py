"""Strict JAX for the whole suite: float64 available, rank promotion raises, 8 CPU devices;
the math layer's jaxtyping shape annotations checked at run time (beartype, the dev extra)."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
# Bad-argument tests see an eager JAX array's value error at the call (the host check); the
# asynchronous default and the in-graph checks are tested in tests/test_value_checks.py.
os.environ.setdefault("JAXPREF_VALUE_CHECKS", "wait")
# The suite's programs are tiny and compiled once each, so compiling is most of its time: skip
# LLVM's optimisation passes (measured on a 2-core AMD EPYC, 2026-12-01: a DPO training test
# 24-28 s -> 19-21 s). Results move only by float32 round-off (no fast-math; one tolerance at
# the edge was widened); run times do, so no test times anything against these flags.
# Subprocesses inherit them. JAXPREF_TEST_XLA_OPT=1 keeps XLA's defaults.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if os.environ.get("JAXPREF_TEST_XLA_OPT", "0") != "1":
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()

import jax  # noqa: E402
import jaxtyping  # noqa: E402
import pytest  # noqa: E402

# Every annotated function of these modules checks its arguments' and results' dtypes and
# shapes (consistently across arguments: "N d" and " N" share N) on each call; under ``jit``
# only while tracing. Installed here, before any test module imports jaxpref, so that it
# holds under pytest-xdist workers too.
SHAPE_CHECKED = (
    "jaxpref.linalg",
    "jaxpref.design",
    "jaxpref.losses",
    "jaxpref.metrics",
    "jaxpref.pbpo",
    "jaxpref.robust",
    "jaxpref.regularizers",
    "jaxpref.policies.loglinear",
    "jaxpref.policies.autoregressive",
)
jaxtyping.install_import_hook(SHAPE_CHECKED, "beartype.beartype")

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def library_checks_only():
    """Turn the shape hook off for one test: the library's own argument errors (ValueError
    naming the argument), as a user without the hook sees them, instead of jaxtyping's
    TypeCheckError raised before them."""
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", False)


# Modules whose module-scoped fixture costs tens of seconds (an experiment run, two training
# processes, a notebook): pytest-xdist's default scheduling spreads their tests over both
# workers, so each worker paid the fixture (the multihost one, ~150 s, twice). Each of these
# modules is one unit of work; every other test is scheduled alone, as with ``--dist load``.
# (``--dist loadgroup`` would do this with marks, but pytest-xdist 3.8 renames node ids through
# an attribute pytest 9 no longer reads, so its groups are silently ignored.)
ONE_WORKER_MODULES = frozenset(
    f"tests/test_{name}.py"
    for name in (
        "train_multihost",
        "pm_rlhf_llm_experiment",
        "robust_experiment",
        "pbpo_experiment",
        "adpo_llm_experiment",
        "logit_error_experiment",
        "notebook_01",
        "pbpo_notebook",
    )
)


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in ONE_WORKER_MODULES else nodeid

    return ModuleFixtureScheduling(config, log)

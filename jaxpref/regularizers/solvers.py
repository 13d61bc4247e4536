"""Optax gradient ascent on a softmax policy over K responses: exact and REINFORCE-LOO.

Maximises J(θ) = E_{y~π_θ}[r(y) + R_y(π_θ(y))] with π_θ = softmax(θ). ``regularizer`` maps the
(K,) probabilities to the (K,) per-response terms R_y(π(y)) (e.g. ``pm_regularizer``, a
``kl_regularizer`` closure). Each solver is an ``(init, update)`` pair over ``SolverState``;
``run_solver`` scans ``update``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from jaxpref.regularizers import _validate

Regularizer = Callable[[Array], Array]


class SolverState(NamedTuple):
    logits: Array  # (K,) θ, π_θ = softmax(θ)
    opt_state: Any  # optax state for θ
    step: Array  # () number of updates done


def expected_objective(
    logits: Float[ArrayLike, " K"], rewards: Float[ArrayLike, " K"], regularizer: Regularizer
) -> Float[Array, ""]:
    r""":math:`J(\theta) = \sum_k \pi_k (r_k + R_k(\pi_k))`, π = softmax(θ) (eq. (3.5)/(3.12)).

    References: Xiao et al., arXiv 2405.16455, eqs. (3.5) and (3.12).
    """
    probs = jax.nn.softmax(logits)
    return jnp.sum(probs * (rewards + regularizer(probs)))  # Eq. (3.12)


def _init(optimizer):
    def init(logits: Float[ArrayLike, " K"]) -> SolverState:
        _validate.vector("logits", logits)
        return SolverState(logits, optimizer.init(logits), jnp.zeros((), jnp.int32))

    return init


def _apply(optimizer, state, grad):
    updates, opt_state = optimizer.update(grad, state.opt_state, state.logits)
    return SolverState(optax.apply_updates(state.logits, updates), opt_state, state.step + 1)


def exact_gradient_ascent(
    rewards: Float[ArrayLike, " K"],
    regularizer: Regularizer,
    optimizer: optax.GradientTransformation,
):
    """(init, update) for ascent on the exact J(θ); ``update(state, key=None) -> (state, J)``.

    References: Xiao et al., arXiv 2405.16455, eq. (3.1) under Hypothesis 3.1 (softmax over K).
    """
    _, update = parametric_ascent(_identity, rewards, regularizer, optimizer)
    return _init(optimizer), update


def _identity(logits):
    return logits


def parametric_ascent(
    logits_fn: Callable[[Any], Array],
    rewards: Float[ArrayLike, " K"],
    regularizer: Regularizer,
    optimizer: optax.GradientTransformation,
    *,
    num_samples: int | None = None,
):
    r"""(init, update) for ascent on J over the parameters of any policy π = softmax(logits_fn(θ)).

    .. math:: J(\theta) = \sum_k \pi_k (r_k + R_k(\pi_k)),\qquad
              \pi = \mathrm{softmax}(\texttt{logits\_fn}(\theta))

    (eq. (3.12)); θ is any pytree (e.g. a tabular autoregressive policy whose ``logits_fn`` gives
    the log-probs of all K enumerable sequences). The gradient is exact (``num_samples=None``) or
    the REINFORCE leave-one-out estimate of ``reinforce_loo_surrogate`` from ``num_samples``
    draws y ~ π_θ. ``update(state, key) -> (state, J)``, J at the state before the step; the
    state's ``logits`` field holds θ. With ``logits_fn`` the identity this is
    ``exact_gradient_ascent`` / ``reinforce_loo``.

    References: Xiao et al., arXiv 2405.16455, eqs. (3.1), (3.12); Williams (1992); Kool, van
      Hoof & Welling (ICLR 2019 workshop) for the leave-one-out baseline.
    """
    _validate.vector("rewards", rewards)
    _validate.finite(rewards=rewards)
    if num_samples is not None and (not isinstance(num_samples, int) or num_samples < 2):
        raise ValueError(f"num_samples: need an integer >= 2, got {num_samples!r}")

    def init(params) -> SolverState:
        shape = jax.eval_shape(logits_fn, params).shape
        if shape != jnp.shape(rewards):
            raise ValueError(
                f"logits_fn: gives shape {shape} for these parameters, but rewards has shape "
                f"{jnp.shape(rewards)}"
            )
        return SolverState(params, optimizer.init(params), jnp.zeros((), jnp.int32))

    def objective(params):
        return expected_objective(logits_fn(params), rewards, regularizer)

    def update(state: SolverState, key: PRNGKeyArray | None = None):
        if num_samples is None:
            value, grad = jax.value_and_grad(lambda p: -objective(p))(state.logits)
            return _apply(optimizer, state, grad), -value
        logits = logits_fn(state.logits)
        samples = jax.random.categorical(key, logits, shape=(num_samples,))

        def loss(p):
            return -reinforce_loo_surrogate(logits_fn(p), samples, rewards, regularizer)

        grad = jax.grad(loss)(state.logits)
        return _apply(optimizer, state, grad), expected_objective(logits, rewards, regularizer)

    return init, update


def reinforce_loo_surrogate(
    logits: Float[ArrayLike, " K"],
    samples: Array,
    rewards: Float[ArrayLike, " K"],
    regularizer: Regularizer,
) -> Float[Array, ""]:
    r"""Surrogate whose gradient is the REINFORCE leave-one-out estimate of ∇J(θ).

    For y₁..y_n ~ π_θ, f_j = r(y_j) + R(π(y_j)), b_j = (Σ_{i≠j} f_i)/(n − 1):

    .. math:: \hat g = \frac1n\sum_j (f_j - b_j)\nabla\log\pi_\theta(y_j)
              + \frac1n\sum_j \nabla_\theta R(\pi_\theta(y_j)),

    the second (pathwise) term because R depends on θ; E ĝ = ∇J.

    References: Williams (1992); Kool, van Hoof & Welling, "Buy 4 REINFORCE samples, get a
      baseline for free!" (ICLR 2019 workshop) for the leave-one-out baseline.
    """
    logp = jax.nn.log_softmax(logits)
    reg = regularizer(jnp.exp(logp))[samples]
    f = jax.lax.stop_gradient(rewards[samples] + reg)
    n = samples.shape[0]
    baseline = (jnp.sum(f) - f) / (n - 1)  # leave-one-out
    return jnp.mean((f - baseline) * logp[samples]) + jnp.mean(reg)


def reinforce_loo(
    rewards: Float[ArrayLike, " K"],
    regularizer: Regularizer,
    optimizer: optax.GradientTransformation,
    num_samples: int,
):
    """(init, update) for REINFORCE-LOO ascent; ``update(state, key) -> (state, J)``.

    References: see ``reinforce_loo_surrogate``.
    """
    if not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples: need an integer >= 2, got {num_samples!r}")
    _, update = parametric_ascent(
        _identity, rewards, regularizer, optimizer, num_samples=num_samples
    )
    return _init(optimizer), update


def run_solver(update, state: SolverState, num_steps: int, key: PRNGKeyArray | None = None):
    """Scan ``update`` for ``num_steps``; returns (final state, (num_steps,) objective trace)."""
    keys = jax.random.split(jax.random.key(0) if key is None else key, num_steps)
    return _scan(update, state, keys)


@partial(jax.jit, static_argnums=0)  # compiled once per update function, not per call
def _scan(update, state, keys):
    return jax.lax.scan(update, state, keys)

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
from jaxtyping import Array, Float, PRNGKeyArray

from jaxpref.regularizers import _validate

Regularizer = Callable[[Array], Array]


class SolverState(NamedTuple):
    logits: Array  # (K,) θ, π_θ = softmax(θ)
    opt_state: Any  # optax state for θ
    step: Array  # () number of updates done


def expected_objective(
    logits: Float[Array, " K"], rewards: Float[Array, " K"], regularizer: Regularizer
) -> Float[Array, ""]:
    r""":math:`J(\theta) = \sum_k \pi_k (r_k + R_k(\pi_k))`, π = softmax(θ) (eq. (3.5)/(3.12)).

    References: Xiao et al., arXiv 2405.16455, eqs. (3.5) and (3.12).
    """
    probs = jax.nn.softmax(logits)
    return jnp.sum(probs * (rewards + regularizer(probs)))  # Eq. (3.12)


def _init(optimizer):
    def init(logits: Float[Array, " K"]) -> SolverState:
        _validate.vector("logits", logits)
        return SolverState(logits, optimizer.init(logits), jnp.zeros((), jnp.int32))

    return init


def _apply(optimizer, state, grad):
    updates, opt_state = optimizer.update(grad, state.opt_state, state.logits)
    return SolverState(optax.apply_updates(state.logits, updates), opt_state, state.step + 1)


def exact_gradient_ascent(
    rewards: Float[Array, " K"], regularizer: Regularizer, optimizer: optax.GradientTransformation
):
    """(init, update) for ascent on the exact J(θ); ``update(state, key=None) -> (state, J)``.

    References: Xiao et al., arXiv 2405.16455, eq. (3.1) under Hypothesis 3.1 (softmax over K).
    """
    _validate.vector("rewards", rewards)
    _validate.finite(rewards=rewards)
    loss = lambda th: -expected_objective(th, rewards, regularizer)  # noqa: E731

    def update(state: SolverState, key=None):
        value, grad = jax.value_and_grad(loss)(state.logits)
        return _apply(optimizer, state, grad), -value

    return _init(optimizer), update


def reinforce_loo_surrogate(
    logits: Float[Array, " K"],
    samples: Array,
    rewards: Float[Array, " K"],
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
    rewards: Float[Array, " K"],
    regularizer: Regularizer,
    optimizer: optax.GradientTransformation,
    num_samples: int,
):
    """(init, update) for REINFORCE-LOO ascent; ``update(state, key) -> (state, J)``.

    References: see ``reinforce_loo_surrogate``.
    """
    _validate.vector("rewards", rewards)
    _validate.finite(rewards=rewards)
    if not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples: need an integer >= 2, got {num_samples!r}")

    def update(state: SolverState, key: PRNGKeyArray):
        samples = jax.random.categorical(key, state.logits, shape=(num_samples,))
        loss = lambda th: -reinforce_loo_surrogate(th, samples, rewards, regularizer)  # noqa: E731
        grad = jax.grad(loss)(state.logits)
        value = expected_objective(state.logits, rewards, regularizer)
        return _apply(optimizer, state, grad), value

    return _init(optimizer), update


def run_solver(update, state: SolverState, num_steps: int, key: PRNGKeyArray | None = None):
    """Scan ``update`` for ``num_steps``; returns (final state, (num_steps,) objective trace)."""
    keys = jax.random.split(jax.random.key(0) if key is None else key, num_steps)
    return _scan(update, state, keys)


@partial(jax.jit, static_argnums=0)  # compiled once per update function, not per call
def _scan(update, state, keys):
    return jax.lax.scan(update, state, keys)

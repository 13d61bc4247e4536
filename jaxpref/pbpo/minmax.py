"""The min-max policy step of PbPO, exactly over finite policy classes and by gradients.

π_{k+1} = argmax_π min_{θ ∈ C_k} ( E_π r_θ − E_{π_ref} r_θ ). For linear r_θ the inner minimum
is `pessimistic_value(θ̂, Σ, β, E_π φ − E_{π_ref} φ)`, so a finite class is solved by enumeration.
For parameterised policies (an LLM later) the constraint is relaxed into a penalty and the game
is played by gradients with policy and reward parameters as pytrees (`stackelberg_*`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxpref import _checks
from jaxpref.pbpo import confidence


def minmax_finite(
    theta_hat,
    gram,
    radius,
    policy_features: Float[ArrayLike, "N d"],
    ref_features: Float[ArrayLike, " d"],
):
    """Exact min-max step over a finite policy class {π_1..π_N} given by E_{π_n} φ.

    n* = argmax_n [ ⟨θ̂, u_n⟩ − β‖u_n‖_{Σ⁻¹} ],  u_n = E_{π_n} φ − E_{π_ref} φ.

    Args:
      theta_hat: (d,); gram: (d, d); radius: β ≥ 0.
      policy_features: (N, d) expected features of the N candidate policies.
      ref_features: (d,) E_{π_ref} φ.

    Returns:
      (index (), values (N,)): the maximiser and each policy's worst-case advantage.

    References: Zhan et al., arXiv 2305.14816, Eq. (4); Jia, arXiv 2511.12867, min-max policy
      optimisation (Eq. of π_{k+1}) [summary].
    """
    (_, d) = _checks.check_ndim("policy_features", policy_features, 2)
    if _checks.shape_of("ref_features", ref_features) != (d,):
        raise ValueError(f"ref_features: expected shape ({d},) to match policy_features")
    u = jnp.asarray(policy_features) - jnp.asarray(ref_features)[None, :]
    values = confidence.pessimistic_value(theta_hat, gram, radius, u)  # Eq. (min-max)
    return jnp.argmax(values), values


def deterministic_policy_features(features: Float[ArrayLike, "X Y d"], context_probs):
    """E_π φ for every deterministic tabular policy π: x ↦ y (all Y^X of them).

    E_π φ = Σ_x d₀(x) φ(x, π(x)); with `minmax_finite` this gives the exact joint min-max step
    over the deterministic tabular class (small X and Y only: Y^X rows).

    Args:
      features: (X, Y, d) response features.  context_probs: (X,) d₀.

    Returns:
      (policy_features (Y^X, d), choices (Y^X, X) int: row n is the policy x ↦ choices[n, x]).

    References: Jia, arXiv 2511.12867, min-max step over a policy class [summary].
    """
    (x, y, _) = _checks.check_ndim("features", features, 3)
    if _checks.shape_of("context_probs", context_probs) != (x,):
        raise ValueError(f"context_probs: expected shape ({x},) to match features")
    _checks.check_int_in("Y^X", y**x, 1, 10**6)
    choices = np.array(list(itertools.product(range(y), repeat=x)), dtype=np.int32)
    chosen = jnp.asarray(features)[np.arange(x)[None, :], choices]  # (Y^X, X, d)
    return jnp.einsum("x,nxd->nd", jnp.asarray(context_probs), chosen), choices  # E_π φ


def minmax_responses_unchecked(theta_hat, gram, radius, phi, ref_probs, sign=-1.0):
    """Per-context exact min-max step over deterministic responses ∪ {π_ref} (jittable).

    For each context x: u_y = φ(x, y) − E_{π_ref(·|x)} φ(x, ·) and
    v_y = ⟨θ̂, u_y⟩ + sign · β‖u_y‖_{Σ⁻¹} (sign −1: min over C_k; +1: max, the optimistic rule).
    The new policy is one-hot on argmax_y v_y if that value is > 0, else π_ref(·|x) itself (whose
    advantage over itself is 0 for every θ).

    Args:
      phi: (X, Y, d) response features; ref_probs: (X, Y) π_ref.

    Returns:
      (X, Y) the next policy.

    References: Zhan et al., arXiv 2305.14816, Eq. (4); Jia, arXiv 2511.12867 [summary].
    """
    u = phi - jnp.einsum("xy,xyd->xd", ref_probs, phi)[:, None, :]
    vals = u @ theta_hat + sign * radius * confidence.width_unchecked(gram, u)  # Eq. (min-max)
    best = jax.nn.one_hot(jnp.argmax(vals, -1), phi.shape[1], dtype=phi.dtype)
    return jnp.where((jnp.max(vals, -1) <= 0.0)[:, None], ref_probs, best)


class StackelbergState(NamedTuple):
    """Parameters of the penalised min-max game (leader: policy; follower: reward model)."""

    policy_params: Any  # pytree ψ of the policy π_ψ
    reward_params: Any  # pytree θ of the reward model r_θ
    step: Array  # ()   number of leader updates


def stackelberg_init(policy_params, reward_params) -> StackelbergState:
    """Start the game at (ψ_0, θ_0) (θ_0 = θ̂ is natural)."""
    return StackelbergState(policy_params, reward_params, jnp.zeros((), jnp.int32))


def _sgd(params, grads, lr):
    return jax.tree.map(lambda p, g: p - lr * g, params, grads)


def follower_descent(theta, objective: Callable, *, lr, steps: int):
    """The follower's move in the penalised game: ``steps`` gradient-descent steps
    θ ← θ − lr ∇G(θ) on its objective G (a pytree θ; jittable, no argument checks). For an
    L-smooth convex G, lr ≤ 1/L makes every step decrease G (the LLM recipe takes lr = 1/L).

    References: Nesterov, *Lectures on Convex Optimization* (2018), Thm. 2.1.14 (gradient
      descent with step 1/L); Jia, arXiv 2511.12867 (the follower of the Stackelberg relaxation).
    """
    body = lambda _, th: _sgd(th, jax.grad(objective)(th), lr)  # noqa: E731
    return jax.lax.fori_loop(0, steps, body, theta)


def stackelberg_update(
    state: StackelbergState,
    advantage_fn: Callable,
    penalty_fn: Callable,
    *,
    penalty_weight,
    policy_lr,
    reward_lr,
    reward_steps: int = 10,
):
    """One leader step of the penalised (Stackelberg) relaxation of the min-max step.

    max_ψ min_θ  G(ψ, θ) = A(ψ, θ) + η · P(θ),  A(ψ, θ) = E_{π_ψ} r_θ − E_{π_ref} r_θ,

    with P(θ) a data-fit penalty replacing θ ∈ C_k (e.g. the BTL NLL ℓ_λ(θ) − ℓ_λ(θ̂), or
    ½‖θ − θ̂‖²_{Σ_k}). The follower takes ``reward_steps`` gradient steps on θ; the leader then
    ascends ∂_ψ A(ψ, θ_follower) (envelope theorem: at an exact follower optimum this is the
    total Stackelberg gradient, since ∂_θ G = 0 there). **[Reconstruction]** of PbPO's
    "Stackelberg-style relaxation" whose losses are not published.

    Args:
      state: current (ψ, θ).  advantage_fn: (ψ, θ) ↦ A.  penalty_fn: θ ↦ P.
      penalty_weight: η > 0.  policy_lr, reward_lr: step sizes.  reward_steps: follower steps.

    Returns:
      the next `StackelbergState`.

    References: Jia, arXiv 2511.12867 (Stackelberg relaxation, per the SPEC secondary source);
      Fiez, Chasnov & Ratliff, "Implicit learning dynamics in Stackelberg games", arXiv
      1906.01217 (leader/follower gradient play).
    """

    def objective(theta):
        return advantage_fn(state.policy_params, theta) + penalty_weight * penalty_fn(theta)

    theta = follower_descent(state.reward_params, objective, lr=reward_lr, steps=reward_steps)
    g_psi = jax.grad(advantage_fn)(state.policy_params, theta)
    psi = _sgd(state.policy_params, g_psi, -policy_lr)  # ascent for the leader
    return StackelbergState(psi, theta, state.step + 1)


__all__ = [
    "StackelbergState",
    "deterministic_policy_features",
    "follower_descent",
    "minmax_finite",
    "minmax_responses_unchecked",
    "stackelberg_init",
    "stackelberg_update",
]

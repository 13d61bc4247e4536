"""Testbeds with a hidden θ* and a BTL oracle: a linear contextual dueling bandit and a linear
token-level MDP of horizon H, both reduced to per-context finite sets of responses.

A `PreferenceEnv` holds the trajectory features Φ(x, y) of every response y of every context x,
so J(π) = Σ_x d₀(x) Σ_y π(y|x) ⟨θ*, Φ(x, y)⟩ is exact by enumeration.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jaxpref import _checks
from jaxpref.pbpo import reward


class PreferenceEnv(NamedTuple):
    """A finite preference environment (all fields arrays, so it vmaps over instances)."""

    features: Array  # (X, Y, d) trajectory features Φ(x, y)
    theta_star: Array  # (d,)      hidden reward parameter θ*
    context_probs: Array  # (X,)      context distribution d₀


def _unit_rows(key, shape, dtype):
    z = jax.random.normal(key, shape, dtype)
    return z / jnp.linalg.norm(z, axis=-1, keepdims=True)


def dueling_bandit(
    key, *, num_contexts: int, num_arms: int, d: int, bound_theta=1.0, dtype=jnp.float32
) -> PreferenceEnv:
    """Linear contextual dueling bandit: Φ(x, a) uniform on the unit sphere, ‖θ*‖ = B, d₀ uniform.

    References: Saha, "Optimal algorithms for stochastic contextual preference bandits",
      NeurIPS 2021 (setting); Jia, arXiv 2511.12867, sequence-level RM [summary].
    """
    for name, v in (("num_contexts", num_contexts), ("num_arms", num_arms), ("d", d)):
        _checks.check_int_in(name, v, 1, 10**6)
    k_phi, k_theta = jax.random.split(key)
    phi = _unit_rows(k_phi, (num_contexts, num_arms, d), dtype)
    theta = bound_theta * _unit_rows(k_theta, (d,), dtype)
    return PreferenceEnv(phi, theta, jnp.full((num_contexts,), 1.0 / num_contexts, dtype))


def token_sequences(vocab: int, horizon: int) -> np.ndarray:
    """All V^H token sequences as an (V^H, H) integer array (lexicographic order)."""
    return np.array(list(itertools.product(range(vocab), repeat=horizon)), dtype=np.int32)


MAX_ENUMERATION = 2**27
"""Largest X·V^H·H·d feature array `token_features` builds (512 MiB in float32)."""


def token_features(
    key, *, num_contexts: int, vocab: int, horizon: int, d: int, dtype=jnp.float32
) -> Array:
    """Per-step features φ(s_h, a_h) of every sequence: (X, V^H, H, d).

    The state s_h = (x, a_{<h}) enters through (x, h, a_{h−1}) (a_0 = 0), i.e. a Markov linear
    token MDP with deterministic transitions; each φ(x, h, a_{h−1}, a_h) is a unit vector.
    """
    for name, v in (
        ("num_contexts", num_contexts),
        ("vocab", vocab),
        ("horizon", horizon),
        ("d", d),
    ):
        _checks.check_int_in(name, v, 1, 10**6)
    size = num_contexts * vocab**horizon * horizon * d  # exact Python integers
    if size > MAX_ENUMERATION:
        raise ValueError(
            f"horizon: enumerating all {vocab}^{horizon} sequences for {num_contexts} contexts "
            f"needs {size:.3g} feature entries (> {MAX_ENUMERATION:.3g}); lower vocab or horizon"
        )
    table = _unit_rows(key, (num_contexts, horizon, vocab, vocab, d), dtype)
    seq = token_sequences(vocab, horizon)  # (Y, H)
    prev = np.concatenate([np.zeros_like(seq[:, :1]), seq[:, :-1]], axis=1)
    steps = np.arange(horizon)[None, :]
    return table[:, steps, prev, seq]  # (X, Y, H, d)


def token_mdp(
    key, *, num_contexts: int, vocab: int, horizon: int, d: int, bound_theta=1.0, dtype=jnp.float32
) -> PreferenceEnv:
    """Linear token-level MDP of horizon H as a `PreferenceEnv` (Φ = Σ_h φ(s_h, a_h)).

    References: Jia, arXiv 2511.12867, token-level RM r_θ(τ) = Σ_h ⟨θ, φ(s_h, a_h)⟩ [summary].
    """
    k_phi, k_theta = jax.random.split(key)
    phi_tok = token_features(
        k_phi, num_contexts=num_contexts, vocab=vocab, horizon=horizon, d=d, dtype=dtype
    )
    theta = bound_theta * _unit_rows(k_theta, (d,), dtype)
    return PreferenceEnv(
        reward.trajectory_features(phi_tok),
        theta,
        jnp.full((num_contexts,), 1.0 / num_contexts, dtype),
    )


def btl_label(key, theta_star, phi_1, phi_0):
    """Oracle label o ~ Bernoulli(σ(⟨θ*, φ(τ¹) − φ(τ⁰)⟩)) (1 when τ¹ is preferred).

    References: Bradley & Terry (1952); Jia, arXiv 2511.12867 (preference oracle o_k) [summary].
    """
    p = reward.btl_prob(theta_star, phi_1 - phi_0)  # BTL model
    return jax.random.bernoulli(key, p).astype(phi_1.dtype)


def policy_value(env: PreferenceEnv, probs: Float[Array, "X Y"]) -> Float[Array, ""]:
    """J(π) = Σ_x d₀(x) Σ_y π(y|x) ⟨θ*, Φ(x, y)⟩, exact by enumeration.

    References: Jia, arXiv 2511.12867, regret Σ_k [J(π*) − J(π_k)] (Theorems 1-4) [summary].
    """
    r = env.features @ env.theta_star  # (X, Y)
    return env.context_probs @ jnp.sum(probs * r, axis=-1)  # J(π)


def optimal_value(env: PreferenceEnv) -> Float[Array, ""]:
    """J(π*) = Σ_x d₀(x) max_y ⟨θ*, Φ(x, y)⟩.

    References: Jia, arXiv 2511.12867, regret Σ_k [J(π*) − J(π_k)] (Theorems 1-4) [summary].
    """
    return env.context_probs @ jnp.max(env.features @ env.theta_star, axis=-1)


__all__ = [
    "PreferenceEnv",
    "btl_label",
    "dueling_bandit",
    "optimal_value",
    "policy_value",
    "token_features",
    "token_mdp",
    "token_sequences",
]

"""Testbeds with a hidden θ* and a BTL oracle: a linear contextual dueling bandit and a linear
token-level MDP of horizon H, both reduced to per-context finite sets of responses.

A `PreferenceEnv` holds the trajectory features Φ(x, y) of every response y of every context x,
so J(π) = Σ_x d₀(x) Σ_y π(y|x) ⟨θ*, Φ(x, y)⟩ is exact by enumeration.
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

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


def policy_value(env: PreferenceEnv, probs: Float[ArrayLike, "X Y"]) -> Float[Array, ""]:
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


def env_batch(make_env, key, num: int, **kwargs) -> PreferenceEnv:
    """``num`` environments ``make_env(k, **kwargs)`` (e.g. `dueling_bandit`, `token_mdp`), one
    per key ``k`` of ``jax.random.split(key, num)``, stacked along a leading axis by one
    compiled vmap (a batch for `loop.run_loops` / `loop.run_settings`).

    ``kwargs`` are the maker's sizes and options, static in the compile: each must be hashable
    (Python numbers, strings, tuples), and each new value compiles once more."""
    _checks.check_int_in("num", num, 1, 10**9)
    for name, value in kwargs.items():
        try:
            hash(value)
        except TypeError:
            raise ValueError(
                f"{name}: env_batch passes the maker's options as static values; need a "
                f"hashable one (a Python number, string or tuple), got {type(value).__name__}"
            ) from None
    return _env_batch(make_env, jax.random.split(key, num), tuple(sorted(kwargs.items())))


@functools.partial(jax.jit, static_argnums=(0, 2))
def _env_batch(make_env, keys, kwargs: tuple):
    """One compile per (maker, sizes, number of keys): the sizes are static."""
    return jax.vmap(lambda k: make_env(k, **dict(kwargs)))(keys)


def pad_env(env: PreferenceEnv, num_responses: int, dim: int) -> PreferenceEnv:
    r"""``env`` with ``num_responses`` responses per context and ``dim`` features, so that
    environments of several sizes share one compiled loop (stacked, vmapped or mapped).

    Each context's Y responses are repeated ``num_responses / Y`` times (Φ tiled along the
    response axis) and Φ and θ* are zero-padded from d to ``dim`` coordinates. Every reward
    ⟨θ*, Φ(x, y)⟩, every norm and every inner product is unchanged, hence so are J(π*) and
    J(uniform), and the regret Σ_k [J(π*) − J(π_k)] is measured on the same values; argmaxes
    (lowest index first) stay in the first copy. The radius of a confidence set must still use
    the true d (``LoopParams.dim``).

    Args:
      env: a ``PreferenceEnv``, optionally with leading batch axes (features (..., X, Y, d),
        θ* (..., d), d₀ (..., X)).
      num_responses: a multiple of Y.
      dim: ≥ d.

    References: Jia, arXiv 2511.12867, regret Σ_k [J(π*) − J(π_k)] (Theorems 1-4) [summary].
    """
    *_, y, d = _checks.shape_of("env.features", env.features)
    if _checks.shape_of("env.theta_star", env.theta_star)[-1:] != (d,):
        raise ValueError(f"env.theta_star: expected last axis {d} (the features' d)")
    _checks.check_int_in("num_responses", num_responses, y, 10**9)
    if num_responses % y:
        raise ValueError(f"num_responses: must be a multiple of the env's {y} responses")
    _checks.check_int_in("dim", dim, d, 10**9)
    lead = (1,) * (env.features.ndim - 2)
    features = jnp.tile(env.features, (*lead, num_responses // y, 1))
    pad = [(0, 0)] * (features.ndim - 1) + [(0, dim - d)]
    theta_pad = [(0, 0)] * (env.theta_star.ndim - 1) + [(0, dim - d)]
    return env._replace(
        features=jnp.pad(features, pad), theta_star=jnp.pad(env.theta_star, theta_pad)
    )


def pad_to_common(env_list: list[PreferenceEnv]) -> list[PreferenceEnv]:
    """Every environment ``pad_env``-ed to the largest Y and d of the list (each Y must divide
    the largest)."""
    if not env_list:
        raise ValueError("env_list: need at least one environment")
    y_max = max(e.features.shape[-2] for e in env_list)
    d_max = max(e.features.shape[-1] for e in env_list)
    return [pad_env(e, y_max, d_max) for e in env_list]


__all__ = [
    "PreferenceEnv",
    "btl_label",
    "dueling_bandit",
    "env_batch",
    "optimal_value",
    "pad_env",
    "pad_to_common",
    "policy_value",
    "token_features",
    "token_mdp",
    "token_sequences",
]

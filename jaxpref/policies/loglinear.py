"""Log-linear policies π(y|x; θ) ∝ exp(φ(x, y)ᵀθ) over a finite response set.

The policy class of ADPO's Assumption 1 (Kveton et al., arXiv 2503.01076), of the robust SAIL
analysis (Li, Gaur & Aggarwal, arXiv 2602.20457) and of PbPO's linear reward models. A context is
represented by its response features ``phi`` of shape (K, d); batch over contexts with ``vmap``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray


def log_probs(theta: Float[ArrayLike, " d"], phi: Float[ArrayLike, "K d"]) -> Float[Array, " K"]:
    """log π(y|x; θ) = φ(x, y)ᵀθ − log Σ_{y'} exp φ(x, y')ᵀθ for each of the K responses.

    Example:
      >>> log_probs(jnp.zeros(2), jnp.eye(2))  # uniform over two responses
      Array([-0.6931472, -0.6931472], dtype=float32)

    References: Kveton et al., "Active Learning for Direct Preference Optimization",
      arXiv 2503.01076, Assumption 1.
    """
    return jax.nn.log_softmax(phi @ theta)


def sample(
    key: PRNGKeyArray, theta: Float[ArrayLike, " d"], phi: Float[ArrayLike, "K d"], shape=()
) -> Int[Array, "..."]:
    """Draw response indices y ~ π(·|x; θ)."""
    return jax.random.categorical(key, phi @ theta, shape=shape)


def score_function(
    theta: Float[ArrayLike, " d"], phi: Float[ArrayLike, "K d"], y: Int[ArrayLike, ""]
) -> Float[Array, " d"]:
    """∇_θ log π(y|x; θ) = φ(x, y) − E_{y'~π_θ}[φ(x, y')] (the log-linear score function)."""
    probs = jnp.exp(log_probs(theta, phi))
    return phi[y] - probs @ phi


def dpo_logit(
    theta: Float[ArrayLike, " d"],
    phi_diff: Float[ArrayLike, "... d"],
    ref_logratio: Float[ArrayLike, "..."],
    beta=1.0,
) -> Float[Array, "..."]:
    """DPO logit of a pair: h(θ) = β(φᵢᵀθ − bᵢ).

    φᵢ = φ(xᵢ, yᵢ₁) − φ(xᵢ, yᵢ₂) and bᵢ = log π₀(yᵢ₁|xᵢ) − log π₀(yᵢ₂|xᵢ) (the reference
    log-ratio). The preference probability of y₁ ≻ y₂ under the policy is σ(h).

    References: Kveton et al., arXiv 2503.01076, Eq. (6) under Assumption 1:
      μᵢ(θ) = μ(β(φᵢᵀθ − bᵢ)).
    """
    return beta * (phi_diff @ theta - ref_logratio)  # Eq. (6)

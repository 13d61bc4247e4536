"""Closed-form optimal policies over a finite response set, pairwise preferences, collapse.

All policies are returned as log-probabilities over the K responses of one prompt (batch with
``vmap``). Every objective here is of the form E_π[r̃ − log π] for a shaped reward r̃, whose
unique maximiser is the Gibbs policy softmax(r̃) (Gibbs variational principle).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from jaxpref import _checks
from jaxpref.regularizers import _validate


def gibbs_policy(shaped_rewards: Float[ArrayLike, " K"]) -> Float[Array, " K"]:
    r"""log π* for max_π E_π[r̃ − log π]: :math:`\pi^* = \mathrm{softmax}(\tilde r)`.

    Σ_k π_k(r̃_k − log π_k) = log Σ e^{r̃} − KL(π ‖ softmax r̃), so the maximiser is unique.

    Args:
      shaped_rewards: (K,) r̃.
    Returns:
      (K,) log π*.

    References: Xiao et al., arXiv 2405.16455, proof of Theorem 1 (Section 3.5).
    """
    _validate.vector("shaped_rewards", shaped_rewards)
    _validate.finite(shaped_rewards=shaped_rewards)
    return _log_softmax(shaped_rewards)


_log_softmax = jax.jit(jax.nn.log_softmax)


def pm_policy(rewards: Float[ArrayLike, " K"]) -> Float[Array, " K"]:
    r"""The PM policy :math:`\pi(y|x) = e^{r(x,y)}/\sum_{y'}e^{r(x,y')}` (eq. (3.2)), as log-probs.

    Args:
      rewards: (K,) r(x, y_k) (already divided by β where the paper does so).
    Returns:
      (K,) log π.

    References: Xiao et al., arXiv 2405.16455, Definition 3.2, eq. (3.2).
    """
    return gibbs_policy(rewards)  # Eq. (3.2)


def kl_rlhf_policy(
    rewards: Float[ArrayLike, " K"], ref_logps: Float[ArrayLike, " K"], beta
) -> Float[Array, " K"]:
    r"""KL-RLHF optimum :math:`\pi \propto \pi_{\rm ref}\,e^{r/\beta}` (Proposition 5.1), log-probs.

    Args:
      rewards: (K,) r. ref_logps: (K,) log π_ref (≤ 0). beta: β > 0.
    Returns:
      (K,) log π_rlhf.

    References: Xiao et al., arXiv 2405.16455, Proposition 5.1, eq. (5.1); Rafailov et al.,
      arXiv 2305.18290.
    """
    _validate.same_shape(rewards=rewards, ref_logps=ref_logps)
    _validate.logps("ref_logps", ref_logps)
    _validate.beta(beta)
    return gibbs_policy(ref_logps + rewards / beta)  # Eq. (5.1)


def conditional_pm_shaped_reward(
    rewards: Float[ArrayLike, " K"], ref_logps: Float[ArrayLike, " K"], alpha
) -> Float[Array, " K"]:
    r"""Shaped reward of Definition 4.1, r̃ = r + log π_ref · 1(π_ref < α).

    .. math:: \tilde r = r + \log\pi_{\rm ref}\,\mathbf 1(\pi_{\rm ref}<\alpha)

    Definition 4.1's objective equals E_π[r̃ − log π] exactly.

    References: Xiao et al., arXiv 2405.16455, Definition 4.1.
    """
    _validate.same_shape(rewards=rewards, ref_logps=ref_logps)
    _validate.logps("ref_logps", ref_logps)
    _validate.alpha(alpha)
    return _cpm_shaped(rewards, ref_logps, alpha)


@jax.jit
def _cpm_shaped(rewards, ref_logps, alpha):
    return rewards + jnp.where(ref_logps < jnp.log(alpha), ref_logps, 0.0)  # Def. 4.1


def conditional_pm_policy(
    rewards: Float[ArrayLike, " K"], ref_logps: Float[ArrayLike, " K"], alpha
) -> Float[Array, " K"]:
    r"""Exact maximiser of conditional PM RLHF (Definition 4.1), as log-probs.

    .. math:: \pi^*(y) = \frac{e^{r(y)}\,\rho(y)}{\sum_{y'} e^{r(y')}\,\rho(y')},\qquad
              \rho(y) = 1 \text{ if } \pi_{\rm ref}(y)\ge\alpha,
              \ \ \pi_{\rm ref}(y) \text{ otherwise},

    one normaliser over all K responses; conditional on M(x) = {π_ref ≥ α} it is the PM policy
    (Theorem 4). Proof: ``theory/pm_rlhf.md``.

    Args:
      rewards: (K,) r. ref_logps: (K,) log π_ref. alpha: α ∈ (0, 1].
    Returns:
      (K,) log π*.

    References: Xiao et al., arXiv 2405.16455, Definition 4.1 and Theorem 4.
    """
    return gibbs_policy(conditional_pm_shaped_reward(rewards, ref_logps, alpha))  # Thm 4


def pairwise_preference(logp_1: Float[ArrayLike, "..."], logp_2: Float[ArrayLike, "..."]):
    r"""p(y₁ | y₁, y₂) = π(y₁)/(π(y₁) + π(y₂)) = σ(log π(y₁) − log π(y₂)).

    References: Xiao et al., arXiv 2405.16455, Section 5.1 and Section 6.1 (p_llm).
    """
    _validate.same_shape(logp_1=logp_1, logp_2=logp_2)
    _validate.finite(logp_1=logp_1, logp_2=logp_2)
    return jax.nn.sigmoid(logp_1 - logp_2)  # Sec. 6.1: p_llm = π₁/(π₁ + π₂)


def kl_rlhf_pairwise_preference(
    p_ref: Float[ArrayLike, "..."], p_reward: Float[ArrayLike, "..."]
) -> Float[Array, "..."]:
    r"""Eq. (5.2), the KL-RLHF pairwise preference from the reference's and the reward's.

    .. math:: p_{\rm rlhf} = \frac{p_{\rm ref}p_{\rm reward}}
              {p_{\rm ref}p_{\rm reward}+(1-p_{\rm ref})(1-p_{\rm reward})}

    Args:
      p_ref: reference preference p_ref(y₁) ∈ [0, 1]; p_reward: p_reward(y₁) = σ((r₁ − r₂)/β)
        ∈ (0, 1), broadcastable shapes. Collapse limits: p_ref = 0 → 0, p_ref = 1 → 1.
    Returns:
      p_rlhf(y₁), broadcast shape.

    References: Xiao et al., arXiv 2405.16455, eq. (5.2) and Section 5.2.
    """
    _validate.finite(p_ref=p_ref, p_reward=p_reward)
    _checks.check_in_range("p_ref", p_ref, 0.0, 1.0)
    _checks.check_in_range("p_reward", p_reward, 0.0, 1.0, closed="neither")
    return _pairwise_52(jnp.asarray(p_ref), jnp.asarray(p_reward))


@jax.jit
def _pairwise_52(p_ref, p_reward):
    num = p_ref * p_reward
    return num / (num + (1.0 - p_ref) * (1.0 - p_reward))  # Eq. (5.2)


def reward_preference(reward_1, reward_2, beta=1.0):
    r"""p_reward(y₁) = σ((r₁ − r₂)/β), the BTL preference used in eq. (5.2).

    References: Xiao et al., arXiv 2405.16455, Section 5.1.
    """
    _validate.beta(beta)
    _validate.finite(reward_1=reward_1, reward_2=reward_2)
    return jax.nn.sigmoid((jnp.asarray(reward_1) - jnp.asarray(reward_2)) / beta)  # Sec. 5.1


def tempered_preference(p_reward: Float[ArrayLike, "..."], beta) -> Float[Array, "..."]:
    r"""σ(logit(p)/β): the preference of rewards r/β given the β = 1 preference p (Figure 9).

    References: Xiao et al., arXiv 2405.16455, Appendix A.3 (Figure 9).
    """
    _checks.check_finite("p_reward", p_reward)
    _checks.check_in_range("p_reward", p_reward, 0.0, 1.0, closed="neither")
    _validate.beta(beta)
    p = jnp.asarray(p_reward)
    return jax.nn.sigmoid((jnp.log(p) - jnp.log1p(-p)) / beta)  # Fig. 9: r → r/β


def preference_collapse_limit(p_ref: Float[ArrayLike, "..."], p_reward: Float[ArrayLike, "..."]):
    r"""Preference collapse: the limit of eq. (5.2) as β → 0 with p_reward tempered by β.

    .. math:: \lim_{\beta\to0} p_{\rm rlhf} = \begin{cases}
              1 & p_{\rm reward}>\tfrac12,\ p_{\rm ref}>0\\
              0 & p_{\rm reward}<\tfrac12,\ p_{\rm ref}<1\\
              p_{\rm ref} & p_{\rm reward}=\tfrac12\end{cases}

    and at p_ref ∈ {0, 1} eq. (5.2) equals p_ref for every β (Section 5.2). Either way the
    minority response is dropped: preference collapse.

    Args:
      p_ref: p_ref(y₁) ∈ [0, 1]. p_reward: β = 1 reward preference ∈ (0, 1). Broadcastable.
    Returns:
      the limit, broadcast shape.

    References: Xiao et al., arXiv 2405.16455, Section 5.2 and Appendix A.3.
    """
    _validate.finite(p_ref=p_ref, p_reward=p_reward)
    _checks.check_in_range("p_ref", p_ref, 0.0, 1.0)
    _checks.check_in_range("p_reward", p_reward, 0.0, 1.0, closed="neither")
    p_ref, p = jnp.asarray(p_ref), jnp.asarray(p_reward)
    up = jnp.where(p_ref > 0, 1.0, 0.0)
    down = jnp.where(p_ref < 1, 0.0, 1.0)
    return jnp.where(p > 0.5, up, jnp.where(p < 0.5, down, p_ref))  # Sec. 5.2 limit

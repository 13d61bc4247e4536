"""Policy-gradient pieces of RLHF on token sequences: shaped token rewards, GAE, PPO's clipped
losses and the leave-one-out baseline. Arrays in, arrays out; per token or per sequence.

Shapes: ``B`` sequences, ``T`` response positions (the generated tokens, left-aligned, with a
``mask`` of 1 on real tokens; everything after a sequence's end is masked out).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Shaped

from jaxpref import _checks


def _check_tokens(**arrays) -> tuple[int, ...]:
    shape = _checks.check_same_shape(**arrays)
    if len(shape) != 2:
        raise ValueError(f"{next(iter(arrays))}: expected shape (B, T), got {shape}")
    return shape


def shaped_token_rewards(
    penalty: Float[ArrayLike, "B T"],
    scores: Float[ArrayLike, " B"],
    mask: Shaped[ArrayLike, "B T"],
    *,
    beta: float,
    clip_reward_value: float | None = 5.0,
) -> Float[Array, "B T"]:
    r"""Token rewards of DeepSpeed-Chat's ``compute_rewards`` (PM RLHF's official trainer):

    .. math:: r_t = -\beta\,c_t + \mathbf 1(t = T_{\rm last})\,\mathrm{clip}(s, \pm c)

    with c_t the per-token penalty (sampled-token KL estimate, PM term, or a gated mix), s the
    reward model's score of the sequence, clipped to ±``clip_reward_value``, added on the last
    response token only; zero after the end.

    Args:
      penalty: (B, T) per-token penalties c_t (zero where masked).
      scores: (B,) sequence rewards.
      mask: (B, T) 1 on response tokens; each row needs at least one.
      beta: β ≥ 0, the penalty coefficient (``--kl_ctl``).
      clip_reward_value: c > 0, or None for no clipping.

    References: Yao et al., "DeepSpeed-Chat", arXiv 2308.01320 (``dschat/rlhf/ppo_trainer.py``);
      Xiao et al., arXiv 2405.16455, the released trainer (SPEC §5.3).
    """
    b, t = _check_tokens(penalty=penalty, mask=mask)
    if _checks.shape_of("scores", scores) != (b,):
        raise ValueError(f"scores: expected shape ({b},), got {_checks.shape_of('scores', scores)}")
    _checks.check_in_range("beta", beta, 0.0, float("inf"), closed="left")
    if clip_reward_value is not None:
        _checks.check_positive("clip_reward_value", clip_reward_value)
        scores = jnp.clip(scores, -clip_reward_value, clip_reward_value)
    mask = mask.astype(penalty.dtype)
    last = jnp.arange(t)[None, :] == (jnp.sum(mask, axis=1, keepdims=True) - 1)
    return mask * (-beta * penalty) + jnp.where(last, scores[:, None], 0.0)


def gae_advantages(
    rewards: Float[ArrayLike, "B T"],
    values: Float[ArrayLike, "B T"],
    mask: Shaped[ArrayLike, "B T"],
    *,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[Float[Array, "B T"], Float[Array, "B T"]]:
    r"""Generalised advantage estimates and returns (Schulman et al., arXiv 1506.02438, Eq. 16).

    .. math:: \delta_t = r_t + \gamma V_{t+1} - V_t,\qquad
              A_t = \sum_{l\ge0} (\gamma\lambda)^l \delta_{t+l},\qquad R_t = A_t + V_t

    with rewards and values zeroed after each sequence's end (so V past the end is 0), as
    DeepSpeed-Chat does. Returns ``(advantages, returns)``, zero where masked.
    """
    _check_tokens(rewards=rewards, values=values, mask=mask)
    mask = mask.astype(rewards.dtype)
    r, v = rewards * mask, values * mask
    v_next = jnp.concatenate([v[:, 1:], jnp.zeros_like(v[:, :1])], axis=1)
    delta = r + gamma * v_next - v  # Eq. (16)

    def back(carry, d):
        adv = d + gamma * lam * carry
        return adv, adv

    _, adv = jax.lax.scan(back, jnp.zeros_like(delta[:, 0]), delta.T, reverse=True)
    adv = adv.T * mask
    return adv, (adv + v) * mask


def ppo_policy_loss(
    logps: Float[ArrayLike, "B T"],
    old_logps: Float[ArrayLike, "B T"],
    advantages: Float[ArrayLike, "B T"],
    *,
    clip: float = 0.2,
) -> Float[Array, "B T"]:
    r"""PPO's clipped surrogate per token (Schulman et al., arXiv 1707.06347, Eq. 7), as a loss:

    .. math:: \ell_t = \max\big(-A_t\rho_t,\;
              -A_t\,\mathrm{clip}(\rho_t, 1-\epsilon, 1+\epsilon)\big),
              \quad \rho_t = e^{\log\pi - \log\pi_{\rm old}}

    The caller takes the token mean over the mask (DeepSpeed-Chat's reduction).
    """
    _checks.check_same_shape(logps=logps, old_logps=old_logps, advantages=advantages)
    _checks.check_in_range("clip", clip, 0.0, 1.0, closed="neither")
    ratio = jnp.exp(logps - old_logps)
    return jnp.maximum(-advantages * ratio, -advantages * jnp.clip(ratio, 1 - clip, 1 + clip))


def ppo_value_loss(
    values: Float[ArrayLike, "B T"],
    old_values: Float[ArrayLike, "B T"],
    returns: Float[ArrayLike, "B T"],
    *,
    clip: float = 0.2,
) -> Float[Array, "B T"]:
    r"""Clipped value loss per token: ½ max((V − R)², (clip(V, V_old ± ε) − R)²)."""
    _checks.check_same_shape(values=values, old_values=old_values, returns=returns)
    _checks.check_positive("clip", clip)
    clipped = jnp.clip(values, old_values - clip, old_values + clip)
    return 0.5 * jnp.maximum((values - returns) ** 2, (clipped - returns) ** 2)


def leave_one_out_advantages(rewards: Float[ArrayLike, "B K"]) -> Float[Array, "B K"]:
    r"""RLOO: each of K samples' reward minus the mean of the other K − 1 (Kool et al. 2019;
    Ahmadian et al., arXiv 2402.14740, Eq. 7): A_k = r_k − (Σ_j r_j − r_k)/(K − 1)."""
    shape = _checks.check_ndim("rewards", rewards, 2)
    if shape[1] < 2:
        raise ValueError(f"rewards: need K >= 2 samples per prompt, got shape {shape}")
    k = shape[1]
    return rewards - (jnp.sum(rewards, axis=1, keepdims=True) - rewards) / (k - 1)

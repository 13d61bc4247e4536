"""The PM divergence of Xiao et al. (Section 6.1) and the official code's squared-gap score."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from jaxpref.regularizers import _validate


def _check_pairs(policy_logp_1, policy_logp_2, reward_1, reward_2):
    arrays = dict(
        policy_logp_1=policy_logp_1,
        policy_logp_2=policy_logp_2,
        reward_1=reward_1,
        reward_2=reward_2,
    )
    _validate.same_shape(**arrays)
    _validate.finite(**arrays)


def pm_divergence(
    policy_logp_1: Float[ArrayLike, "..."],
    policy_logp_2: Float[ArrayLike, "..."],
    reward_1: Float[ArrayLike, "..."],
    reward_2: Float[ArrayLike, "..."],
) -> Float[Array, "..."]:
    r"""Instance PM divergence KL(Bern(p_llm) ‖ Bern(p_reward)) of a response pair.

    With Δ = log π(y₁) − log π(y₂), δ = r(y₁) − r(y₂), p_llm = σ(Δ) and p_reward = σ(δ):

    .. math:: \sigma(\Delta)[\log\sigma(\Delta)-\log\sigma(\delta)]
              + \sigma(-\Delta)[\log\sigma(-\Delta)-\log\sigma(-\delta)],

    computed with ``log_sigmoid`` so large gaps give finite values. One value per instance; the
    paper's PM divergence is its mean over prompts (pairs drawn from the policy).

    Args:
      policy_logp_1, policy_logp_2: sequence log-probs log π(y₁|x), log π(y₂|x).
      reward_1, reward_2: r(x, y₁), r(x, y₂) (the paper uses r = r_θ/β). All the same shape.
    Returns:
      instance divergences (≥ 0), same shape.

    Example:
      >>> pm_divergence(jnp.log(.5), jnp.log(.5), 0.0, 0.0)
      Array(0., dtype=float32, weak_type=True)

    References: Xiao et al., arXiv 2405.16455, Section 6.1 ("Instance PM Divergence").
    """
    _check_pairs(policy_logp_1, policy_logp_2, reward_1, reward_2)
    return pm_divergence_unchecked(policy_logp_1, policy_logp_2, reward_1, reward_2)


@jax.jit
def pm_divergence_unchecked(logp_1, logp_2, reward_1, reward_2):
    gap, rgap = logp_1 - logp_2, reward_1 - reward_2
    ls = jax.nn.log_sigmoid
    pos = jax.nn.sigmoid(gap) * (ls(gap) - ls(rgap))
    neg = jax.nn.sigmoid(-gap) * (ls(-gap) - ls(-rgap))
    return jnp.maximum(pos + neg, 0.0)  # Sec. 6.1: KL(Bern(p_llm) ‖ Bern(p_reward))


def code_pm_squared_gap(
    policy_logp_1: Float[ArrayLike, "..."],
    policy_logp_2: Float[ArrayLike, "..."],
    reward_1: Float[ArrayLike, "..."],
    reward_2: Float[ArrayLike, "..."],
) -> Float[Array, "..."]:
    r"""The official code's "PM divergence" score, :math:`((r_1-r_2)-(\log\pi_1-\log\pi_2))^2`.

    NOT the paper's metric (that is ``pm_divergence``): the released ``evaluation_pm`` squares
    the gap between reward and log-prob differences, with raw reward-model scores (not divided
    by β) and summed token log-probs. It is zero exactly when the paper's divergence is zero
    and grows quadratically rather than like a Bernoulli KL.

    Args:
      policy_logp_1, policy_logp_2: sequence log-probs. reward_1, reward_2: raw RM scores.
    Returns:
      squared gaps, same shape.

    References: official code of Xiao et al. (github.com/JiancongXiao/PM_RLHF,
      step3 main.py ``evaluation_pm``); cf. arXiv 2405.16455, Section 6.1.
    """
    _check_pairs(policy_logp_1, policy_logp_2, reward_1, reward_2)
    return _squared_gap(policy_logp_1, policy_logp_2, reward_1, reward_2)


@jax.jit
def _squared_gap(logp_1, logp_2, reward_1, reward_2):
    return jnp.square((reward_1 - reward_2) - (logp_1 - logp_2))  # code: (Δr − Δlogπ)²

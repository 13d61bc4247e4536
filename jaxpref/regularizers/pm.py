"""The preference-matching (PM) regularizer, its conditional forms, and the KL penalty.

Each regularizer is the per-response term R added to the reward inside the RLHF objective
max_π E_{y~π}[r(x, y) + R(π(y|x))] (Xiao et al., arXiv 2405.16455, eq. (3.1)). Inputs are
probabilities π(y|x) ∈ (0, 1] (or sequence/token log-probs where stated); outputs have the
input's shape and dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Shaped

from jaxpref import _checks
from jaxpref.regularizers import _validate


def pm_regularizer(probs: Float[ArrayLike, "..."], c1=0.0, c2=0.0) -> Float[Array, "..."]:
    r"""The PM regularizer :math:`R(\pi) = -\log\pi + C_1 + C_2/\pi` (Theorem 1).

    It is the general solution of the PM differential equation πR'' + 2R' + 1/π = 0; with it,
    the maximiser of E_π[r + R(π)] is the PM policy π = softmax(r) for any constants C₁, C₂.

    Args:
      probs: π(y|x) ∈ (0, 1], any shape.
      c1: C₁ (scalar or broadcastable, may depend on x).
      c2: C₂ (scalar or broadcastable; per response gives Theorem 2's C_{2,x,y}).
    Returns:
      R(π), same shape as ``probs``.

    Example:
      >>> pm_regularizer(jnp.array([1.0, 0.5]))  # −log π
      Array([0.       , 0.6931472], dtype=float32)

    References: Xiao et al., "On the Algorithmic Bias of Aligning Large Language Models with
      RLHF: Preference Collapse and Matching Regularization", arXiv 2405.16455, Theorem 1,
      eq. (3.8).
    """
    _validate.probs("probs", probs)
    _validate.finite(c1=c1, c2=c2)
    return _pm_regularizer(probs, c1, c2)


@jax.jit
def _pm_regularizer(probs, c1, c2):
    return -jnp.log(probs) + c1 + c2 / probs  # Eq. (3.8)


def response_dependent_pm_regularizer(
    probs: Float[ArrayLike, " K"], c1, c2: Float[ArrayLike, " K"]
) -> Float[Array, " K"]:
    r"""Theorem 2: :math:`R_{x,y}(\pi) = -\log\pi + C_{1,x} + C_{2,x,y}/\pi`, one C₂ per response.

    Args:
      probs: (K,) π(y_k|x) ∈ (0, 1].
      c1: scalar C_{1,x}.
      c2: (K,) C_{2,x,y_k}.
    Returns:
      (K,) R_{x,y_k}(π(y_k|x)).

    References: Xiao et al., arXiv 2405.16455, Theorem 2, eq. (3.13).
    """
    _validate.same_shape(probs=probs, c2=c2)
    return pm_regularizer(probs, c1, c2)  # Eq. (3.13)


def _check_policy_and_ref(probs, ref_probs):
    _validate.same_shape(probs=probs, ref_probs=ref_probs)
    _validate.probs("probs", probs)
    _validate.probs("ref_probs", ref_probs)


def kl_regularizer(
    probs: Float[ArrayLike, "..."], ref_probs: Float[ArrayLike, "..."], beta=1.0
) -> Float[Array, "..."]:
    r"""The KL-RLHF per-response penalty :math:`R(\pi) = -\beta\log(\pi/\pi_{\mathrm{ref}})`.

    E_π[R] = −β KL(π ‖ π_ref); it is response-dependent but not of Theorem 2's form, so KL-RLHF
    is not preference matching (Proposition 3.7).

    Args:
      probs: π(y|x) ∈ (0, 1]. ref_probs: π_ref(y|x) ∈ (0, 1], same shape. beta: β > 0.
    Returns:
      the penalty, same shape.

    References: Xiao et al., arXiv 2405.16455, eq. (2.3) and Proposition 3.7.
    """
    _check_policy_and_ref(probs, ref_probs)
    _validate.beta(beta)
    return _kl_regularizer(probs, ref_probs, beta)


@jax.jit
def _kl_regularizer(probs, ref_probs, beta):
    return -beta * (jnp.log(probs) - jnp.log(ref_probs))  # Eq. (2.3)


def conditional_pm_regularizer(
    probs: Float[ArrayLike, "..."], ref_probs: Float[ArrayLike, "..."], alpha
) -> Float[Array, "..."]:
    r"""Sequence-level conditional PM (Definition 4.1), ε = π_ref and M(x) = {π_ref ≥ α}.

    .. math:: R(\pi) = -\log\pi\,\mathbf 1(\pi_{\rm ref}\ge\alpha)
              - \log(\pi/\pi_{\rm ref})\,\mathbf 1(\pi_{\rm ref}<\alpha).

    α = 1 leaves only responses with π_ref = 1 ungated, i.e. KL-RLHF with β = 1.

    Args:
      probs: π(y|x) ∈ (0, 1]. ref_probs: π_ref(y|x) ∈ (0, 1], same shape. alpha: α ∈ (0, 1].
    Returns:
      the penalty, same shape.

    References: Xiao et al., arXiv 2405.16455, Definition 4.1 (eq. (4.1) with ε = π_ref).
    """
    _check_policy_and_ref(probs, ref_probs)
    _validate.alpha(alpha)
    return _conditional_pm_regularizer(probs, ref_probs, alpha)


@jax.jit
def _conditional_pm_regularizer(probs, ref_probs, alpha):
    outside = ref_probs < alpha
    return -jnp.log(probs) + jnp.where(outside, jnp.log(ref_probs), 0.0)  # Def. 4.1


def token_conditional_pm_penalty(
    token_logps: Float[ArrayLike, "... L"],
    ref_token_logps: Float[ArrayLike, "... L"],
    alpha,
    mask: Shaped[ArrayLike, "... L"] | None = None,
) -> Float[Array, "... L"]:
    r"""Per-token penalty of the official code (a variant; the paper gates whole sequences).

    For each generated token T_i with log π(T_i|x, T_<i) and log π_ref(T_i|x, T_<i):

    .. math:: c_i = \log\pi(T_i)
              - \log\pi_{\rm ref}(T_i)\,\mathbf 1(\log\pi_{\rm ref}(T_i)\le\log\alpha),

    i.e. the entropy term when the reference token log-prob exceeds log α (strict, as in the
    code) and the KL term otherwise. The code's token reward is −β c_i plus the clipped sequence
    reward on the last token; dividing by β gives the objective E[r/β − Σ_i c_i].

    Args:
      token_logps: (..., L) policy log-probs of the sampled tokens (≤ 0).
      ref_token_logps: (..., L) reference log-probs of the same tokens (≤ 0).
      alpha: α ∈ (0, 1].
      mask: optional (..., L) 1 for response tokens, 0 for padding.
    Returns:
      (..., L) penalties c_i (zero where masked).

    References: official code of Xiao et al. (github.com/JiancongXiao/PM_RLHF,
      dschat/rlhf/ppo_trainer.py, compute_rewards); the paper's sequence-level form is
      Definition 4.1 of arXiv 2405.16455.
    """
    _validate.same_shape(token_logps=token_logps, ref_token_logps=ref_token_logps)
    _validate.logps("token_logps", token_logps)
    _validate.logps("ref_token_logps", ref_token_logps)
    _validate.alpha(alpha)
    mask = jnp.ones_like(token_logps) if mask is None else mask
    _validate.same_shape(token_logps=token_logps, mask=mask)
    return _token_penalty(token_logps, ref_token_logps, alpha, mask)


@jax.jit
def _token_penalty(logp, ref_logp, alpha, mask):
    gated = ref_logp > jnp.log(alpha)  # code: ref_log_probs > log(alpha_ctl)
    return mask * (logp - jnp.where(gated, 0.0, ref_logp))


def token_conditional_pm_shaped_reward(
    rewards: Float[ArrayLike, "..."],
    ref_token_logps: Float[ArrayLike, "... L"],
    alpha,
    mask: Shaped[ArrayLike, "... L"] | None = None,
) -> Float[Array, "..."]:
    r"""Sequence-level shaped reward of the code's token-gated penalty (``theory/pm_rlhf.md`` §6).

    With c_i of :func:`token_conditional_pm_penalty` and Σ_i log π(T_i|·) = log π(y),

    .. math:: \mathbb E_\pi\Big[r - \sum_i c_i\Big] = \mathbb E_\pi[\tilde r - \log\pi],\qquad
              \tilde r = r + \sum_i \log\pi_{\rm ref}(T_i)\,
              \mathbf 1(\log\pi_{\rm ref}(T_i)\le\log\alpha),

    so the token-level variant is a Gibbs problem over whole sequences with optimum softmax(r̃).

    Args:
      rewards: (...,) sequence rewards r (already divided by β).
      ref_token_logps: (..., L) reference log-probs along each sequence (≤ 0).
      alpha: α ∈ (0, 1].
      mask: optional (..., L) 1 for response tokens, 0 for padding.
    Returns:
      (...,) r̃.

    References: official code of Xiao et al. (github.com/JiancongXiao/PM_RLHF,
      dschat/rlhf/ppo_trainer.py, compute_rewards); arXiv 2405.16455, Definition 4.1 (the
      paper's sequence-level gate).
    """
    _validate.logps("ref_token_logps", ref_token_logps)
    _validate.alpha(alpha)
    mask = jnp.ones_like(ref_token_logps) if mask is None else mask
    _validate.same_shape(ref_token_logps=ref_token_logps, mask=mask)
    if _checks.shape_of("rewards", rewards) != _checks.shape_of("mask", mask)[:-1]:
        raise ValueError(
            f"rewards: expected shape {_checks.shape_of('mask', mask)[:-1]} (the token arrays "
            f"without their last axis), got {_checks.shape_of('rewards', rewards)}"
        )
    ungated = (ref_token_logps <= jnp.log(alpha)) * mask  # the code's KL branch
    return rewards + jnp.sum(ungated * ref_token_logps, axis=-1)


def pm_ode_residual(
    regularizer: Callable[[Array], Array],
    probs: Float[ArrayLike, " N"],
    inv_link_derivative: Callable[[Array], Array] | None = None,
) -> Float[Array, " N"]:
    r"""Residual of the PM differential equation :math:`\pi R'' + 2R' + 1/g'(g^{-1}(\pi))`.

    With the default (g = exp) the last term is 1/π; R is differentiated twice by autodiff.
    Zero for every R of Theorem 1 (resp. Theorem 3), non-zero for the KL penalty.

    Args:
      regularizer: scalar function π ↦ R(π).
      probs: (N,) points in (0, 1] at which to evaluate.
      inv_link_derivative: π ↦ g'(g⁻¹(π)) (default π, the exponential link).
    Returns:
      (N,) residuals.

    References: Xiao et al., arXiv 2405.16455, the ODE before eq. (3.8); Appendix B.1.
    """
    _validate.probs("probs", probs)
    gprime = _identity if inv_link_derivative is None else inv_link_derivative
    return _pm_ode_residual(regularizer, gprime, jnp.asarray(probs))


def _identity(p):
    return p


@partial(jax.jit, static_argnums=(0, 1))  # compiled once per (regularizer, link) pair
def _pm_ode_residual(regularizer, gprime, probs):
    d1 = jax.grad(regularizer)
    d2 = jax.grad(d1)

    def one(p):
        return p * d2(p) + 2.0 * d1(p) + 1.0 / gprime(p)  # PM ODE

    return jax.vmap(one)(probs)


def pm_stationarity_constant(
    regularizer: Callable[[Array], Array], probs: Float[ArrayLike, " N"], num_responses: int
) -> Float[Array, "N K"]:
    r"""c_k(π) = R_k(π) + πR_k'(π) + log π for each response k at each grid point π.

    PM requires c_k(π) = c' for all k and all π (eq. (3.7) / (3.13)); differentiating in π gives
    the ODE of ``pm_ode_residual``. KL-RLHF with β = 1 solves the ODE response by response but
    has c_k = log π_ref(y_k) − 1, which depends on k unless π_ref is uniform (Proposition 3.7).

    Args:
      regularizer: elementwise map (K,) probabilities → (K,) values R_k(π_k).
      probs: (N,) grid in (0, 1]. num_responses: K.
    Returns:
      (N, K) constants.

    References: Xiao et al., arXiv 2405.16455, eqs. (3.7), (3.13), Theorem 2, Proposition 3.7.
    """
    _validate.probs("probs", probs)
    _checks.check_int_in("num_responses", num_responses, 1, 10**9)
    return _pm_stationarity_constant(regularizer, num_responses, jnp.asarray(probs))


@partial(jax.jit, static_argnums=(0, 1))
def _pm_stationarity_constant(regularizer, num_responses, probs):
    def one(p):
        vec = jnp.full((num_responses,), p)
        val, slope = jax.jvp(regularizer, (vec,), (jnp.ones_like(vec),))
        return val + p * slope + jnp.log(p)  # Eq. (3.13)

    return jax.vmap(one)(probs)

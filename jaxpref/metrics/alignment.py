"""Alignment metrics of Xiao et al. (Section 6.1): PM divergence, length, perplexity, entropy, KL.

Two estimators of each column. ``exact_alignment_metrics`` enumerates a finite response set
(S sequences with their policy/reference log-probs, rewards and lengths) and takes exact
expectations under π; ``sampled_alignment_metrics`` averages the same per-sample quantities over
draws y ~ π (pairs for the PM divergence), as one would on an LLM. Pure math.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from jaxpref import _checks
from jaxpref.regularizers import _validate
from jaxpref.regularizers.divergence import _pm_divergence


class AlignmentMetrics(NamedTuple):
    pm_divergence: Array  # () E_{y1,y2~π} KL(Bern(σ(Δlog π)) ‖ Bern(σ(Δr)))
    length: Array  # () E_{y~π} |y|
    perplexity: Array  # () E_{y~π} π(y)^{-1/|y|}
    entropy: Array  # () E_{y~π} −log π(y)
    kl: Array  # () E_{y~π} log π(y)/π_ref(y)


def _per_sample(logp, ref_logp, lengths):
    """Per-response perplexity, surprisal and log-ratio (Section 6.1)."""
    ppl = jnp.exp(-logp / lengths)  # Perplexity = [p_1 ⋯ p_L]^{-1/L}
    return ppl, -logp, logp - ref_logp


def _check(policy_logps, ref_logps, rewards, lengths):
    _validate.same_shape(
        policy_logps=policy_logps, ref_logps=ref_logps, rewards=rewards, lengths=lengths
    )
    _validate.vector("policy_logps", policy_logps)
    _validate.logps("policy_logps", policy_logps)
    _validate.logps("ref_logps", ref_logps)
    _validate.finite(rewards=rewards)
    _checks.check_positive("lengths", lengths)


def exact_alignment_metrics(
    policy_logps: Float[Array, " S"],
    ref_logps: Float[Array, " S"],
    rewards: Float[Array, " S"],
    lengths: Float[Array, " S"],
) -> AlignmentMetrics:
    r"""The five columns of Table 2 as exact expectations over an enumerated response set.

    PM divergence :math:`=\sum_{i,j}\pi_i\pi_j\,\mathrm{KL}(\mathrm{Bern}(\sigma(\ell_i-\ell_j))
    \|\mathrm{Bern}(\sigma(r_i-r_j)))`; length, perplexity π^{-1/|y|}, entropy −log π and
    KL log(π/π_ref) are E_{y~π} of the per-response values.

    Args:
      policy_logps: (S,) log π(y) of every response (summing to one in probability).
      ref_logps: (S,) log π_ref(y). rewards: (S,) r(y) (the paper's r_θ/β).
      lengths: (S,) token counts |y| > 0.
    Returns:
      ``AlignmentMetrics`` of scalars.

    References: Xiao et al., arXiv 2405.16455, Section 6.1 and Table 2.
    """
    _check(policy_logps, ref_logps, rewards, lengths)
    return _exact(policy_logps, ref_logps, rewards, lengths)


@jax.jit
def _exact(logp, ref_logp, rewards, lengths):
    probs = jnp.exp(logp)
    div = _pm_divergence(logp[:, None], logp[None, :], rewards[:, None], rewards[None, :])
    ppl, surprisal, ratio = _per_sample(logp, ref_logp, lengths)
    mean = lambda v: jnp.sum(probs * v)  # noqa: E731
    pm = jnp.sum(probs[:, None] * probs[None, :] * div)  # E_x E_{y1,y2} instance divergence
    return AlignmentMetrics(pm, mean(lengths), mean(ppl), mean(surprisal), mean(ratio))


def sampled_alignment_metrics(
    key: PRNGKeyArray,
    policy_logps: Float[Array, " S"],
    ref_logps: Float[Array, " S"],
    rewards: Float[Array, " S"],
    lengths: Float[Array, " S"],
    num_samples: int,
) -> AlignmentMetrics:
    r"""Monte-Carlo estimates of the five columns from ``num_samples`` pairs y₁, y₂ ~ π.

    The PM divergence averages instance divergences over the pairs; the other columns average
    over all 2·``num_samples`` draws. Unbiased for the quantities of ``exact_alignment_metrics``.

    Args:
      key: PRNG key. Other arrays as in ``exact_alignment_metrics``. num_samples: pairs ≥ 1.
    Returns:
      ``AlignmentMetrics`` of scalars.

    References: Xiao et al., arXiv 2405.16455, Section 6.1.
    """
    _check(policy_logps, ref_logps, rewards, lengths)
    n = _checks.check_int_in("num_samples", num_samples, 1, 10**9)
    return _sampled(key, policy_logps, ref_logps, rewards, lengths, n)


@jax.jit(static_argnames="n")
def _sampled(key, logp, ref_logp, rewards, lengths, n):
    idx = jax.random.categorical(key, logp, shape=(2, n))
    a, b = idx
    pm = jnp.mean(_pm_divergence(logp[a], logp[b], rewards[a], rewards[b]))
    flat = idx.reshape(-1)
    ppl, surprisal, ratio = _per_sample(logp[flat], ref_logp[flat], lengths[flat])
    return AlignmentMetrics(
        pm, jnp.mean(lengths[flat]), jnp.mean(ppl), jnp.mean(surprisal), jnp.mean(ratio)
    )

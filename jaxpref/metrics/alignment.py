"""Alignment metrics of Xiao et al. (Section 6.1): PM divergence, length, perplexity, entropy, KL.

Two estimators of each column. ``exact_alignment_metrics`` enumerates a finite response set
(S sequences with their policy/reference log-probs, rewards and lengths) and takes exact
expectations under π; ``sampled_alignment_metrics`` averages the same per-sample quantities over
draws y ~ π (pairs for the PM divergence), as one would on an LLM. Beside them: the reference
perplexity of a policy's responses, the preferences behind preference collapse (Section 5.2) and
the win-rate against a baseline under a judge. Pure math.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Real

from jaxpref import _checks
from jaxpref.regularizers.divergence import pm_divergence_unchecked
from jaxpref.regularizers.policies import pairwise_preference, reward_preference


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
    _checks.check_same_shape(
        policy_logps=policy_logps, ref_logps=ref_logps, rewards=rewards, lengths=lengths
    )
    _checks.check_ndim("policy_logps", policy_logps, 1)
    _checks.check_logps("policy_logps", policy_logps)
    _checks.check_logps("ref_logps", ref_logps)
    _checks.check_all_finite(rewards=rewards)
    _checks.check_positive("lengths", lengths)


def exact_alignment_metrics(
    policy_logps: Float[ArrayLike, " S"],
    ref_logps: Float[ArrayLike, " S"],
    rewards: Float[ArrayLike, " S"],
    lengths: Real[ArrayLike, " S"],
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
    div = pm_divergence_unchecked(logp[:, None], logp[None, :], rewards[:, None], rewards[None, :])
    ppl, surprisal, ratio = _per_sample(logp, ref_logp, lengths)
    mean = lambda v: jnp.sum(probs * v)  # noqa: E731
    pm = jnp.sum(probs[:, None] * probs[None, :] * div)  # E_x E_{y1,y2} instance divergence
    return AlignmentMetrics(pm, mean(lengths), mean(ppl), mean(surprisal), mean(ratio))


def sampled_alignment_metrics(
    key: PRNGKeyArray,
    policy_logps: Float[ArrayLike, " S"],
    ref_logps: Float[ArrayLike, " S"],
    rewards: Float[ArrayLike, " S"],
    lengths: Real[ArrayLike, " S"],
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
    a, b = jax.random.categorical(key, logp, shape=(2, n))
    return _from_samples(
        logp[a], logp[b], ref_logp[a], ref_logp[b], rewards[a], rewards[b], lengths[a], lengths[b]
    )


def alignment_metrics_from_samples(
    policy_logp_1: Float[ArrayLike, " n"],
    policy_logp_2: Float[ArrayLike, " n"],
    ref_logp_1: Float[ArrayLike, " n"],
    ref_logp_2: Float[ArrayLike, " n"],
    reward_1: Float[ArrayLike, " n"],
    reward_2: Float[ArrayLike, " n"],
    length_1: Real[ArrayLike, " n"],
    length_2: Real[ArrayLike, " n"],
) -> AlignmentMetrics:
    r"""The five columns from n sampled pairs (y₁, y₂) ~ π, as on an LLM (one pair per prompt).

    PM divergence: mean instance divergence over the pairs; length, perplexity, entropy and KL:
    means of |y|, π(y)^{-1/|y|}, −log π(y), log π(y)/π_ref(y) over all 2n responses.

    Args:
      policy_logp_*, ref_logp_*: (n,) sequence log-probs under π and π_ref.
      reward_*: (n,) rewards (r_θ/β). length_*: (n,) token counts > 0.
    Returns:
      ``AlignmentMetrics`` of scalars.

    References: Xiao et al., arXiv 2405.16455, Section 6.1.
    """
    arrays = dict(
        policy_logp_1=policy_logp_1,
        policy_logp_2=policy_logp_2,
        ref_logp_1=ref_logp_1,
        ref_logp_2=ref_logp_2,
        reward_1=reward_1,
        reward_2=reward_2,
        length_1=length_1,
        length_2=length_2,
    )
    _checks.check_same_shape(**arrays)
    _checks.check_ndim("policy_logp_1", policy_logp_1, 1)
    for k in ("policy_logp_1", "policy_logp_2", "ref_logp_1", "ref_logp_2"):
        _checks.check_logps(k, arrays[k])
    _checks.check_all_finite(reward_1=reward_1, reward_2=reward_2)
    _checks.check_positive("length_1", length_1)
    _checks.check_positive("length_2", length_2)
    return _from_samples(*arrays.values())


@jax.jit
def _from_samples(logp_1, logp_2, ref_1, ref_2, reward_1, reward_2, length_1, length_2):
    pm = jnp.mean(pm_divergence_unchecked(logp_1, logp_2, reward_1, reward_2))  # Sec. 6.1
    cat = lambda u, v: jnp.concatenate([u, v])  # noqa: E731
    lengths = cat(length_1, length_2)
    ppl, surprisal, ratio = _per_sample(cat(logp_1, logp_2), cat(ref_1, ref_2), lengths)
    return AlignmentMetrics(
        pm, jnp.mean(lengths), jnp.mean(ppl), jnp.mean(surprisal), jnp.mean(ratio)
    )


class PairPreferences(NamedTuple):
    first: Array  # (n,) index of y₁ ~ π_ref
    second: Array  # (n,) index of y₂ ~ π_ref (independent of y₁; may equal it)
    reference: Array  # (n,) p_ref(y₁) = σ(log π_ref(y₁) − log π_ref(y₂))
    reward: Array  # (n,) p_reward(y₁) = σ(r(y₁) − r(y₂))


def reference_pair_preferences(
    key: PRNGKeyArray,
    ref_logps: Float[ArrayLike, " S"],
    rewards: Float[ArrayLike, " S"],
    num_pairs: int,
) -> PairPreferences:
    r"""The preferences behind preference collapse: ``num_pairs`` pairs y₁, y₂ drawn
    independently from π_ref over an enumerated response set, each with the reference's
    two-response preference :math:`p_{\rm ref}(y_1) = \pi_{\rm ref}(y_1)/(\pi_{\rm ref}(y_1) +
    \pi_{\rm ref}(y_2)) = \sigma(\log\pi_{\rm ref}(y_1) - \log\pi_{\rm ref}(y_2))` and the reward
    model's Bradley–Terry preference :math:`p_{\rm reward}(y_1) = \sigma(r(y_1) - r(y_2))`.

    The paper's protocol for Figures 3–4 (two random responses per prompt, both preferences on
    the same pairs); :func:`preference_collapse_fraction` summarises them. A pair with y₁ = y₂
    (``first == second``) has both preferences ½.

    Args:
      key: PRNG key. ref_logps: (S,) log π_ref(y) (summing to one in probability).
      rewards: (S,) r(y) (the paper's r_θ/β). num_pairs: n ≥ 1.
    Returns:
      :class:`PairPreferences` of (n,) arrays.

    References: Xiao et al., arXiv 2405.16455, Section 5.2 (preference collapse) and
      Figures 3–4; ``theory/pm_rlhf.md`` §7.
    """
    _checks.check_ndim("ref_logps", ref_logps, 1)
    _checks.check_same_shape(ref_logps=ref_logps, rewards=rewards)
    _checks.check_logps("ref_logps", ref_logps)
    _checks.check_all_finite(rewards=rewards)
    n = _checks.check_int_in("num_pairs", num_pairs, 1, 10**9)
    return _pair_preferences(key, jnp.asarray(ref_logps), jnp.asarray(rewards), n)


@jax.jit(static_argnames="n")
def _pair_preferences(key, ref_logps, rewards, n):
    a, b = jax.random.categorical(key, ref_logps, shape=(2, n))
    p_ref = pairwise_preference(ref_logps[a], ref_logps[b])
    return PairPreferences(a, b, p_ref, reward_preference(rewards[a], rewards[b]))


def preference_collapse_fraction(preferences, *, margin=0.05) -> Float[Array, ""]:
    r"""The fraction of pairwise preferences outside [margin, 1 − margin]: how close to
    preference collapse (p ∈ {0, 1}) a set of preferences is.

    Section 5.2 of the paper: KL-RLHF keeps p_rlhf = p_ref wherever the reference's preference
    is 0 or 1, whatever the reward, and Figures 3–4 show that reference models put most random
    pairs near 0 or 1 while the reward model does not. Strict inequalities: p = margin is not
    extreme. Pairs with y₁ = y₂ (preference ½) are the caller's to drop or keep.

    Args:
      preferences: (n,) preferences in [0, 1] (e.g. ``PairPreferences.reference``).
      margin: in [0, ½).
    Returns:
      The fraction, a scalar.

    References: Xiao et al., arXiv 2405.16455, Section 5.2 and Figures 3–4.
    """
    _checks.check_ndim("preferences", preferences, 1)
    _checks.check_in_range("margin", margin, 0.0, 0.5, closed="left")
    _checks.check_in_range("preferences", preferences, 0.0, 1.0)
    p = jnp.asarray(preferences)
    if p.shape[0] == 0:
        raise ValueError("preferences: need at least one preference, got none")
    return jnp.mean((p < margin) | (p > 1 - margin))


class PreferenceCollapse(NamedTuple):
    reference: Array  # (m,) p_ref(y₁) on the m pairs with y₁ ≠ y₂, in draw order
    reward: Array  # (m,) p_reward(y₁) on the same pairs
    reference_fraction: Array  # () preference_collapse_fraction(reference)
    reward_fraction: Array  # () preference_collapse_fraction(reward)


def preference_collapse(pairs: PairPreferences, *, margin=0.05) -> PreferenceCollapse:
    """Figures 3–4's comparison on the pairs of :func:`reference_pair_preferences`: the pairs
    with two distinct responses (y₁ = y₂ has both preferences ½ and says nothing), and the
    fraction of the reference's and of the reward's preferences outside [margin, 1 − margin]
    (:func:`preference_collapse_fraction`). A reference far more extreme than the reward is what
    KL-RLHF then inherits (Section 5.2).

    Args:
      pairs: the drawn pairs and their preferences. margin: in [0, ½).
    Returns:
      :class:`PreferenceCollapse`; eager (its length depends on the draw), not for ``jit``.

    References: Xiao et al., arXiv 2405.16455, Section 5.2 and Figures 3–4.
    """
    distinct = jnp.asarray(pairs.first) != jnp.asarray(pairs.second)
    if not bool(jnp.any(distinct)):
        raise ValueError("pairs: every pair has y1 = y2; no distinct pair to compare")
    p_ref, p_rm = jnp.asarray(pairs.reference)[distinct], jnp.asarray(pairs.reward)[distinct]
    return PreferenceCollapse(
        p_ref,
        p_rm,
        preference_collapse_fraction(p_ref, margin=margin),
        preference_collapse_fraction(p_rm, margin=margin),
    )


def reference_perplexity(
    policy_logps: Float[ArrayLike, " S"],
    ref_logps: Float[ArrayLike, " S"],
    lengths: Real[ArrayLike, " S"],
) -> Float[Array, ""]:
    r"""How natural a policy's responses read to the reference: :math:`E_{y\sim\pi}\,
    \pi_{\rm ref}(y)^{-1/|y|}`, exact over an enumerated response set.

    The perplexity column of Table 2 (:func:`exact_alignment_metrics`) scores a response under
    the policy that wrote it, so PM RLHF's flat optimum reads as "high perplexity" by
    construction; scoring the same responses under π_ref instead separates that from drifting
    away from reference-like text. Equals the perplexity column when π = π_ref.

    Args:
      policy_logps: (S,) log π(y), summing to one in probability. ref_logps: (S,) log π_ref(y).
      lengths: (S,) token counts |y| > 0.
    Returns:
      The expectation, a scalar.

    References: Xiao et al., arXiv 2405.16455, Section 6.1 (the perplexity it re-weights).
    """
    _checks.check_same_shape(policy_logps=policy_logps, ref_logps=ref_logps, lengths=lengths)
    _checks.check_ndim("policy_logps", policy_logps, 1)
    _checks.check_logps("policy_logps", policy_logps)
    _checks.check_logps("ref_logps", ref_logps)
    _checks.check_positive("lengths", lengths)
    return _reference_perplexity(policy_logps, ref_logps, lengths)


@jax.jit
def _reference_perplexity(logp, ref_logp, lengths):
    return jnp.sum(jnp.exp(logp) * jnp.exp(-ref_logp / lengths))


class WinRate(NamedTuple):
    rate: Array  # () fraction of comparisons won, a tie counting ½
    se: Array  # () its standard error over the comparisons (ddof = 1; NaN for one comparison)


def win_rate(scores: Float[ArrayLike, " n"], baseline_scores: Float[ArrayLike, " n"]) -> WinRate:
    r"""The win-rate of responses over baseline responses to the same n prompts, under a judge's
    scores: :math:`\frac1n\sum_i w_i` with :math:`w_i = 1[s_i > b_i] + \tfrac12 1[s_i = b_i]`,
    and its standard error sd(w) / √n (ddof = 1).

    Ties count one half, as in AlpacaEval-style pairwise evaluation; with one comparison the
    standard error is undefined and returned as NaN.

    Args:
      scores: (n,) the judge's score (e.g. a reward model's r(x, y)) of each response.
      baseline_scores: (n,) the score of the baseline's response to the same prompt.
    Returns:
      :class:`WinRate` of scalars.

    References: Rafailov et al., arXiv 2305.18290, Section 6 (win-rate against a baseline under
      a judge); Xiao et al., arXiv 2405.16455, Section 6.
    """
    _checks.check_ndim("scores", scores, 1)
    n = _checks.check_same_shape(scores=scores, baseline_scores=baseline_scores)[0]
    if n == 0:
        raise ValueError("scores: need at least one comparison, got none")
    _checks.check_all_finite(scores=scores, baseline_scores=baseline_scores)
    return _win_rate(jnp.asarray(scores), jnp.asarray(baseline_scores))


@jax.jit
def _win_rate(s, b):
    w = (s > b) + 0.5 * (s == b)
    n = w.shape[0]
    se = jnp.std(w, ddof=1) / jnp.sqrt(n) if n > 1 else jnp.full((), jnp.nan, w.dtype)
    return WinRate(jnp.mean(w), se)

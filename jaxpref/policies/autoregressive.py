"""Tabular autoregressive policies over an enumerable toy language (pure math).

The toy language of the PM RLHF experiment (Xiao et al., arXiv 2405.16455, a miniature of its
Table 2): ``vocab_size`` content tokens plus an end token, at most ``max_len`` content tokens
(the end token is then forced), so every sequence y = (T_1, …, T_m, end) can be listed. A policy
is one logit row per prefix (a decision node), π(T_i | T_<i) = softmax(row)[T_i], and

    log π(y) = Σ_i log π(T_i | T_<i)                    (the autoregressive factorisation)

is a sum along the sequence's path of (node, token) pairs, gathered from the table at once.
Sequence-level objectives of the paper (E_π[r̃ − log π], their Gibbs optima, alignment metrics)
then apply to the (S,) vector of sequence log-probs exactly.
"""

from __future__ import annotations

import itertools
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from jaxpref import _checks
from jaxpref.regularizers import (
    conditional_pm_shaped_reward,
    parametric_ascent,
    pm_regularizer,
    token_conditional_pm_shaped_reward,
)

MAX_SEQUENCES = 2**20
"""Largest toy language ``toy_language`` enumerates (sequences; the path arrays are S × (L+1))."""


class ToyLanguage(NamedTuple):
    """Every sequence of the toy language and its path through the prefix table.

    ``sequences``: the S content-token tuples (the end token implicit), shortest first;
    ``node``/``token``/``mask``: (S, max_len + 1) prefix index, next token (``vocab_size`` is
    the end token) and 1 on real decisions (0 on padding and on the forced end at ``max_len``);
    ``lengths``: (S,) tokens including the end token; ``num_nodes``: prefixes of length
    < ``max_len`` (the table's rows); ``num_tokens``: ``vocab_size + 1`` (its columns).
    """

    sequences: tuple[tuple[int, ...], ...]
    node: np.ndarray
    token: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    num_nodes: int
    num_tokens: int


def toy_language(vocab_size: int, max_len: int) -> ToyLanguage:
    """Enumerate the toy language: all Σ_{m ≤ max_len} V^m sequences and their paths.

    Prefixes of length < max_len are decision nodes over V + 1 tokens (end = last); at length
    max_len the end token is forced (log-prob 0, masked out of the path).

    Example:
      >>> lang = toy_language(2, 2)
      >>> lang.sequences, lang.num_nodes
      (((), (0,), (1,), (0, 0), (0, 1), (1, 0), (1, 1)), 3)

    References: Xiao et al., arXiv 2405.16455, Section 6 (token-level RLHF on sequences); the
      enumerable miniature is this project's (``theory/pm_rlhf.md`` §11).
    """
    _checks.check_int_in("vocab_size", vocab_size, 1, 10**6)
    _checks.check_int_in("max_len", max_len, 1, 10**6)
    count = sum(vocab_size**m for m in range(max_len + 1))  # exact Python integers
    if count > MAX_SEQUENCES:
        raise ValueError(
            f"max_len: the toy language of {vocab_size} tokens and length <= {max_len} has "
            f"{count:.3g} sequences (> {MAX_SEQUENCES:.3g}); lower vocab_size or max_len"
        )
    prefixes = [p for n in range(max_len) for p in itertools.product(range(vocab_size), repeat=n)]
    index = {p: i for i, p in enumerate(prefixes)}
    seqs = tuple(
        s for n in range(max_len + 1) for s in itertools.product(range(vocab_size), repeat=n)
    )
    node = np.zeros((len(seqs), max_len + 1), np.int32)
    token = np.zeros((len(seqs), max_len + 1), np.int32)
    mask = np.zeros((len(seqs), max_len + 1), np.float64)
    for k, s in enumerate(seqs):
        for i in range(min(len(s) + 1, max_len)):
            node[k, i] = index[s[:i]]
            token[k, i] = s[i] if i < len(s) else vocab_size
            mask[k, i] = 1.0
    lengths = np.array([len(s) + 1 for s in seqs], np.float64)  # content + end token
    return ToyLanguage(seqs, node, token, mask, lengths, len(prefixes), vocab_size + 1)


def _check_table(table_logits, lang: ToyLanguage) -> None:
    shape = _checks.shape_of("table_logits", table_logits)
    if shape != (lang.num_nodes, lang.num_tokens):
        raise ValueError(
            f"table_logits: expected shape ({lang.num_nodes}, {lang.num_tokens}) "
            f"(prefixes, tokens), got {shape}"
        )


def token_logps(table_logits: Float[ArrayLike, "N V1"], lang: ToyLanguage) -> Float[Array, "S L1"]:
    """(S, max_len + 1) log π(T_i | T_<i) along every sequence's path (0 where masked).

    References: the autoregressive factorisation of a sequence policy (module docstring).
    """
    _check_table(table_logits, lang)
    return _path_logps(table_logits, lang.node, lang.token, lang.mask)


def _path_logps(table_logits, node, token, mask):
    return jax.nn.log_softmax(table_logits, axis=-1)[node, token] * mask


def sequence_logps(table_logits: Float[ArrayLike, "N V1"], lang: ToyLanguage) -> Float[Array, " S"]:
    """(S,) log π(y) = Σ_i log π(T_i | T_<i), a distribution over the S sequences.

    References: the autoregressive factorisation of a sequence policy (module docstring).
    """
    return jnp.sum(token_logps(table_logits, lang), axis=-1)


class ToyProblem(NamedTuple):
    """A reference policy and a reward model over every sequence of a toy language."""

    lang: ToyLanguage
    ref_table: Array  # (N, V1) prefix-table logits of π_ref
    reward: Array  # (S,) r_θ(y): mean 0, standard deviation ``reward_scale`` over the S sequences
    ref_logps: Array  # (S,) log π_ref(y)
    ref_token_logps: Array  # (S, L1) log π_ref(T_i | T_<i) along each path (0 where masked)


def length_biased_reward(
    lang: ToyLanguage,
    token_values: Float[ArrayLike, " V"],
    noise: Float[ArrayLike, " S"],
    *,
    length_bonus: float,
    scale: float,
) -> np.ndarray:
    r"""A reward over the toy language that prefers longer sequences, standardised.

    .. math:: u(y) = \frac{1}{\max(m, 1)}\sum_{i=1}^{m} v_{T_i} + b\,m + \varepsilon_y,\qquad
              r(y) = s\,\frac{u(y) - \bar u}{\operatorname{sd}(u)}

    for y = (T_1, …, T_m, end): the mean value of its content tokens, a bonus b per content token
    and a per-sequence perturbation ε_y; mean and (ddof = 0) standard deviation are over the S
    sequences. The length bias mimics learned reward models, under which RLHF lengthens
    responses (the length column of Table 2); this construction is the project's, not the
    paper's (``theory/pm_rlhf.md`` §11).

    Args:
      lang: the toy language (S sequences over V content tokens).
      token_values: (V,) value v_t of each content token. noise: (S,) ε_y.
      length_bonus: b. scale: s > 0, the standard deviation of the result.
    Returns:
      (S,) float64 NumPy array r.

    References: Xiao et al., arXiv 2405.16455, Section 6 and Table 2 (the columns it shapes).
    """
    values = np.asarray(token_values, np.float64)
    eps = np.asarray(noise, np.float64)
    if values.shape != (lang.num_tokens - 1,):
        raise ValueError(
            f"token_values: expected shape ({lang.num_tokens - 1},), got {values.shape}"
        )
    if eps.shape != (len(lang.sequences),):
        raise ValueError(f"noise: expected shape ({len(lang.sequences)},), got {eps.shape}")
    _checks.check_all_finite(token_values=values, noise=eps)
    _checks.check_positive("scale", scale)
    lens = lang.lengths - 1  # content tokens m
    content = np.array([sum(values[t] for t in s) for s in lang.sequences])
    raw = content / np.maximum(lens, 1) + length_bonus * lens + eps
    if not raw.std() > 0:
        raise ValueError("noise: the unstandardised reward is constant; it has no scale to fix")
    return scale * (raw - raw.mean()) / raw.std()


def toy_problem(
    vocab_size: int,
    max_len: int,
    *,
    seed: int,
    ref_temperature: float = 1.0,
    reward_scale: float = 0.1,
    length_bonus: float = 0.3,
) -> ToyProblem:
    """A random instance of the PM RLHF toy problem: a peaked reference and a length-biased
    reward over the toy language ``toy_language(vocab_size, max_len)``.

    From ``numpy.random.default_rng(seed)``, in this order: the reference's prefix table,
    N(0, 1)/``ref_temperature`` per logit; the token values v ~ N(0, I_V); the perturbations
    ε ~ N(0, I_S) of :func:`length_biased_reward`, whose ``scale`` is ``reward_scale``.

    Example:
      >>> prob = toy_problem(2, 2, seed=0)
      >>> prob.reward.shape, prob.ref_table.shape
      ((7,), (3, 3))

    References: Xiao et al., arXiv 2405.16455, Section 6 (the toy language is this project's
      miniature of it, ``theory/pm_rlhf.md`` §11).
    """
    _checks.check_positive("ref_temperature", ref_temperature)
    lang = toy_language(vocab_size, max_len)
    rng = np.random.default_rng(seed)
    ref_table = rng.normal(size=(lang.num_nodes, lang.num_tokens)) / ref_temperature
    values = rng.normal(size=vocab_size)
    noise = rng.normal(size=len(lang.sequences))
    reward = length_biased_reward(
        lang, values, noise, length_bonus=length_bonus, scale=reward_scale
    )
    ref_tok = token_logps(jnp.asarray(ref_table), lang)
    return ToyProblem(
        lang, jnp.asarray(ref_table), jnp.asarray(reward), jnp.sum(ref_tok, -1), ref_tok
    )


def rlhf_shaped_rewards(
    prob: ToyProblem,
    beta: float,
    *,
    seq_alphas: tuple[float, ...] = (),
    token_alphas: tuple[float, ...] = (),
) -> dict[str, Array]:
    r"""The shaped reward r̃ of each RLHF objective of Table 2 on the toy problem, as one
    objective form :math:`\max_\pi E_\pi[\tilde r - \log\pi]` (optimum softmax(r̃)).

    With r = r_θ/β (``prob.reward / beta``), the keys and their r̃ (all (S,)):

    - ``"KL RLHF"``: r + log π_ref(y) (E[r − log(π/π_ref)], Prop. 5.1);
    - ``"PM RLHF"``: r (the PM-regularised objective, eq. (3.10));
    - ``"cPM seq α=<a>"`` for each a in ``seq_alphas``: r + log π_ref(y)·1(π_ref(y) < a), the
      paper's sequence-gated conditional PM (Definition 4.1,
      ``regularizers.conditional_pm_shaped_reward``);
    - ``"cPM token α=<a>"`` for each a in ``token_alphas``: r + Σ_i log π_ref(T_i | T_<i)·
      1(π_ref(T_i | T_<i) ≤ a), the official code's token gate
      (``regularizers.token_conditional_pm_shaped_reward``); α = 1 gives KL RLHF's r̃.

    Keys are in this order (``f"{a:g}"`` formats α), so ``jnp.stack(list(out.values()))`` is the
    (M, S) input of :func:`optimise_table`.

    Args:
      prob: the toy problem (reward r_θ, π_ref's sequence and token log-probs).
      beta: β > 0. seq_alphas, token_alphas: gates α ∈ (0, 1].
    Returns:
      dict from method name to (S,) r̃.

    Example:
      >>> prob = toy_problem(2, 2, seed=0)
      >>> list(rlhf_shaped_rewards(prob, 0.5, seq_alphas=(0.1,), token_alphas=(0.3,)))
      ['KL RLHF', 'PM RLHF', 'cPM seq α=0.1', 'cPM token α=0.3']

    References: Xiao et al., arXiv 2405.16455, Proposition 5.1, eq. (3.10), Definition 4.1,
      Table 2; official code (github.com/JiancongXiao/PM_RLHF, ppo_trainer.py) for the token
      gate.
    """
    _checks.check_positive("beta", beta)
    r, ref = prob.reward / beta, prob.ref_logps
    out = {"KL RLHF": r + ref, "PM RLHF": r}  # Prop. 5.1 / eq. (3.10)
    for a in seq_alphas:
        out[f"cPM seq α={a:g}"] = conditional_pm_shaped_reward(r, ref, a)  # Def. 4.1
    for a in token_alphas:
        out[f"cPM token α={a:g}"] = token_conditional_pm_shaped_reward(
            r, prob.ref_token_logps, a, prob.lang.mask
        )
    return out


def optimise_table(
    shaped_rewards: Float[ArrayLike, "M S"],
    init_table: Float[ArrayLike, "N V1"],
    lang: ToyLanguage,
    optimizer: optax.GradientTransformation,
    *,
    num_steps: int,
    key: PRNGKeyArray,
    num_samples: int | None = None,
) -> Float[Array, "M N V1"]:
    r"""Maximise :math:`J(\theta) = E_{y\sim\pi_\theta}[\tilde r(y) - \log\pi_\theta(y)]` over
    the prefix table θ, for each of M shaped rewards r̃ at once.

    J is the PM-regularised objective (R = −log π, eq. (3.10) with C₁ = C₂ = 0) with the
    shaped reward of KL-RLHF, PM RLHF or conditional PM RLHF (``regularizers``'s
    ``*_shaped_reward``); its maximiser over all sequence distributions is softmax(r̃)
    (``regularizers.gibbs_policy``), which the tabular policy can represent. Each run starts at
    ``init_table`` and takes ``num_steps`` steps of ``optimizer`` along the exact gradient
    (``num_samples=None``) or the REINFORCE leave-one-out estimate from ``num_samples`` sampled
    sequences (``regularizers.parametric_ascent``); the M runs share the step keys
    ``jax.random.split(key, num_steps)``.

    Args:
      shaped_rewards: (M, S) r̃ per run. init_table: (N, V1) starting logits (e.g. π_ref's).
      lang: the toy language. optimizer: an optax transformation (static: one compile each).
      num_steps: steps ≥ 1. key: PRNG key. num_samples: sequences per REINFORCE step, or None.
    Returns:
      (M, N, V1) the optimised tables.

    References: Xiao et al., arXiv 2405.16455, eqs. (3.10), (3.12); Williams (1992); Kool, van
      Hoof & Welling (ICLR 2019 workshop) for the leave-one-out baseline.
    """
    _check_table(init_table, lang)
    shape = _checks.check_ndim("shaped_rewards", shaped_rewards, 2)
    if shape[1] != len(lang.sequences):
        raise ValueError(
            f"shaped_rewards: expected (M, {len(lang.sequences)}) (runs, sequences), got {shape}"
        )
    _checks.check_all_finite(shaped_rewards=shaped_rewards)
    steps = _checks.check_int_in("num_steps", num_steps, 1, 10**9)
    if num_samples is not None:
        _checks.check_int_in("num_samples", num_samples, 2, 10**9)
    paths = (jnp.asarray(lang.node), jnp.asarray(lang.token), jnp.asarray(lang.mask))
    keys = jax.random.split(key, steps)
    return _optimise_table(
        jnp.asarray(shaped_rewards), jnp.asarray(init_table), paths, keys, optimizer, num_samples
    )


@partial(jax.jit, static_argnums=(4, 5))  # one compile per optimizer and sample count
def _optimise_table(shaped, init_table, paths, keys, optimizer, num_samples):
    def logits_fn(table):  # sequence_logps on the traced path arrays
        return jnp.sum(_path_logps(table, *paths), axis=-1)

    def run_one(rewards):
        init, update = parametric_ascent(
            logits_fn, rewards, pm_regularizer, optimizer, num_samples=num_samples
        )
        return jax.lax.scan(update, init(init_table), keys)[0].logits

    return jax.vmap(run_one)(shaped)

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
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxpref import _checks

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
    logsm = jax.nn.log_softmax(table_logits, axis=-1)
    return logsm[lang.node, lang.token] * lang.mask


def sequence_logps(table_logits: Float[ArrayLike, "N V1"], lang: ToyLanguage) -> Float[Array, " S"]:
    """(S,) log π(y) = Σ_i log π(T_i | T_<i), a distribution over the S sequences.

    References: the autoregressive factorisation of a sequence policy (module docstring).
    """
    return jnp.sum(token_logps(table_logits, lang), axis=-1)

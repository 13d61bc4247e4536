"""Synthetic preference data: token-level pairs with a known Bradley–Terry reward, and HH-format
dialogue rows with a known preferred side.

Prompts and two candidate responses are drawn uniformly over the vocabulary; the latent reward
of a response is the mean of per-token rewards, ``r(y) = (1/|y|) Σ_t w[y_t]``, and the preferred
one is drawn from the Bradley–Terry model ``P(y¹ ≻ y² | x) = σ(β (r(y¹) − r(y²)))``.
The batches match :func:`jaxpref.data.tokenize.collate_preferences` (right padding, no BOS/EOS),
so a training loop can be checked against the known reward.

References: Bradley & Terry, "Rank analysis of incomplete block designs" (Biometrika, 1952);
Rafailov et al., "Direct Preference Optimization", arXiv:2305.18290, Eq. (1).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpref._checks import check_positive
from jaxpref.data.tokenize import EncodedPair, PreferenceBatch, collate_preferences


class SyntheticPreferences(NamedTuple):
    batch: PreferenceBatch  # chosen/rejected, each (B, P + R)
    chosen_reward: np.ndarray  # (B,) latent reward of the chosen response
    rejected_reward: np.ndarray  # (B,) latent reward of the rejected response
    token_rewards: np.ndarray  # (V,) per-token reward w


def synthetic_preferences(
    key: jax.Array,
    *,
    num_pairs: int,
    prompt_length: int,
    response_length: int,
    vocab_size: int,
    beta: float = 1.0,
    token_rewards: np.ndarray | None = None,
    pad_id: int = 0,
) -> SyntheticPreferences:
    """Draw ``num_pairs`` Bradley–Terry preference pairs over random token sequences.

    Args:
      key: PRNG key.
      num_pairs, prompt_length, response_length, vocab_size: sizes ``B``, ``P``, ``R``, ``V``.
      beta: BT inverse temperature β.
      token_rewards: (V,) per-token reward ``w``; standard normal draws when None.
      pad_id: padding id (there is no padding here: every sequence has length P + R).

    Returns:
      :class:`SyntheticPreferences` with the collated batch and the latent rewards.
    """
    for name, v in [
        ("num_pairs", num_pairs),
        ("prompt_length", prompt_length),
        ("response_length", response_length),
        ("vocab_size", vocab_size),
        ("beta", beta),
    ]:
        check_positive(name, v)
    k_w, k_x, k_y, k_pref = jax.random.split(key, 4)
    w = (
        jax.random.normal(k_w, (vocab_size,))
        if token_rewards is None
        else jnp.asarray(token_rewards)
    )
    if w.shape != (vocab_size,):
        raise ValueError(f"token_rewards: expected shape ({vocab_size},), got {w.shape}")
    x = jax.random.randint(k_x, (num_pairs, prompt_length), 0, vocab_size)
    y = jax.random.randint(k_y, (2, num_pairs, response_length), 0, vocab_size)
    r = jnp.mean(w[y], axis=-1)  # (2, B)  r(y) = mean_t w[y_t]
    first_wins = jax.random.bernoulli(k_pref, jax.nn.sigmoid(beta * (r[0] - r[1])))  # Eq. (1)
    order = jnp.where(first_wins, 0, 1)
    return _assemble(np.asarray(x), np.asarray(y), np.asarray(r), np.asarray(order), w, pad_id)


def _assemble(x, y, r, order, w, pad_id) -> SyntheticPreferences:
    rows = np.arange(x.shape[0])
    win, lose = y[order, rows], y[1 - order, rows]
    encoded = [EncodedPair(list(p), list(c), list(n)) for p, c, n in zip(x, win, lose)]
    batch = collate_preferences(encoded, pad_id=pad_id)
    return SyntheticPreferences(batch, r[order, rows], r[1 - order, rows], np.asarray(w))


_TOPICS = ("bread", "tea", "bikes", "rain", "maps", "music", "plants", "chess")
_GOOD = (
    "Sure, here is a careful answer about {t}.",
    "Happy to help with {t}: start simply.",
    "Good question about {t}; here are the safe steps.",
)
_BAD = ("I will not talk about {t}.", "Figure out {t} yourself.", "{t}? Whatever.")


def synthetic_dialogue_rows(num_rows: int, *, seed: int = 0, num_turns: int = 2) -> list[dict]:
    """HH-format rows (``chosen``/``rejected`` whole dialogues) with a known preference.

    Both sides share a ``num_turns``-turn prompt about one topic; the chosen reply is drawn from
    helpful templates and the rejected one from dismissive templates. The rows go through
    :func:`jaxpref.data.pairs_from_rows` like real HH data (for offline demos and tests).
    """
    check_positive("num_rows", num_rows)
    check_positive("num_turns", num_turns)
    rng = np.random.default_rng(seed)
    return [_dialogue_row(rng, num_turns) for _ in range(num_rows)]


def _dialogue_row(rng: np.random.Generator, num_turns: int) -> dict:
    topic = str(rng.choice(_TOPICS))
    turns = [
        f"\n\nHuman: Tell me about {topic}, part {k + 1}.\n\nAssistant: It is a big topic."
        for k in range(num_turns - 1)
    ]
    prompt = "".join(turns) + f"\n\nHuman: What should I know about {topic}?\n\nAssistant:"
    good, bad = (str(rng.choice(options)).format(t=topic) for options in (_GOOD, _BAD))
    return {"chosen": f"{prompt} {good}", "rejected": f"{prompt} {bad}"}

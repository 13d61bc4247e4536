"""Exact per-token and summed log-probabilities of response tokens under a causal LM."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpref._checks import check_same_shape, shape_of


def token_logps(logits_BxLxV, input_ids_BxL):
    """log π(x_t | x_<t) for t = 1..L−1, aligned with ``input_ids`` (column 0 is 0).

    Computed as logit[x_t] − logsumexp(logits) in at least float32, without materialising the
    full log-softmax.
    """
    ftype = jnp.promote_types(logits_BxLxV.dtype, jnp.float32)
    logits = logits_BxLxV[:, :-1].astype(ftype)
    targets = input_ids_BxL[:, 1:]
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    logp = picked - jax.nn.logsumexp(logits, axis=-1)
    return jnp.pad(logp, ((0, 0), (1, 0)))


def sequence_logps(model, input_ids, attention_mask, loss_mask):
    """Summed and per-token log-probs of the tokens selected by ``loss_mask``.

    .. math:: \\log \\pi(y \\mid x) = \\sum_t m_t \\log \\pi(x_t \\mid x_{<t})

    Args:
      model: a callable ``model(input_ids, attention_mask) -> logits (B, L, V)``.
      input_ids: (B, L) int tokens (prompt and response, left or right padded).
      attention_mask: (B, L) 1 for real tokens, 0 for padding.
      loss_mask: (B, L) 1 on the response tokens whose log-probs count (token t's log-prob
        conditions on tokens < t; ``loss_mask[:, 0]`` must be 0 since nothing predicts it).
    Returns:
      ``(summed (B,), per_token (B, L))`` in at least float32; ``per_token`` is zero off the mask.
    """
    check_same_shape(input_ids=input_ids, attention_mask=attention_mask, loss_mask=loss_mask)
    if len(shape_of("input_ids", input_ids)) != 2:
        shape = shape_of("input_ids", input_ids)
        raise ValueError(f"input_ids: expected shape (B, L), got {shape}")
    logits = model(input_ids, attention_mask)
    per_token = token_logps(logits, input_ids)
    mask = (loss_mask * attention_mask).astype(bool)
    per_token = jnp.where(mask, per_token, 0.0)
    return per_token.sum(axis=-1), per_token

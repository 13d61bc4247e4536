"""Exact per-token and summed log-probabilities of response tokens under a causal LM.

:func:`sequence_logps` never holds the ``(B, L, V)`` logits of a :class:`~jaxpref.llm.Decoder`
in float32 at once: it runs the LM head and the log-sum-exp over chunks of the sequence
(``lax.map``), each chunk rematerialised in the backward pass, so temporary memory is
``O(B · chunk · V)`` instead of ``O(B · L · V)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpref._checks import array_namespace, check_condition, check_same_shape, shape_of

CHUNK_BYTES = 1 << 24  # default budget of one chunk's float32 logits (16 MiB)


def token_logps(logits_BxLxV, input_ids_BxL):
    """log π(x_t | x_<t) for t = 1..L−1, aligned with ``input_ids`` (column 0 is 0).

    Computed as logit[x_t] − logsumexp(logits) in at least float32, without materialising the
    full log-softmax.
    """
    logp = _shifted_logps(logits_BxLxV[:, :-1], input_ids_BxL[:, 1:])
    return jnp.pad(logp, ((0, 0), (1, 0)))


def _shifted_logps(logits_BxCxV, targets_BxC):
    """log softmax(logits)[target] per position, in at least float32."""
    ftype = jnp.promote_types(logits_BxCxV.dtype, jnp.float32)
    logits = logits_BxCxV.astype(ftype)
    picked = jnp.take_along_axis(logits, targets_BxC[..., None], axis=-1)[..., 0]
    return picked - jax.nn.logsumexp(logits, axis=-1)


def _loss_mask_problems(xp, attention_mask, loss_mask):
    """``(bad (B, C), what, column offset)`` of each rule of the mask convention, in ``xp``."""
    attn = xp.asarray(attention_mask).astype(bool)
    loss = xp.asarray(loss_mask).astype(bool)
    return (
        (loss[:, :1], "column 0 must be 0 (no token predicts the first one)", 0),
        (loss & ~attn, "is 1 on a padding token", 0),
        (loss[:, 1:] & ~attn[:, :-1], "is 1 on a token whose predecessor is padding", 1),
    )


def check_loss_mask(attention_mask, loss_mask) -> None:
    """Host-side check of the mask convention (numpy, no device work): ``loss_mask`` is 0 in
    column 0 (nothing predicts the first token), 0 on padding, and 0 where the previous token is
    padding (its log-prob would condition on a padding slot). Raises ``ValueError`` naming the
    first offending row and column."""
    for bad, what, offset in _loss_mask_problems(np, attention_mask, loss_mask):
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                f"loss_mask: {what} (row {int(row)}, column {int(col) + offset}; "
                f"{int(bad.any(-1).sum())} row(s) affected)"
            )


def default_chunk_size(batch: int, length: int, vocab: int) -> int:
    """Positions per chunk so one chunk's float32 logits fit :data:`CHUNK_BYTES` (a power of
    two, at least 16, at most ``length``)."""
    rows = max(1, CHUNK_BYTES // (4 * max(batch, 1) * max(vocab, 1)))
    return min(length, max(16, 1 << (rows.bit_length() - 1)))


def chunked_token_logps(model, hidden_BxLxE, input_ids_BxL, chunk_size: int):
    """:func:`token_logps` of ``model.head(hidden)`` computed ``chunk_size`` positions at a
    time. A length that ``chunk_size`` does not divide is padded up to a multiple of it (the
    padded positions are dropped; the result is exact)."""
    b, length, width = hidden_BxLxE.shape
    targets = jnp.pad(input_ids_BxL[:, 1:], ((0, 0), (0, 1)))  # position t predicts token t+1
    n = -(-length // chunk_size)
    pad = n * chunk_size - length
    hidden = jnp.pad(hidden_BxLxE, ((0, 0), (0, pad), (0, 0)))
    targets = jnp.pad(targets, ((0, 0), (0, pad)))
    h_NxBxCxE = hidden.reshape(b, n, chunk_size, width).swapaxes(0, 1)
    t_NxBxC = targets.reshape(b, n, chunk_size).swapaxes(0, 1)
    graphdef, state = nnx.split(model)

    def chunk(state, h, t):
        return _shifted_logps(nnx.merge(graphdef, state).head(h), t)

    if n > 1:  # recompute each chunk's logits in the backward pass instead of saving them
        chunk = jax.checkpoint(chunk, prevent_cse=False)
    logp_NxBxC = jax.lax.map(lambda ht: chunk(state, *ht), (h_NxBxCxE, t_NxBxC))
    logp = logp_NxBxC.swapaxes(0, 1).reshape(b, n * chunk_size)[:, : length - 1]
    return jnp.pad(logp, ((0, 0), (1, 0)))


def sequence_logps(
    model, input_ids, attention_mask, loss_mask, *, chunk_size=None, segment_ids=None
):
    """Summed and per-token log-probs of the tokens selected by ``loss_mask``.

    .. math:: \\log \\pi(y \\mid x) = \\sum_t m_t \\log \\pi(x_t \\mid x_{<t})

    Args:
      model: a :class:`~jaxpref.llm.Decoder` (or anything with ``hidden_states`` and ``head``),
        whose head and log-sum-exp then run in chunks of the sequence; or any callable
        ``model(input_ids, attention_mask) -> logits (B, L, V)``.
      input_ids: (B, L) int tokens (prompt and response, left or right padded).
      attention_mask: (B, L) 1 for real tokens, 0 for padding.
      loss_mask: (B, L) 1 on the response tokens whose log-probs count (token t's log-prob
        conditions on tokens < t, so ``loss_mask[:, 0]`` must be 0, and so must every entry on
        padding or right after padding). Checked by the value-check convention of
        :mod:`jaxpref._checks`: host masks at once (the message names the first offending row
        and column), JAX masks in the graph or asynchronously (the message names the rule and
        counts the offending entries); :func:`check_loss_mask` checks a host batch alone.
      chunk_size: positions per chunk (default :func:`default_chunk_size`: 16 MiB of float32
        logits per chunk); a length it does not divide is padded internally, exactly.
      segment_ids: (B, L) packed rows (see ``Decoder.hidden_states``); the first token of each
        segment must be off the loss mask (its predecessor belongs to another segment).
    Returns:
      ``(summed (B,), per_token (B, L))`` in at least float32; ``per_token`` is zero off the mask.
    """
    check_logps_args(input_ids, attention_mask, loss_mask, chunk_size)
    if segment_ids is not None and not hasattr(model, "hidden_states"):
        raise ValueError("segment_ids: the model has no hidden_states to pack rows into")
    if hasattr(model, "hidden_states") and hasattr(model, "head"):
        extra = {} if segment_ids is None else {"segment_ids": segment_ids}
        hidden = model.hidden_states(input_ids, attention_mask, **extra)
        return response_logps(model, hidden, input_ids, attention_mask, loss_mask, chunk_size)
    per_token = token_logps(model(input_ids, attention_mask), input_ids)
    return _masked_sum(per_token, attention_mask, loss_mask)


def check_logps_args(input_ids, attention_mask, loss_mask, chunk_size) -> None:
    """The checks of :func:`sequence_logps`: shapes, ``chunk_size``, the mask convention."""
    check_same_shape(input_ids=input_ids, attention_mask=attention_mask, loss_mask=loss_mask)
    shape = shape_of("input_ids", input_ids)
    if len(shape) != 2:
        raise ValueError(f"input_ids: expected shape (B, L), got {shape}")
    if chunk_size is not None and (int(chunk_size) != chunk_size or chunk_size < 1):
        raise ValueError(f"chunk_size: must be an integer ≥ 1, got {chunk_size!r}")
    xp = array_namespace(attention_mask, loss_mask)
    if xp is np:  # host masks: at once, naming the first offending row and column
        check_loss_mask(attention_mask, loss_mask)
        return
    for bad, what, _ in _loss_mask_problems(xp, attention_mask, loss_mask):
        check_condition("loss_mask", bad, what)  # in the graph, or asynchronously when eager


def response_logps(model, hidden_BxLxE, input_ids, attention_mask, loss_mask, chunk_size=None):
    """:func:`sequence_logps` from hidden states already computed (one forward pass shared with
    e.g. :func:`~jaxpref.llm.features.features_and_logps`): ``(summed (B,), per_token (B, L))``."""
    b, length = np.shape(input_ids)
    size = chunk_size or default_chunk_size(b, length, model.config.vocab_size)
    per_token = chunked_token_logps(model, hidden_BxLxE, jnp.asarray(input_ids), int(size))
    return _masked_sum(per_token, attention_mask, loss_mask)


def _masked_sum(per_token, attention_mask, loss_mask):
    mask = (jnp.asarray(loss_mask) * jnp.asarray(attention_mask)).astype(bool)
    per_token = jnp.where(mask, per_token, 0.0)
    return per_token.sum(axis=-1), per_token

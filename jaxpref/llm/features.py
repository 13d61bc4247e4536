"""Sequence features of a causal LM: the final hidden state pooled over a row's real tokens.

φ(x, y) of the ADPO paper's LLM experiments (Kveton et al., "Active Learning for Direct
Preference Optimization", arXiv:2503.01076, §6.2) is "the embedding of the concatenated prompt
and response" from the last layer. Here that is ``Decoder.hidden_states`` (after the final norm,
what the LM head reads) at the row's last real token (``pooling="last"``), or its mean over the
real tokens (``pooling="mean"``), in float32 whatever the compute dtype. Rows may be left or
right padded: positions come from the mask, so a padded row gives its unpadded run's features.

:func:`features_and_logps` returns, from one forward pass, the features and the summed
log-probs of the response tokens under the same model, so the offsets of a preference pair,
b_i = log π₀(y_w | x) − log π₀(y_l | x), come with φ at no second pass.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpref._checks import (
    array_namespace,
    check_condition,
    check_same_shape,
    is_concrete,
    shape_of,
)
from jaxpref.llm.logps import check_logps_args, response_logps
from jaxpref.llm.sharding import constrain, logical_to_spec

POOLINGS = ("last", "mean")


def _check(input_ids, attention_mask, pooling, segment_ids):
    if pooling not in POOLINGS:
        raise ValueError(f"pooling: unknown {pooling!r}; choices: {POOLINGS}")
    check_same_shape(input_ids=input_ids, attention_mask=attention_mask)
    shape = shape_of("input_ids", input_ids)
    if len(shape) != 2:
        raise ValueError(f"input_ids: expected shape (B, L), got {shape}")
    if segment_ids is not None:
        check_same_shape(input_ids=input_ids, segment_ids=segment_ids)
        return
    xp = array_namespace(attention_mask)
    empty = ~xp.asarray(attention_mask).astype(bool).any(-1)
    if xp is not np:  # JAX mask: in the graph, or asynchronously when eager
        check_condition("attention_mask", empty, "a row has no real token")
    elif empty.any():  # host mask: at once, naming the row
        raise ValueError(
            f"attention_mask: row {int(np.argmax(empty))} has no real token "
            f"({int(empty.sum())} such row(s))"
        )


def _num_segments(segment_ids, num_segments):
    if num_segments is not None:
        if int(num_segments) != num_segments or num_segments < 1:
            raise ValueError(f"num_segments: must be an integer ≥ 1, got {num_segments!r}")
        return int(num_segments)
    if not is_concrete(segment_ids):
        raise ValueError("num_segments: required with segment_ids inside jit (a static size)")
    return max(int(np.max(np.asarray(segment_ids))), 1)


def pool_hidden(hidden_BxLxE, attention_mask_BxL, pooling: str = "last"):
    """(B, E) float32: each row's hidden state at its last real token, or the mean over its
    real tokens (left or right padding)."""
    h = hidden_BxLxE.astype(jnp.promote_types(hidden_BxLxE.dtype, jnp.float32))
    mask_BxL = attention_mask_BxL.astype(bool)
    if pooling == "last":
        positions = jnp.arange(mask_BxL.shape[1])
        last_B = jnp.max(jnp.where(mask_BxL, positions, -1), axis=1).clip(0)
        return jnp.take_along_axis(h, last_B[:, None, None], axis=1)[:, 0]
    weights_BxL = mask_BxL.astype(h.dtype)
    total_BxE = jnp.sum(h * weights_BxL[..., None], axis=1)
    return total_BxE / jnp.maximum(weights_BxL.sum(1, keepdims=True), 1.0)


def pool_segments(hidden_BxLxE, segment_ids_BxL, num_segments: int, pooling: str = "last"):
    """(B, S, E) float32: :func:`pool_hidden` of each packed segment s = 1..S of each row (a
    segment absent from a row gives zeros)."""
    ids_S = jnp.arange(1, num_segments + 1)
    member_BxSxL = segment_ids_BxL[:, None, :] == ids_S[None, :, None]
    b, s, length = member_BxSxL.shape
    h = jnp.broadcast_to(hidden_BxLxE[:, None], (b, s, length, hidden_BxLxE.shape[-1]))
    pooled = pool_hidden(h.reshape(b * s, length, -1), member_BxSxL.reshape(b * s, length), pooling)
    present_BxS = member_BxSxL.any(-1)
    return jnp.where(present_BxS[..., None], pooled.reshape(b, s, -1), 0.0)


def _pooled(hidden, attention_mask, pooling, segment_ids, num_segments):
    if segment_ids is None:
        return constrain(pool_hidden(hidden, jnp.asarray(attention_mask), pooling), ("batch", None))
    seg = jnp.where(jnp.asarray(attention_mask).astype(bool), jnp.asarray(segment_ids), 0)
    return pool_segments(hidden, seg, num_segments, pooling)


def sequence_features(
    model, input_ids, attention_mask, *, pooling="last", segment_ids=None, num_segments=None
):
    """φ(x, y): the final-normed hidden state of each row, pooled over its real tokens.

    Args:
      model: a :class:`~jaxpref.llm.Decoder` (anything with ``hidden_states``), scanned or not,
        sharded or not (the batch is constrained to the ``batch`` logical axis).
      input_ids: (B, L) int tokens of prompt + response, left or right padded.
      attention_mask: (B, L) 1 for real tokens, 0 for padding (no row may be all padding).
      pooling: ``"last"`` (the last real token, as the ADPO paper's "embedding of the
        concatenated prompt+response") or ``"mean"`` (the mean over the real tokens).
      segment_ids: (B, L) packed rows (see ``Decoder.hidden_states``); the output is then
        (B, S, E), one feature vector per segment 1..S.
      num_segments: S with ``segment_ids`` (inferred from concrete ids; required under jit).
    Returns:
      (B, E) float32 features (E = ``config.embed_width``); (B, S, E) with ``segment_ids``.
    """
    _check(input_ids, attention_mask, pooling, segment_ids)
    extra = {}
    if segment_ids is not None:
        num_segments = _num_segments(segment_ids, num_segments)
        extra = {"segment_ids": segment_ids}
    hidden = model.hidden_states(input_ids, attention_mask, **extra)
    return _pooled(hidden, attention_mask, pooling, segment_ids, num_segments)


def features_and_logps(
    model, input_ids, attention_mask, loss_mask, *, pooling="last", chunk_size=None
):
    """Features and summed response log-probs of each row from one forward pass.

    ``features`` is :func:`sequence_features`; ``logps`` equals
    ``llm.sequence_logps(model, input_ids, attention_mask, loss_mask)[0]`` (the LM head runs in
    chunks of the sequence on the same hidden states). For a preference pair laid out as rows
    (chosen, rejected), b = logps[chosen] − logps[rejected] is the offset of the log-linear DPO
    policy (ADPO paper, §6.2: b_i = log π₀(y_w | x) − log π₀(y_l | x)).

    Args:
      model: a :class:`~jaxpref.llm.Decoder` (with ``hidden_states`` and ``head``).
      input_ids, attention_mask, loss_mask: (B, L), as in :func:`~jaxpref.llm.sequence_logps`.
      pooling: ``"last"`` or ``"mean"``.
      chunk_size: positions per chunk of the LM head (default: 16 MiB of float32 logits).
    Returns:
      ``(features (B, E) float32, logps (B,) at least float32)``.
    """
    _check(input_ids, attention_mask, pooling, None)
    check_logps_args(input_ids, attention_mask, loss_mask, chunk_size)
    if not (hasattr(model, "hidden_states") and hasattr(model, "head")):
        raise ValueError("model: needs hidden_states and head (a jaxpref.llm.Decoder)")
    hidden = model.hidden_states(input_ids, attention_mask)
    summed, _ = response_logps(model, hidden, input_ids, attention_mask, loss_mask, chunk_size)
    return _pooled(hidden, attention_mask, pooling, None, None), summed


def pair_offsets(logps_chosen, logps_rejected):
    """b = log π₀(y_w | x) − log π₀(y_l | x) (ADPO paper, §6.2), in float32 or wider."""
    check_same_shape(logps_chosen=logps_chosen, logps_rejected=logps_rejected)
    diff = jnp.asarray(logps_chosen) - jnp.asarray(logps_rejected)
    return diff.astype(jnp.promote_types(diff.dtype, jnp.float32))


def bucketed_features_and_logps(
    model,
    prompts,
    responses,
    *,
    pad_id: int,
    pooling: str = "last",
    batch_size: int = 32,
    bucket: int = 32,
    mesh=None,
):
    """:func:`features_and_logps` of many ``prompt + response`` token lists in one jitted pass.

    Rows are sorted by length and cut into batches of ``batch_size`` (the last one filled with
    copies of a real row, dropped afterwards), each right-padded to a multiple of ``bucket``, so
    the pass compiles one program per distinct bucket. With a ``mesh`` each batch is split over
    its ``batch`` axes (``batch_size`` must divide by their size).

    Returns: ``(features (M, E) float32, logps (M,) float64)`` as NumPy arrays, in input order;
    ``logps`` sums the response tokens' log-probs.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling: unknown {pooling!r}; choices: {POOLINGS}")
    for name, value in (("batch_size", batch_size), ("bucket", bucket)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name}: must be an integer ≥ 1, got {value!r}")
    if len(prompts) != len(responses) or not len(prompts):
        raise ValueError(
            f"prompts, responses: need the same non-zero length, got {len(prompts)} and "
            f"{len(responses)}"
        )
    if any(len(r) == 0 for r in responses):
        raise ValueError("responses: an empty response has no log-prob to sum")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("prompts: an empty prompt leaves the first response token unpredicted")
    lengths = np.array([len(p) + len(r) for p, r in zip(prompts, responses)])
    order = np.argsort(lengths, kind="stable")

    @nnx.jit
    def fn(m, ids, attn, loss):
        return features_and_logps(m, ids, attn, loss, pooling=pooling)

    sharding = None
    if mesh is not None:
        sharding = jax.sharding.NamedSharding(mesh, logical_to_spec(("batch", None)))
    feats, logps = [], []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        rows = np.concatenate([rows, np.full(batch_size - len(rows), rows[0])])
        width = -(-int(lengths[rows].max()) // bucket) * bucket
        arrays = _right_padded(
            [prompts[i] for i in rows], [responses[i] for i in rows], width, pad_id
        )
        if sharding is not None:
            with jax.set_mesh(mesh):
                f, lp = fn(model, *jax.device_put(arrays, sharding))
        else:
            f, lp = fn(model, *arrays)
        feats.append(np.asarray(f, np.float32))
        logps.append(np.asarray(lp, np.float64))
    inverse = np.argsort(order)  # padding copies sit past len(order), at the very end
    return np.concatenate(feats)[inverse], np.concatenate(logps)[inverse]


def pair_features_and_logps(model, pairs, *, pad_id: int, **kwargs):
    """:func:`bucketed_features_and_logps` of both sides of preference pairs in one pass.

    ``pairs``: objects with ``prompt``, ``chosen`` and ``rejected`` token lists (e.g.
    :class:`jaxpref.data.EncodedPair`); all 2N rows share the buckets. ``kwargs``: ``pooling``,
    ``batch_size``, ``bucket``, ``mesh`` as there.

    Returns: ``(features_w (N, E), features_l (N, E), logps_w (N,), logps_l (N,))`` of the
    winners (``chosen``) and losers (``rejected``), in pair order.
    """
    prompts = [p.prompt for p in pairs] * 2
    responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    feats, logps = bucketed_features_and_logps(model, prompts, responses, pad_id=pad_id, **kwargs)
    n = len(pairs)
    return feats[:n], feats[n:], logps[:n], logps[n:]


def _right_padded(prompts, responses, width, pad_id):
    """(ids, attention mask, response mask) of ``prompt + response`` rows, (B, width) int32."""
    out = np.zeros((3, len(prompts), width), np.int32)
    out[0] = pad_id
    for b, (p, r) in enumerate(zip(prompts, responses)):
        out[0, b, : len(p) + len(r)] = [*p, *r]
        out[1, b, : len(p) + len(r)] = 1
        out[2, b, len(p) : len(p) + len(r)] = 1
    return tuple(out)


__all__ = [
    "POOLINGS",
    "bucketed_features_and_logps",
    "features_and_logps",
    "pair_features_and_logps",
    "pair_offsets",
    "pool_hidden",
    "pool_segments",
    "sequence_features",
]

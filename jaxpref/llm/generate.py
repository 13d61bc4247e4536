"""Jitted sampling with a KV cache: one prefill, then a decode loop inside ``jit``.

Prompts are left-aligned into a fixed bucket (length rounded up to a multiple of ``bucket``), so
repeated calls with prompts of the same bucket, batch size and ``max_new_tokens`` reuse one
compiled program; temperature, top-k, top-p, the EOS ids and the RNG key are traced values and
never trigger a recompilation (an EOS list is padded to a power-of-two length ≥ 4).

Arguments left unset take the checkpoint's defaults, as transformers' ``generate`` does: the
model's :class:`~jaxpref.llm.config.GenerationConfig` (``generation_config.json`` when
``from_pretrained`` found one, else ``config.json``'s token ids; greedy unless it says
``do_sample``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpref.llm.config import GenerationConfig
from jaxpref.llm.model import KVCache

FROM_MODEL = "model"  # default of ``eos_token_id``: the model's generation config


class GenerationOutput(NamedTuple):
    tokens: jax.Array  # (B, P + T) left-padded prompt bucket followed by the generated tokens
    mask: jax.Array  # (B, P + T) 1 on prompt and generated tokens (EOS included), 0 elsewhere
    new_tokens: jax.Array  # (B, T) generated tokens, ``pad_token_id`` after a row stops
    lengths: jax.Array  # (B,) number of generated tokens per row (EOS counted)


def sample_logits(logits_BxV, key, temperature, top_k, top_p):
    """Draw one token per row from softmax(logits / temperature) restricted to the top-k tokens
    and the smallest top-p nucleus (Holtzman et al., 1904.09751); temperature 0 is greedy.

    ``top_k <= 0`` and ``top_p >= 1`` disable the filters. Ties at a threshold are all kept.
    """
    logits = logits_BxV.astype(jnp.promote_types(logits_BxV.dtype, jnp.float32))
    greedy = lambda: jnp.argmax(logits, axis=-1).astype(jnp.int32)  # noqa: E731
    sample = lambda: _filtered_sample(logits, key, temperature, top_k, top_p)  # noqa: E731
    return jax.lax.cond(temperature == 0, greedy, sample)  # greedy skips the vocabulary sorts


def _filtered_sample(logits, key, temperature, top_k, top_p):
    vocab = logits.shape[-1]
    scaled = logits / jnp.maximum(temperature, 1e-6)
    desc = -jnp.sort(-scaled, axis=-1)
    k = jnp.where(top_k > 0, jnp.minimum(top_k, vocab), vocab)
    kth = jnp.take_along_axis(desc, jnp.broadcast_to(k - 1, (desc.shape[0], 1)), axis=-1)
    desc = jnp.where(desc < kth, -jnp.inf, desc)
    probs = jax.nn.softmax(desc, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly more likely tokens
    count = jnp.maximum(jnp.sum(before < top_p, axis=-1, keepdims=True), 1)
    threshold = jnp.maximum(jnp.take_along_axis(desc, count - 1, axis=-1), kth)
    filtered = jnp.where(scaled < threshold, -jnp.inf, scaled)
    return jax.random.categorical(key, filtered, axis=-1).astype(jnp.int32)


def left_align(input_ids_BxL, mask_BxL):
    """Move each row's real tokens to the right end (contiguous real tokens assumed)."""
    length = mask_BxL.shape[1]
    last = length - 1 - jnp.argmax(mask_BxL[:, ::-1], axis=-1)  # index of the last real token
    shift = length - 1 - last
    idx = (jnp.arange(length)[None, :] - shift[:, None]) % length
    return (
        jnp.take_along_axis(input_ids_BxL, idx, axis=1),
        jnp.take_along_axis(mask_BxL, idx, axis=1),
    )


class _Loop(NamedTuple):
    step: jax.Array  # ()
    cache: KVCache
    logits: jax.Array  # (B, V) next-token logits
    positions: jax.Array  # (B,) position of the next token
    key: jax.Array
    tokens: jax.Array  # (B, T)
    done: jax.Array  # (B,) bool
    lengths: jax.Array  # (B,)


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens"))
def _generate(
    graphdef, state, ids, mask, live, key, temperature, top_k, top_p, eos, pad, *, max_new_tokens
):
    model = nnx.merge(graphdef, state)
    ids, mask = left_align(ids, mask)
    batch, prompt = ids.shape
    cache = model.init_cache(batch, prompt + max_new_tokens)
    logits, cache = model(ids, mask, cache=cache)
    start = _Loop(
        jnp.zeros((), jnp.int32),
        cache,
        logits[:, -1],
        mask.sum(-1),
        key,
        jnp.full((batch, max_new_tokens), pad, jnp.int32),
        ~live,  # dummy rows start done, so they never hold the loop open
        jnp.zeros(batch, jnp.int32),
    )

    def body(s: _Loop) -> _Loop:
        key, sub = jax.random.split(s.key)
        token = jnp.where(s.done, pad, sample_logits(s.logits, sub, temperature, top_k, top_p))
        lengths = s.lengths + (~s.done).astype(jnp.int32)
        done = s.done | (token[:, None] == eos[None, :]).any(-1)
        logits, cache = model(
            token[:, None],
            jnp.ones((batch, 1), bool),
            positions=s.positions[:, None],
            cache=s.cache,
        )
        tokens = jax.lax.dynamic_update_slice(s.tokens, token[:, None], (jnp.int32(0), s.step))
        return _Loop(s.step + 1, cache, logits[:, -1], s.positions + 1, key, tokens, done, lengths)

    def cond(s: _Loop):
        return (s.step < max_new_tokens) & ~jnp.all(s.done)

    end = jax.lax.while_loop(cond, body, start)
    new_mask = jnp.arange(max_new_tokens)[None, :] < end.lengths[:, None]
    return GenerationOutput(
        jnp.concatenate([ids, end.tokens], axis=1),
        jnp.concatenate([mask.astype(jnp.int32), new_mask], axis=1),
        end.tokens,
        end.lengths,
    )


def generate(
    model,
    input_ids,
    attention_mask=None,
    *,
    key,
    max_new_tokens: int,
    temperature=None,
    top_k=None,
    top_p=None,
    eos_token_id: int | Sequence[int] | None | str = FROM_MODEL,
    pad_token_id=None,
    bucket: int = 16,
    batch_bucket: int = 1,
    generation_config: GenerationConfig | None = None,
) -> GenerationOutput:
    """Sample up to ``max_new_tokens`` tokens per row after (left- or right-padded) prompts.

    Args:
      model: a :class:`~jaxpref.llm.model.Decoder`.
      input_ids, attention_mask: (B, L) prompts; every row needs at least one real token.
      key: PRNG key. temperature: 0 for greedy decoding. top_k: 0 disables. top_p: 1 disables.
        Each defaults (None) to the generation config's value when it samples (``do_sample``),
        else to greedy.
      eos_token_id: an id or a list of ids; a row stops after emitting one (counted in
        ``lengths``). Default: the generation config's list; None never stops.
      pad_token_id: fills rows after they stop; default the config's pad id, else its first
        EOS id, else 0 (transformers' rule).
      bucket: prompts are left-padded to a multiple of this length so calls share a compile
        (positions follow the real tokens, so the padding never counts against the model's
        positions).
      batch_bucket: the batch is padded with dummy rows to a multiple of this size (and the
        outputs cut back to B rows), so calls with nearby batch sizes share a compile too.
        Greedy results do not depend on it; sampled ones do (the draws are made per padded
        batch), so keep it fixed when reproducing a sampled run.
      generation_config: overrides ``model.generation_config`` as the source of defaults.
    Returns:
      :class:`GenerationOutput`.
    Raises:
      ValueError: bad shapes or sizes; a learned-position model (GPT-2, OPT) whose longest
        prompt plus ``max_new_tokens`` exceeds its position table (RoPE models are not capped,
        as in transformers); or defaults from a generation config with settings jaxpref does
        not implement (e.g. ``repetition_penalty``).
    """
    ids = np.asarray(input_ids)
    mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask)
    if ids.ndim != 2 or mask.shape != ids.shape:
        raise ValueError(
            f"input_ids: expected (B, L) with a matching attention_mask, got "
            f"{ids.shape} and {mask.shape}"
        )
    if not (mask.sum(-1) > 0).all():
        raise ValueError("attention_mask: every prompt needs at least one real token")
    for name, value in (
        ("max_new_tokens", max_new_tokens),
        ("bucket", bucket),
        ("batch_bucket", batch_bucket),
    ):
        if int(value) != value or value < 1:
            raise ValueError(f"{name}: must be an integer ≥ 1, got {value!r}")
    longest = int(mask.astype(bool).sum(-1).max())
    limit = model.config.max_position_embeddings
    if model.config.rope is None and longest + max_new_tokens > limit:
        raise ValueError(
            f"max_new_tokens: the longest prompt ({longest} real tokens) + {max_new_tokens} "
            f"exceeds max_position_embeddings={limit} of the learned position table"
        )
    temperature, top_k, top_p, eos, pad_token_id = _resolve(
        generation_config or model.generation_config,
        temperature,
        top_k,
        top_p,
        eos_token_id,
        pad_token_id,
    )
    width = -(-ids.shape[1] // bucket) * bucket
    rows = ids.shape[0]
    extra = -rows % batch_bucket
    pad = ((0, extra), (width - ids.shape[1], 0))
    ids, mask = np.pad(ids, pad, constant_values=pad_token_id), np.pad(mask, pad)
    mask[rows:, -1] = 1  # dummy rows: one real (pad) token each; their outputs are dropped
    graphdef, state = nnx.split(model)
    scalars = (
        jnp.float32(temperature),
        jnp.int32(top_k),
        jnp.float32(top_p),
        jnp.asarray(eos, jnp.int32),
        jnp.int32(pad_token_id),
    )
    out = _generate(
        graphdef,
        state,
        jnp.asarray(ids, jnp.int32),
        jnp.asarray(mask, bool),
        jnp.arange(rows + extra) < rows,
        key,
        *scalars,
        max_new_tokens=max_new_tokens,
    )
    return out if extra == 0 else GenerationOutput(*(x[:rows] for x in out))


def _resolve(gc: GenerationConfig, temperature, top_k, top_p, eos_token_id, pad_token_id):
    """Fill unset sampling arguments from ``gc``; EOS ids padded with −1 to ≥ 4 (a power of 2)."""
    if gc.unsupported:
        listed = ", ".join(f"{k}={v}" for k, v in gc.unsupported)
        raise ValueError(
            f"generation_config: the checkpoint sets {listed}, which generate does not "
            "implement; pass generation_config=dataclasses.replace(model.generation_config, "
            "unsupported=()) to generate without it"
        )
    if temperature is None:
        temperature = gc.temperature if gc.do_sample else 0.0
    if top_k is None:
        top_k = gc.top_k if gc.do_sample else 0
    if top_p is None:
        top_p = gc.top_p if gc.do_sample else 1.0
    if isinstance(eos_token_id, str):
        if eos_token_id != FROM_MODEL:
            raise ValueError(f"eos_token_id: expected ids, None or {FROM_MODEL!r}")
        eos = tuple(gc.eos_token_id)
    elif eos_token_id is None:
        eos = ()
    elif isinstance(eos_token_id, (int, np.integer)):
        eos = (int(eos_token_id),)
    else:
        eos = tuple(int(e) for e in eos_token_id)
    if pad_token_id is None:
        pad_token_id = gc.pad_token_id if gc.pad_token_id is not None else (eos or (0,))[0]
    size = max(4, 1 << max(len(eos) - 1, 0).bit_length())
    return temperature, top_k, top_p, np.array(eos + (-1,) * (size - len(eos))), pad_token_id

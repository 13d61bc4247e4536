"""Decoder-only transformers in Flax NNX: the Llama family (Llama 2/3, Qwen2, Mistral) and GPT-2.

``model(input_ids, attention_mask=None)`` returns logits ``(B, L, V)``. Position ids come from the
mask (``cumsum(mask) − 1``), so a left- or right-padded row equals the run of its unpadded
sequence. Attention works on *slots* (indices into the sequence or the KV cache): token i may
attend to slot j when j holds a real token, j ≤ i, and, with a sliding window w, i − j < w.
Passing a :class:`KVCache` appends the new keys/values at ``cache.index`` and returns
``(logits, cache)`` (positions then continue after the cached real tokens); this is the one code
path for full forwards, prefill and decoding.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpref._checks import is_concrete
from jaxpref.llm.config import DecoderConfig
from jaxpref.llm.layers import (
    Embed,
    LayerNorm,
    Linear,
    RMSNorm,
    apply_rope,
    attend,
    rope_cos_sin,
    rope_inv_freq,
)
from jaxpref.llm.sharding import LOGICAL_RULES, constrain, state_shardings

ACT = ("batch", "length", "act_embed")
KV = ("batch", "length", "act_heads", None)  # cached keys/values (B, S, K, D)


class KVCache(NamedTuple):
    """Keys and values of every layer for ``S`` slots."""

    keys: tuple  # n_layers × (B, S, K, D)
    values: tuple  # n_layers × (B, S, K, D)
    valid: jax.Array  # (B, S) bool: the slot holds a real token
    index: jax.Array  # () int32: next slot to write

    @classmethod
    def init(cls, config: DecoderConfig, batch: int, slots: int, dtype) -> KVCache:
        shape = (batch, slots, config.num_kv_heads, config.head_dim)
        zeros = tuple(jnp.zeros(shape, dtype) for _ in range(config.num_layers))
        return cls(zeros, zeros, jnp.zeros((batch, slots), bool), jnp.zeros((), jnp.int32))


def position_ids(attention_mask_BxL):
    """Position of each token among the real tokens of its row: cumsum(mask) − 1, ≥ 0."""
    return jnp.maximum(jnp.cumsum(attention_mask_BxL.astype(jnp.int32), axis=-1) - 1, 0)


class Attention(nnx.Module):
    def __init__(self, c: DecoderConfig, *, dtype, rngs):
        q_out, kv_out = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
        kw = dict(dtype=dtype, rngs=rngs)
        self.q_proj = Linear(c.hidden_size, q_out, ("embed", "heads"), bias=c.qkv_bias, **kw)
        self.k_proj = Linear(c.hidden_size, kv_out, ("embed", "kv_heads"), bias=c.qkv_bias, **kw)
        self.v_proj = Linear(c.hidden_size, kv_out, ("embed", "kv_heads"), bias=c.qkv_bias, **kw)
        self.o_proj = Linear(q_out, c.hidden_size, ("heads", "embed"), bias=c.o_bias, **kw)
        self.shape = (c.num_heads, c.num_kv_heads, c.head_dim)

    def __call__(self, x_BxLxE, rope, allowed_BxLxS, kv, index):
        heads, kv_heads, dim = self.shape
        b, length, _ = x_BxLxE.shape
        q = self.q_proj(x_BxLxE).reshape(b, length, heads, dim)
        k = self.k_proj(x_BxLxE).reshape(b, length, kv_heads, dim)
        v = self.v_proj(x_BxLxE).reshape(b, length, kv_heads, dim)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if kv is not None:
            zero = jnp.zeros((), jnp.int32)
            at = (zero, index, zero, zero)
            k = jax.lax.dynamic_update_slice(kv[0], k.astype(kv[0].dtype), at)
            v = jax.lax.dynamic_update_slice(kv[1], v.astype(kv[1].dtype), at)
            k, v = constrain(k, KV), constrain(v, KV)
        out = constrain(attend(q, k, v, allowed_BxLxS), ("batch", "length", "act_heads"))
        return self.o_proj(out), (k, v)


class MLP(nnx.Module):
    """SwiGLU (Llama family): down(silu(gate x) ⊙ up x); GELU (GPT-2): proj(gelu(fc x))."""

    def __init__(self, c: DecoderConfig, *, dtype, rngs):
        kw = dict(bias=c.mlp_bias, dtype=dtype, rngs=rngs)
        e, m = c.hidden_size, c.intermediate_size
        self.gated = c.family == "llama"
        self.gate_proj = Linear(e, m, ("embed", "mlp"), **kw) if self.gated else None
        self.up_proj = Linear(e, m, ("embed", "mlp"), **kw)
        self.down_proj = Linear(m, e, ("mlp", "embed"), **kw)
        self.exact_gelu = c.activation == "gelu"

    def __call__(self, x):
        if self.gated:
            return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))
        return self.down_proj(jax.nn.gelu(self.up_proj(x), approximate=not self.exact_gelu))


class Block(nnx.Module):
    """Pre-norm residual block: x + attn(norm₁ x), then + mlp(norm₂ ·)."""

    def __init__(self, c: DecoderConfig, *, dtype, rngs):
        norm = RMSNorm if c.family == "llama" else LayerNorm
        self.attn_norm = norm(c.hidden_size, c.norm_eps, dtype=dtype)
        self.attn = Attention(c, dtype=dtype, rngs=rngs)
        self.mlp_norm = norm(c.hidden_size, c.norm_eps, dtype=dtype)
        self.mlp = MLP(c, dtype=dtype, rngs=rngs)

    def __call__(self, x, rope, allowed, kv, index):
        h, kv = self.attn(self.attn_norm(x), rope, allowed, kv, index)
        x = x + h
        return constrain(x + self.mlp(self.mlp_norm(x)), ACT), kv


class Decoder(nnx.Module):
    """A causal language model of any supported family; see the module docstring."""

    def __init__(self, config: DecoderConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        c = self.config = config
        self.dtype = jnp.dtype(dtype)
        self.embed = Embed(c.vocab_size, c.hidden_size, ("vocab", "embed"), dtype=dtype, rngs=rngs)
        gpt2 = c.family == "gpt2"
        pos_axes = ("positions", "embed")
        self.pos_embed = (
            Embed(c.max_position_embeddings, c.hidden_size, pos_axes, dtype=dtype, rngs=rngs)
            if gpt2
            else None
        )
        self.layers = nnx.List([Block(c, dtype=dtype, rngs=rngs) for _ in range(c.num_layers)])
        self.final_norm = (LayerNorm if gpt2 else RMSNorm)(c.hidden_size, c.norm_eps, dtype=dtype)
        self.lm_head = (
            None
            if c.tie_word_embeddings
            else Linear(
                c.hidden_size, c.vocab_size, ("embed", "vocab"), bias=False, dtype=dtype, rngs=rngs
            )
        )

    def __call__(self, input_ids, attention_mask=None, *, positions=None, cache=None):
        """Logits ``(B, L, V)`` (and the updated cache when one is passed)."""
        out = self.hidden_states(input_ids, attention_mask, positions=positions, cache=cache)
        if cache is None:
            return self.head(out)
        hidden, cache = out
        return self.head(hidden), cache

    def hidden_states(self, input_ids, attention_mask=None, *, positions=None, cache=None):
        """Final-normed hidden states ``(B, L, E)``, the input of the LM head (and of reward,
        value and feature heads); with a ``cache``, ``(hidden, new_cache)``."""
        self._check(input_ids, cache)
        mask = _default_mask(input_ids, attention_mask)
        if positions is None:
            positions = position_ids(mask)
            if cache is not None:  # continue after the real tokens already cached
                positions = positions + cache.valid.sum(-1, keepdims=True).astype(positions.dtype)
        allowed, index, valid = self._allowed(mask, cache)
        x, rope = self._embed(input_ids, positions)
        kvs = [None] * len(self.layers) if cache is None else zip(cache.keys, cache.values)
        new = []
        for layer, kv in zip(self.layers, kvs):
            x, kv = layer(x, rope, allowed, kv, index)
            new.append(kv)
        hidden = self.final_norm(x)
        if cache is None:
            return hidden
        index = index + input_ids.shape[1]
        return hidden, KVCache(tuple(k for k, _ in new), tuple(v for _, v in new), valid, index)

    def _embed(self, input_ids, positions):
        """Token embeddings plus learned positions (GPT-2), or RoPE tables (Llama family)."""
        x = constrain(self.embed(input_ids), ACT)
        if self.pos_embed is not None:
            return x + self.pos_embed(positions), None
        inv_freq = rope_inv_freq(self.config.rope, self.config.head_dim)
        return x, rope_cos_sin(inv_freq, positions, x.dtype)

    def _check(self, input_ids, cache):
        """Token ids in range (when concrete); learned positions cover every slot."""
        c = self.config
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids: expected shape (B, L), got {input_ids.shape}")
        if is_concrete(input_ids) and input_ids.size:
            ids = np.asarray(input_ids)
            low, high = int(ids.min()), int(ids.max())
            if low < 0 or high >= c.vocab_size:
                raise ValueError(
                    f"input_ids: token ids must be in [0, {c.vocab_size}), "
                    f"got range [{low}, {high}]"
                )
        slots = input_ids.shape[1] if cache is None else cache.valid.shape[1]
        if self.pos_embed is not None and slots > c.max_position_embeddings:
            raise ValueError(
                f"input_ids: {slots} positions exceed the learned position table "
                f"(max_position_embeddings={c.max_position_embeddings})"
            )

    def head(self, x_BxLxE):
        """The LM head: hidden states to logits ``(B, L, V)`` (tied or separate)."""
        x = x_BxLxE
        logits = self.embed.attend(x) if self.lm_head is None else self.lm_head(x)
        return constrain(logits, ("batch", "length", "act_vocab"))

    def _allowed(self, mask_BxL, cache):
        length = mask_BxL.shape[1]
        if cache is None:
            index, valid = jnp.zeros((), jnp.int32), mask_BxL
        else:
            index = cache.index.astype(jnp.int32)
            valid = jax.lax.dynamic_update_slice(cache.valid, mask_BxL, (jnp.int32(0), index))
        q_slots = index + jnp.arange(length)
        k_slots = jnp.arange(valid.shape[1])
        causal = k_slots[None, :] <= q_slots[:, None]
        if self.config.sliding_window is not None:
            causal = causal & (q_slots[:, None] - k_slots[None, :] < self.config.sliding_window)
        return valid[:, None, :] & causal[None], index, valid


def _default_mask(input_ids, attention_mask):
    if attention_mask is None:
        return jnp.ones(input_ids.shape, bool)
    return attention_mask.astype(bool)


def create_model(
    config: DecoderConfig, *, seed: int = 0, dtype=jnp.float32, mesh=None, rules=None
) -> Decoder:
    """A randomly initialised :class:`Decoder`; with a ``mesh``, created inside ``jit`` so every
    weight is born with its rules-table sharding (never materialised whole on one device)."""
    if mesh is None:
        return Decoder(config, dtype=dtype, rngs=nnx.Rngs(seed))
    rules = LOGICAL_RULES if rules is None else rules
    abstract = nnx.eval_shape(lambda: Decoder(config, dtype=dtype, rngs=nnx.Rngs(seed)))
    graphdef, abstract_state = nnx.split(abstract)
    shardings = state_shardings(abstract_state, mesh, rules)

    @functools.partial(jax.jit, out_shardings=shardings)
    def init():
        return nnx.state(Decoder(config, dtype=dtype, rngs=nnx.Rngs(seed)))

    return nnx.merge(graphdef, init())

"""Decoder-only transformers in Flax NNX: the Llama family (Llama 2/3, Qwen2, Qwen3, Mistral,
Gemma, Gemma 2, Phi-3), OPT and GPT-2.

``model(input_ids, attention_mask=None)`` returns logits ``(B, L, V)``; it is
``model.head(model.hidden_states(...))``. Position ids come from the mask (``cumsum(mask) − 1``),
so a left- or right-padded row equals the run of its unpadded sequence. Attention works on
*slots* (indices into the sequence or the KV cache): token i may attend to slot j when j holds a
real token, j ≤ i, and, in a layer with a sliding window w, i − j < w. Passing a :class:`KVCache`
appends the new keys/values at ``cache.index`` and returns ``(logits, cache)`` (positions then
continue after the cached real tokens); this is the one code path for full forwards, prefill and
decoding.

Runtime options (keyword arguments, not HF config fields): ``param_dtype`` (storage) and
``dtype`` (compute); ``remat``, one of :data:`REMAT_POLICIES`, rematerialises each block in the
backward pass; ``scan_layers`` stacks the blocks' parameters on a leading ``layers`` axis and
runs them with one ``lax.scan`` (program size and compile time independent of depth);
``attention``, one of :data:`~jaxpref.llm.layers.ATTENTION_IMPLS`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpref._checks import array_namespace, check_condition
from jaxpref.llm.config import DecoderConfig, GenerationConfig
from jaxpref.llm.layers import (
    ATTENTION_IMPLS,
    Embed,
    LayerNorm,
    Linear,
    RMSNorm,
    apply_rope,
    attend,
    dynamic_inv_freq,
    rope_attention_factor,
    rope_cos_sin,
    rope_inv_freq,
)
from jaxpref.llm.sharding import LOGICAL_RULES, constrain, state_shardings

ACT = ("batch", "length", "act_embed")
KV = ("batch", "length", "act_heads", None)  # cached keys/values (B, S, K, D)

REMAT_POLICIES = ("none", "block", "dots_saveable", "dots_with_no_batch_dims_saveable")


class KVCache(NamedTuple):
    """Keys and values of every layer for ``S`` slots: a tuple of per-layer ``(B, S, K, D)``
    arrays, or (for ``scan_layers`` models) one stacked ``(n_layers, B, S, K, D)`` array."""

    keys: tuple | jax.Array
    values: tuple | jax.Array
    valid: jax.Array  # (B, S) bool: the slot holds a real token
    index: jax.Array  # () int32: next slot to write

    @classmethod
    def init(
        cls, config: DecoderConfig, batch: int, slots: int, dtype, *, stacked: bool = False
    ) -> KVCache:
        shape = (batch, slots, config.num_kv_heads, config.head_dim)
        if stacked:
            zeros = jnp.zeros((config.num_layers, *shape), dtype)
        else:
            zeros = tuple(jnp.zeros(shape, dtype) for _ in range(config.num_layers))
        return cls(zeros, zeros, jnp.zeros((batch, slots), bool), jnp.zeros((), jnp.int32))


def position_ids(attention_mask_BxL):
    """Position of each token among the real tokens of its row: cumsum(mask) − 1, ≥ 0."""
    return jnp.maximum(jnp.cumsum(attention_mask_BxL.astype(jnp.int32), axis=-1) - 1, 0)


def segment_position_ids(segment_ids_BxL):
    """Positions that restart at 0 where each packed segment starts (segment id 0: padding)."""
    seg = segment_ids_BxL.astype(jnp.int32)
    idx = jnp.arange(seg.shape[1], dtype=jnp.int32)[None, :]
    starts = jnp.concatenate([jnp.ones_like(seg[:, :1], bool), seg[:, 1:] != seg[:, :-1]], 1)
    first = jax.lax.cummax(jnp.where(starts, idx, 0), axis=1)  # index where the segment began
    return jnp.where(seg > 0, idx - first, 0)


def _norm(c: DecoderConfig, width: int, param_dtype):
    if c.norm_kind == "layer":
        return LayerNorm(width, c.norm_eps, dtype=param_dtype)
    return RMSNorm(width, c.norm_eps, dtype=param_dtype, offset=c.norm_offset)


class Attention(nnx.Module):
    def __init__(self, c: DecoderConfig, *, dtype, param_dtype, rngs, implementation):
        q_out, kv_out = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.q_proj = Linear(c.hidden_size, q_out, ("embed", "heads"), bias=c.qkv_bias, **kw)
        self.k_proj = Linear(c.hidden_size, kv_out, ("embed", "kv_heads"), bias=c.qkv_bias, **kw)
        self.v_proj = Linear(c.hidden_size, kv_out, ("embed", "kv_heads"), bias=c.qkv_bias, **kw)
        self.o_proj = Linear(q_out, c.hidden_size, ("heads", "embed"), bias=c.o_bias, **kw)
        if c.qk_norm:  # Qwen3: RMSNorm over head_dim of every query / key head, before RoPE
            self.q_norm = RMSNorm(c.head_dim, c.norm_eps, dtype=param_dtype)
            self.k_norm = RMSNorm(c.head_dim, c.norm_eps, dtype=param_dtype)
        else:
            self.q_norm = self.k_norm = None
        self.shape = (c.num_heads, c.num_kv_heads, c.head_dim)
        self.scale, self.softcap = c.attention_scale, c.attn_softcap
        self.implementation = implementation

    def __call__(self, x_BxLxE, rope, allowed_BxLxS, kv, index):
        heads, kv_heads, dim = self.shape
        b, length, _ = x_BxLxE.shape
        q = self.q_proj(x_BxLxE).reshape(b, length, heads, dim)
        k = self.k_proj(x_BxLxE).reshape(b, length, kv_heads, dim)
        v = self.v_proj(x_BxLxE).reshape(b, length, kv_heads, dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        new_kv = None
        if kv is not None:
            zero = jnp.zeros((), jnp.int32)
            at = (zero, index, zero, zero)
            k = jax.lax.dynamic_update_slice(kv[0], k.astype(kv[0].dtype), at)
            v = jax.lax.dynamic_update_slice(kv[1], v.astype(kv[1].dtype), at)
            k, v = constrain(k, KV), constrain(v, KV)
            new_kv = (k, v)
        out = attend(
            q,
            k,
            v,
            allowed_BxLxS,
            scale=self.scale,
            softcap=self.softcap,
            implementation=self.implementation,
        )
        out = constrain(out, ("batch", "length", "act_heads"))
        return self.o_proj(out), new_kv


def _activation(name: str):
    if name == "silu":
        return jax.nn.silu
    if name == "relu":
        return jax.nn.relu
    return functools.partial(jax.nn.gelu, approximate=name != "gelu")  # gelu_new, *_tanh


class MLP(nnx.Module):
    """Gated (Llama family, Gemma, Phi-3): down(act(gate x) ⊙ up x); plain (GPT-2, OPT):
    down(act(up x))."""

    def __init__(self, c: DecoderConfig, *, dtype, param_dtype, rngs):
        kw = dict(bias=c.mlp_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        e, m = c.hidden_size, c.intermediate_size
        self.gate_proj = Linear(e, m, ("embed", "mlp"), **kw) if c.gated_mlp else None
        self.up_proj = Linear(e, m, ("embed", "mlp"), **kw)
        self.down_proj = Linear(m, e, ("mlp", "embed"), **kw)
        self.activation = c.activation

    def __call__(self, x):
        act = _activation(self.activation)
        if self.gate_proj is not None:
            return self.down_proj(act(self.gate_proj(x)) * self.up_proj(x))
        return self.down_proj(act(self.up_proj(x)))


class Block(nnx.Module):
    """Pre-norm residual block: x + attn(norm₁ x), then + mlp(norm₂ ·). Gemma 2 also normalises
    each branch's output (``post_*_norm``); OPT's post-norm variant (opt-350m) normalises after
    each residual add instead."""

    def __init__(self, c: DecoderConfig, *, dtype, param_dtype, rngs, attention="auto"):
        w = c.hidden_size
        self.attn_norm = _norm(c, w, param_dtype)
        self.attn = Attention(
            c, dtype=dtype, param_dtype=param_dtype, rngs=rngs, implementation=attention
        )
        self.mlp_norm = _norm(c, w, param_dtype)
        self.mlp = MLP(c, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.post_attn_norm = _norm(c, w, param_dtype) if c.post_norms else None
        self.post_mlp_norm = _norm(c, w, param_dtype) if c.post_norms else None
        self.pre_norm = c.pre_norm

    def __call__(self, x, rope, allowed, kv, index):
        if not self.pre_norm:
            h, kv = self.attn(x, rope, allowed, kv, index)
            x = self.attn_norm(x + h)
            return constrain(self.mlp_norm(x + self.mlp(x)), ACT), kv
        h, kv = self.attn(self.attn_norm(x), rope, allowed, kv, index)
        if self.post_attn_norm is not None:
            h = self.post_attn_norm(h)
        x = x + h
        h = self.mlp(self.mlp_norm(x))
        if self.post_mlp_norm is not None:
            h = self.post_mlp_norm(h)
        return constrain(x + h, ACT), kv


def _check_runtime(dtype, param_dtype, remat, attention):
    for name, value in (("dtype", dtype), ("param_dtype", param_dtype)):
        try:
            ok = jnp.issubdtype(jnp.dtype(value), jnp.floating)
        except TypeError:
            ok = False
        if not ok:
            raise ValueError(f"{name}: expected a floating dtype, got {value!r}")
    if remat not in REMAT_POLICIES:
        raise ValueError(f"remat: unknown policy {remat!r}; choices: {REMAT_POLICIES}")
    if attention not in ATTENTION_IMPLS:
        raise ValueError(f"attention: unknown {attention!r}; choices: {ATTENTION_IMPLS}")


def _remat_policy(name: str):
    policies = jax.checkpoint_policies
    return {
        "block": None,  # save nothing inside the block: recompute it whole
        "dots_saveable": policies.dots_saveable,
        "dots_with_no_batch_dims_saveable": policies.dots_with_no_batch_dims_saveable,
    }[name]


class Decoder(nnx.Module):
    """A causal language model of any supported family; see the module docstring."""

    def __init__(
        self,
        config: DecoderConfig,
        *,
        dtype=jnp.float32,
        param_dtype=None,
        remat: str = "none",
        scan_layers: bool = False,
        attention: str = "auto",
        rngs: nnx.Rngs,
    ):
        param_dtype = dtype if param_dtype is None else param_dtype
        _check_runtime(dtype, param_dtype, remat, attention)
        c = self.config = config
        self.dtype, self.param_dtype = jnp.dtype(dtype), jnp.dtype(param_dtype)
        self.remat, self.scan_layers, self.attention = remat, bool(scan_layers), attention
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        width = c.embed_width
        self.embed = Embed(c.vocab_size, width, ("vocab", "embed"), **kw)
        self.pos_embed = nnx.data(None)
        if c.rope is None:
            rows = c.max_position_embeddings + c.position_offset
            self.pos_embed = Embed(rows, c.hidden_size, ("positions", "embed"), **kw)
        self.project_in, self.project_out = nnx.data(None), nnx.data(None)
        if c.embed_proj_dim is not None:  # OPT-350m: embeddings narrower than the blocks
            hidden = c.hidden_size
            self.project_in = Linear(width, hidden, ("embed_proj", "embed"), bias=False, **kw)
            self.project_out = Linear(hidden, width, ("embed", "embed_proj"), bias=False, **kw)
        self.layers = self._make_layers(c, dtype, param_dtype, attention, rngs)
        self.final_norm = _norm(c, c.hidden_size, param_dtype) if c.final_norm else None
        self.lm_head = nnx.data(None)
        if not c.tie_word_embeddings:
            self.lm_head = Linear(width, c.vocab_size, ("embed", "vocab"), bias=False, **kw)
        self.windows = tuple(sorted({c.layer_window(i) for i in range(c.num_layers)}, key=str))
        self.layer_window_index = tuple(
            self.windows.index(c.layer_window(i)) for i in range(c.num_layers)
        )
        self.generation_config = GenerationConfig.from_model_config(c)  # from_pretrained: the file

    def _make_layers(self, c, dtype, param_dtype, attention, rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, attention=attention)
        if not self.scan_layers:
            return nnx.List([Block(c, rngs=rngs, **kw) for _ in range(c.num_layers)])

        @nnx.split_rngs(splits=c.num_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def stacked(rngs):
            return Block(c, rngs=rngs, **kw)

        layers = stacked(rngs)
        for _, var in nnx.iter_graph(layers):
            if isinstance(var, nnx.Variable) and var.has_metadata("logical_axes"):
                var.set_metadata(logical_axes=("layers", *var.get_metadata()["logical_axes"]))
        return layers

    # ---- the forward -------------------------------------------------------------------------

    def __call__(self, input_ids, attention_mask=None, *, positions=None, cache=None):
        """Logits ``(B, L, V)`` (and the updated cache when one is passed)."""
        out = self.hidden_states(input_ids, attention_mask, positions=positions, cache=cache)
        if cache is None:
            return self.head(out)
        hidden, cache = out
        return self.head(hidden), cache

    def hidden_states(
        self, input_ids, attention_mask=None, *, positions=None, cache=None, segment_ids=None
    ):
        """Final-normed hidden states ``(B, L, E)``, the input of the LM head (and of reward,
        value and feature heads; E = ``config.embed_width``, after OPT's ``project_out``); with a
        ``cache``, ``(hidden, new_cache)``.

        ``segment_ids`` (B, L) packs several sequences into a row: tokens attend only within
        their segment (id 0 is padding) and positions restart per segment (unless given).
        """
        mask = _default_mask(input_ids, attention_mask)
        if segment_ids is not None:
            if cache is not None:
                raise ValueError("segment_ids: packed rows cannot use a KV cache")
            mask = mask & (segment_ids > 0)
            if positions is None:
                positions = segment_position_ids(segment_ids)
        self._check(input_ids, mask, positions, cache)
        if positions is None:
            positions = position_ids(mask)
            if cache is not None:  # continue after the real tokens already cached
                positions = positions + cache.valid.sum(-1, keepdims=True).astype(positions.dtype)
        allowed, index, valid = self._allowed(mask, cache)
        if segment_ids is not None:
            same = segment_ids[:, :, None] == segment_ids[:, None, :]
            allowed = [a & same for a in allowed]
        x, rope = self._embed(input_ids, positions)
        run = self._scan if self.scan_layers else self._loop
        x, keys, values = run(x, rope, allowed, cache, index)
        if self.final_norm is not None:
            x = self.final_norm(x)
        if self.project_out is not None:
            x = self.project_out(x)
        if cache is None:
            return x
        index = index + input_ids.shape[1]
        return x, KVCache(keys, values, valid, index)

    def _block_fn(self, graphdef):
        """``(state, x, rope, allowed, kv, index) -> (x, kv)`` of one block, rematerialised."""

        def apply(state, x, rope, allowed, kv, index):
            return nnx.merge(graphdef, state)(x, rope, allowed, kv, index)

        if self.remat == "none":
            return apply
        # CSE could merge the recomputation with the forward in a Python loop; a scan body
        # cannot be merged that way, and skipping the barrier there is faster.
        policy, cse = _remat_policy(self.remat), not self.scan_layers
        return jax.checkpoint(apply, policy=policy, prevent_cse=cse)

    def _loop(self, x, rope, allowed, cache, index):
        keys, values = [], []
        for i, layer in enumerate(self.layers):
            kv = None if cache is None else (cache.keys[i], cache.values[i])
            mask = allowed[self.layer_window_index[i]]
            if self.remat == "none":
                x, kv = layer(x, rope, mask, kv, index)
            else:
                graphdef, state = nnx.split(layer)
                x, kv = self._block_fn(graphdef)(state, x, rope, mask, kv, index)
            if kv is not None:
                keys.append(kv[0])
                values.append(kv[1])
        if cache is None:
            return x, None, None
        if not isinstance(cache.keys, tuple):
            return x, jnp.stack(keys), jnp.stack(values)
        return x, tuple(keys), tuple(values)

    def _scan(self, x, rope, allowed, cache, index):
        graphdef, state = nnx.split(self.layers)
        block = self._block_fn(graphdef)
        masks = jnp.stack(allowed)  # (W, B, L, S) one mask per distinct window
        which = jnp.asarray(self.layer_window_index, jnp.int32)
        kvs = None
        if cache is not None:
            stack = lambda a: a if not isinstance(a, tuple) else jnp.stack(a)  # noqa: E731
            kvs = (stack(cache.keys), stack(cache.values))

        def body(x, xs):
            layer_state, kv, w = xs
            return block(layer_state, x, rope, masks[w], kv, index)

        x, new = jax.lax.scan(body, x, (state, kvs, which))
        if cache is None:
            return x, None, None
        return x, new[0], new[1]

    def _embed(self, input_ids, positions):
        """Token embeddings (Gemma: × √width; OPT: ``project_in``) plus learned positions
        (GPT-2, OPT with offset 2), or RoPE tables (Llama family)."""
        c = self.config
        x = self.embed(input_ids)
        if c.embed_scale is not None:
            x = x * jnp.asarray(c.embed_scale, self.param_dtype).astype(x.dtype)
        if self.project_in is not None:
            x = self.project_in(x)
        x = constrain(x, ACT)
        if self.pos_embed is not None:
            return x + self.pos_embed(positions + c.position_offset), None
        if c.rope.rope_type == "dynamic":
            inv = dynamic_inv_freq(c.rope, c.rotary_dim, c.max_position_embeddings, positions)
        else:
            inv = rope_inv_freq(c.rope, c.rotary_dim, c.max_position_embeddings)
        return x, rope_cos_sin(inv, positions, x.dtype, rope_attention_factor(c.rope))

    def _check(self, input_ids, mask, positions, cache):
        """Token ids in range and learned positions within the table, by the value-check
        convention of :mod:`jaxpref._checks` (at once for host arrays, in the graph under
        ``jit``, asynchronously for eager device arrays; ``generate`` checks real lengths on the
        host before it sizes its cache)."""
        c = self.config
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids: expected shape (B, L), got {input_ids.shape}")
        if not input_ids.size:
            return
        xp = array_namespace(input_ids)
        check_condition(
            "input_ids",
            (xp.asarray(input_ids) < 0) | (xp.asarray(input_ids) >= c.vocab_size),
            f"token ids must be in [0, {c.vocab_size})",
        )
        if self.pos_embed is not None:
            check_condition(
                "input_ids",
                _last_position(mask, positions, cache) > c.max_position_embeddings,
                "positions exceed the learned position table "
                f"(max_position_embeddings={c.max_position_embeddings})",
            )

    def head(self, x_BxLxE):
        """The LM head: hidden states to logits ``(B, L, V)`` (tied or separate; Gemma 2's final
        soft-capping ``c·tanh(logits/c)`` included)."""
        x = x_BxLxE
        logits = self.embed.attend(x) if self.lm_head is None else self.lm_head(x)
        cap = self.config.final_softcap
        if cap is not None:
            logits = cap * jnp.tanh(logits / cap)
        return constrain(logits, ("batch", "length", "act_vocab"))

    def init_cache(self, batch: int, slots: int) -> KVCache:
        """An empty :class:`KVCache` in this model's compute dtype and layer layout."""
        return KVCache.init(self.config, batch, slots, self.dtype, stacked=self.scan_layers)

    def _allowed(self, mask_BxL, cache):
        """One ``(B, L, S)`` mask per distinct window in ``self.windows``, slot index, valid."""
        length = mask_BxL.shape[1]
        if cache is None:
            index, valid = jnp.zeros((), jnp.int32), mask_BxL
        else:
            index = cache.index.astype(jnp.int32)
            valid = jax.lax.dynamic_update_slice(cache.valid, mask_BxL, (jnp.int32(0), index))
        q_slots = index + jnp.arange(length)
        k_slots = jnp.arange(valid.shape[1])
        causal = k_slots[None, :] <= q_slots[:, None]
        masks = []
        for window in self.windows:
            allowed = causal
            if window is not None:
                allowed = causal & (q_slots[:, None] - k_slots[None, :] < window)
            masks.append(valid[:, None, :] & allowed[None])
        return masks, index, valid


def _last_position(mask, positions, cache):
    """One more than the largest position the call uses (a scalar where its operands live)."""
    if positions is not None:
        xp = array_namespace(positions)
        return xp.max(xp.asarray(positions)) + 1
    if cache is not None:
        xp = array_namespace(cache.valid, mask)
        return xp.max(xp.asarray(cache.valid).sum(-1) + xp.asarray(mask).sum(-1))
    xp = array_namespace(mask)
    return xp.max(xp.asarray(mask).sum(-1))


def _default_mask(input_ids, attention_mask):
    if attention_mask is None:
        return jnp.ones(input_ids.shape, bool)
    return attention_mask.astype(bool)


def create_model(
    config: DecoderConfig,
    *,
    seed: int = 0,
    dtype=jnp.float32,
    param_dtype=None,
    remat: str = "none",
    scan_layers: bool = False,
    attention: str = "auto",
    mesh=None,
    rules=None,
) -> Decoder:
    """A randomly initialised :class:`Decoder`; with a ``mesh``, created inside ``jit`` so every
    weight is born with its rules-table sharding (never materialised whole on one device)."""
    kw = dict(
        dtype=dtype,
        param_dtype=param_dtype,
        remat=remat,
        scan_layers=scan_layers,
        attention=attention,
    )
    _check_runtime(dtype, dtype if param_dtype is None else param_dtype, remat, attention)
    if mesh is None:
        return Decoder(config, rngs=nnx.Rngs(seed), **kw)
    rules = LOGICAL_RULES if rules is None else rules
    abstract = nnx.eval_shape(lambda: Decoder(config, rngs=nnx.Rngs(seed), **kw))
    graphdef, abstract_state = nnx.split(abstract)
    shardings = state_shardings(abstract_state, mesh, rules)

    @functools.partial(jax.jit, out_shardings=shardings)
    def init():
        return nnx.state(Decoder(config, rngs=nnx.Rngs(seed), **kw))

    return nnx.merge(graphdef, init())

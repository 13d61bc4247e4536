"""Building blocks shared by the decoder families: linear maps (with optional LoRA), embeddings,
norms, rotary position embeddings and masked grouped-query attention.

Every parameter is an ``nnx.Param`` with ``logical_axes`` metadata naming its dimensions for the
rules table in :mod:`jaxpref.llm.sharding`. Kernels are stored ``(in, out)``; HF ``nn.Linear``
weights are ``(out, in)`` and are transposed by the loader, GPT-2 ``Conv1D`` weights are already
``(in, out)``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpref.llm.config import RopeConfig


class LoRAParam(nnx.Param):
    """A low-rank adapter factor; the filter that selects adapter-only parameters."""


def _lead(w, x):
    """``w`` (…,) with leading unit axes so it broadcasts against ``x`` without rank promotion."""
    return w.reshape((1,) * (x.ndim - w.ndim) + w.shape)


def _param(rngs, shape, axes, dtype, std=0.02):
    value = std * jax.random.normal(rngs.params(), shape, dtype)
    return nnx.Param(value, logical_axes=axes)


def _const(shape, axes, dtype, fill):
    return nnx.Param(jnp.full(shape, fill, dtype), logical_axes=axes)


class Linear(nnx.Module):
    """y = x W (+ b) (+ (α/r) x A B when a LoRA adapter is attached and not merged)."""

    def __init__(self, d_in, d_out, axes, *, bias, dtype, rngs):
        self.kernel = _param(rngs, (d_in, d_out), axes, dtype)
        self.bias = _const((d_out,), axes[1:], dtype, 0.0) if bias else None
        self.lora_a = nnx.data(None)  # (d_in, r)  LoRAParam, set by jaxpref.llm.lora.apply_lora
        self.lora_b = nnx.data(None)  # (r, d_out) LoRAParam, zero at init
        self.lora_scale = 0.0  # α / r
        self.lora_merged = False

    def __call__(self, x):
        y = x @ self.kernel[...]
        if self.bias is not None:
            y = y + _lead(self.bias[...], y)
        if self.lora_a is not None and not self.lora_merged:
            y = y + self.lora_scale * ((x @ self.lora_a[...]) @ self.lora_b[...])
        return y


class Embed(nnx.Module):
    """A lookup table ``(num, width)``; ``attend`` is the tied output projection."""

    def __init__(self, num, width, axes, *, dtype, rngs):
        self.embedding = _param(rngs, (num, width), axes, dtype)

    def __call__(self, ids):
        return jnp.take(self.embedding[...], ids, axis=0)

    def attend(self, x):
        return x @ self.embedding[...].T


class RMSNorm(nnx.Module):
    """x / sqrt(mean(x²) + ε) · w in at least float32 (Zhang & Sennrich, arXiv 1910.07467)."""

    def __init__(self, width, eps, *, dtype):
        self.weight = _const((width,), ("norm",), dtype, 1.0)
        self.eps = eps

    def __call__(self, x):
        h = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        h = h * jax.lax.rsqrt(jnp.mean(h * h, axis=-1, keepdims=True) + self.eps)
        return _lead(self.weight[...], x) * h.astype(x.dtype)


class LayerNorm(nnx.Module):
    """(x − mean) / sqrt(var + ε) · w + b (Ba et al., 1607.06450), in at least float32."""

    def __init__(self, width, eps, *, dtype):
        self.weight = _const((width,), ("norm",), dtype, 1.0)
        self.bias = _const((width,), ("norm",), dtype, 0.0)
        self.eps = eps

    def __call__(self, x):
        h = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        mean = jnp.mean(h, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(h - mean), axis=-1, keepdims=True)
        h = (h - mean) * jax.lax.rsqrt(var + self.eps)
        return (h * _lead(self.weight[...], h) + _lead(self.bias[...], h)).astype(x.dtype)


def rope_inv_freq(rope: RopeConfig, head_dim: int) -> np.ndarray:
    """Inverse frequencies θ^{-2i/D} with HF's ``linear`` or ``llama3`` scaling, as float32.

    Llama 3 keeps high frequencies (wavelength < L₀/high_freq_factor), divides low ones
    (wavelength > L₀/low_freq_factor) by ``factor`` and interpolates in between, L₀ being
    ``original_max_position_embeddings`` (Llama 3 report, arXiv 2407.21783, §3.2 and its
    released code).
    """
    exponent = np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / head_dim
    inv = (1.0 / (np.float32(rope.theta) ** exponent)).astype(np.float32)
    if rope.rope_type == "linear":
        return (inv / np.float32(rope.factor)).astype(np.float32)
    if rope.rope_type != "llama3":
        return inv
    old = rope.original_max_position_embeddings
    low_wavelen, high_wavelen = old / rope.low_freq_factor, old / rope.high_freq_factor
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > low_wavelen, inv / rope.factor, inv)
    smooth = (old / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor)
    smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(medium, smoothed, scaled).astype(np.float32)


def rope_cos_sin(inv_freq: np.ndarray, positions_BxL, dtype):
    """cos and sin tables ``(B, L, D)`` for positions, angles computed in at least float32."""
    ftype = jnp.promote_types(dtype, jnp.float32)
    angles = positions_BxL.astype(ftype)[..., None] * jnp.asarray(inv_freq, ftype)[None, None]
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles).astype(dtype), jnp.sin(angles).astype(dtype)


def apply_rope(x_BxLxHxD, cos_BxLxD, sin_BxLxD):
    """Rotate pairs (x_i, x_{i+D/2}) by the position angle (Su et al., RoFormer, 2104.09864)."""
    half = x_BxLxHxD.shape[-1] // 2
    rotated = jnp.concatenate([-x_BxLxHxD[..., half:], x_BxLxHxD[..., :half]], axis=-1)
    return x_BxLxHxD * cos_BxLxD[:, :, None] + rotated * sin_BxLxD[:, :, None]


def attend(q_BxLxHxD, k_BxSxKxD, v_BxSxKxD, allowed_BxLxS):
    """Masked softmax attention with H query heads sharing K key/value heads (GQA).

    Query head h uses key/value head ⌊h / (H/K)⌋. Disallowed scores get the dtype's lowest
    finite value, so a fully masked (padding) row stays finite.
    """
    b, length, heads, dim = q_BxLxHxD.shape
    kv_heads = k_BxSxKxD.shape[2]
    q = q_BxLxHxD.reshape(b, length, kv_heads, heads // kv_heads, dim)
    scores = jnp.einsum("blkgd,bskd->bkgls", q, k_BxSxKxD) / math.sqrt(dim)
    scores = scores.astype(jnp.promote_types(scores.dtype, jnp.float32))
    scores = jnp.where(allowed_BxLxS[:, None, None], scores, jnp.finfo(scores.dtype).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v_BxSxKxD.dtype)
    out = jnp.einsum("bkgls,bskd->blkgd", probs, v_BxSxKxD)
    return out.reshape(b, length, heads * dim)

"""Building blocks shared by the decoder families: linear maps (with optional LoRA), embeddings,
norms, rotary position embeddings and masked grouped-query attention.

Every parameter is an ``nnx.Param`` with ``logical_axes`` metadata naming its dimensions for the
rules table in :mod:`jaxpref.llm.sharding`. Parameters are stored in ``param_dtype`` and cast to
the compute ``dtype`` where they are used. Kernels are stored ``(in, out)``; HF ``nn.Linear``
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

ATTENTION_IMPLS = ("auto", "xla", "cudnn", "reference")


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


def _compute_dtype(dtype, param_dtype):
    """The dtype a layer casts to, or None to compute in the dtype of the values it holds
    (parameters stored in the compute dtype, or cast to it by the caller's state)."""
    return None if jnp.dtype(param_dtype) == jnp.dtype(dtype) else jnp.dtype(dtype)


class Linear(nnx.Module):
    """y = x W (+ b) (+ (α/r) x A B when a LoRA adapter is attached and not merged), computed in
    ``dtype`` from parameters stored in ``param_dtype`` (when the two are equal: in the dtype of
    the kernel it holds, so a caller may cast the state itself)."""

    def __init__(self, d_in, d_out, axes, *, bias, dtype, rngs, param_dtype=None):
        param_dtype = dtype if param_dtype is None else param_dtype
        self.kernel = _param(rngs, (d_in, d_out), axes, param_dtype)
        self.bias = _const((d_out,), axes[1:], param_dtype, 0.0) if bias else None
        self.lora_a = nnx.data(None)  # (d_in, r)  LoRAParam, set by jaxpref.llm.lora.apply_lora
        self.lora_b = nnx.data(None)  # (r, d_out) LoRAParam, zero at init
        self.lora_scale = 0.0  # α / r
        self.lora_merged = False
        self.dtype = _compute_dtype(dtype, param_dtype)

    def __call__(self, x):
        kernel = self.kernel[...]
        dt = self.dtype or kernel.dtype
        x = x.astype(dt)
        y = x @ kernel.astype(dt)
        if self.bias is not None:
            y = y + _lead(self.bias[...].astype(dt), y)
        if self.lora_a is not None and not self.lora_merged:
            y = y + self.lora_scale * (
                (x @ self.lora_a[...].astype(dt)) @ self.lora_b[...].astype(dt)
            )
        return y


class Embed(nnx.Module):
    """A lookup table ``(num, width)``; ``attend`` is the tied output projection."""

    def __init__(self, num, width, axes, *, dtype, rngs, param_dtype=None):
        param_dtype = dtype if param_dtype is None else param_dtype
        self.embedding = _param(rngs, (num, width), axes, param_dtype)
        self.dtype = _compute_dtype(dtype, param_dtype)

    def __call__(self, ids):
        table = self.embedding[...]
        return jnp.take(table, ids, axis=0).astype(self.dtype or table.dtype)

    def attend(self, x):
        table = self.embedding[...]
        dt = self.dtype or table.dtype
        return x.astype(dt) @ table.astype(dt).T


class RMSNorm(nnx.Module):
    """x / sqrt(mean(x²) + ε) · w in at least float32 (Zhang & Sennrich, arXiv 1910.07467).

    ``offset=True`` is Gemma's variant: the stored weight w scales by ``1 + w`` and the product
    is taken before the cast back to the input dtype (transformers' GemmaRMSNorm); otherwise the
    normalised value is cast first, then scaled (LlamaRMSNorm).
    """

    def __init__(self, width, eps, *, dtype, offset=False, axes=("norm",)):
        self.weight = _const((width,), axes, dtype, 0.0 if offset else 1.0)
        self.eps, self.offset = eps, offset

    def __call__(self, x):
        h = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        h = h * jax.lax.rsqrt(jnp.mean(h * h, axis=-1, keepdims=True) + self.eps)
        w = self.weight[...]
        if self.offset:
            return (h * _lead(1.0 + w.astype(h.dtype), h)).astype(x.dtype)
        return _lead(w.astype(x.dtype), x) * h.astype(x.dtype)


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
        w, b = self.weight[...].astype(h.dtype), self.bias[...].astype(h.dtype)
        return (h * _lead(w, h) + _lead(b, h)).astype(x.dtype)


# ---- rotary position embeddings --------------------------------------------------------------


def _base_inv_freq(theta: float, dim: int) -> np.ndarray:
    exponent = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / dim
    return (1.0 / (np.float32(theta) ** exponent)).astype(np.float32)


def rope_inv_freq(rope: RopeConfig, dim: int, max_positions: int | None = None) -> np.ndarray:
    """Inverse frequencies θ^{-2i/D} of ``dim`` rotary dimensions with HF's ``linear``,
    ``llama3`` or ``yarn`` scaling, as float32 (``dynamic``: the unscaled table, which it uses
    up to ``max_positions``; see :func:`dynamic_inv_freq`).

    Llama 3 keeps high frequencies (wavelength < L₀/high_freq_factor), divides low ones
    (wavelength > L₀/low_freq_factor) by ``factor`` and interpolates in between, L₀ being
    ``original_max_position_embeddings`` (Llama 3 report, arXiv 2407.21783, §3.2 and its
    released code). YaRN blends interpolated (θ/s) and extrapolated frequencies with a linear
    ramp between the dimensions that turn ``beta_fast`` and ``beta_slow`` times over L₀ (Peng et
    al., "YaRN", arXiv 2309.00071, Eq. 17–18 and §3.2).
    """
    inv = _base_inv_freq(rope.theta, dim)
    if rope.rope_type == "linear":
        return (inv / np.float32(rope.factor)).astype(np.float32)
    if rope.rope_type == "llama3":
        return _llama3_inv_freq(rope, inv, max_positions)
    if rope.rope_type == "yarn":
        return _yarn_inv_freq(rope, dim, max_positions)
    return inv


def _llama3_inv_freq(rope: RopeConfig, inv: np.ndarray, max_positions) -> np.ndarray:
    old = rope.original_max_position_embeddings or max_positions
    low_wavelen, high_wavelen = old / rope.low_freq_factor, old / rope.high_freq_factor
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > low_wavelen, inv / rope.factor, inv)
    smooth = (old / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor)
    smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(medium, smoothed, scaled).astype(np.float32)


def _yarn_inv_freq(rope: RopeConfig, dim: int, max_positions) -> np.ndarray:
    old = rope.original_max_position_embeddings or max_positions

    def correction_dim(rotations):  # the dimension that turns `rotations` times over `old`
        return dim * math.log(old / (rotations * 2 * math.pi)) / (2 * math.log(rope.theta))

    low, high = correction_dim(rope.beta_fast), correction_dim(rope.beta_slow)
    if rope.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    high = high + 0.001 if low == high else high  # no singular ramp
    ramp = np.clip((np.arange(dim // 2, dtype=np.float32) - low) / (high - low), 0, 1)
    extrapolate = (1 - ramp).astype(np.float32)
    pos_freqs = np.float32(rope.theta) ** (np.arange(0, dim, 2).astype(np.float32) / dim)
    inv_extra, inv_inter = 1.0 / pos_freqs, 1.0 / (np.float32(rope.factor) * pos_freqs)
    return (inv_inter * (1 - extrapolate) + inv_extra * extrapolate).astype(np.float32)


def rope_attention_factor(rope: RopeConfig) -> float:
    """The factor YaRN multiplies cos and sin by (0.1·ln s + 1, or from ``mscale``); else 1."""
    if rope.rope_type != "yarn":
        return 1.0
    if rope.attention_factor is not None:
        return float(rope.attention_factor)

    def mscale(scale, m=1.0):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    if rope.mscale and rope.mscale_all_dim:
        return mscale(rope.factor, rope.mscale) / mscale(rope.factor, rope.mscale_all_dim)
    return mscale(rope.factor)


def dynamic_inv_freq(rope: RopeConfig, dim: int, max_positions: int, positions_BxL):
    """Dynamic NTK scaling per row: base θ·((s·ℓ/M) − (s − 1))^{D/(D−2)} with ℓ = max(M, the
    row's largest position + 1), M = ``max_positions``, s = ``factor`` (transformers'
    ``dynamic`` RoPE; bloc97/emozilla's NTK-aware rule). Returns ``(B, D/2)`` float32.

    transformers takes ℓ over the whole batch and keeps it between calls; per row it does not
    depend on the other rows (padding-invariant), and equals transformers on each sequence.
    """
    seq_len = jnp.max(positions_BxL, axis=-1).astype(jnp.float32) + 1.0
    seq_len = jnp.maximum(seq_len, jnp.float32(max_positions))
    factor = jnp.float32(rope.factor)
    base = jnp.float32(rope.theta) * (
        (factor * seq_len / jnp.float32(max_positions)) - (factor - 1)
    ) ** jnp.float32(dim / (dim - 2))
    exponent = jnp.asarray(np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / dim)
    return 1.0 / (base[:, None] ** exponent[None, :])


def rope_cos_sin(inv_freq, positions_BxL, dtype, attention_factor: float = 1.0):
    """cos and sin tables ``(B, L, D)`` for positions, angles computed in at least float32;
    ``inv_freq`` is ``(D/2,)`` or per row ``(B, D/2)``."""
    ftype = jnp.promote_types(dtype, jnp.float32)
    inv = jnp.asarray(inv_freq, ftype)
    inv = inv[None, None] if inv.ndim == 1 else inv[:, None]
    angles = positions_BxL.astype(ftype)[..., None] * inv
    angles = jnp.concatenate([angles, angles], axis=-1)
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    if attention_factor != 1.0:
        cos, sin = cos * attention_factor, sin * attention_factor
    return cos.astype(dtype), sin.astype(dtype)


def apply_rope(x_BxLxHxD, cos_BxLxR, sin_BxLxR):
    """Rotate pairs (x_i, x_{i+R/2}) of the first R dimensions by the position angle (Su et al.,
    RoFormer, 2104.09864); the remaining D − R dimensions pass through (partial rotary)."""
    rot = cos_BxLxR.shape[-1]
    x, rest = x_BxLxHxD[..., :rot], x_BxLxHxD[..., rot:]
    half = rot // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    out = x * cos_BxLxR[:, :, None] + rotated * sin_BxLxR[:, :, None]
    return out if rest.shape[-1] == 0 else jnp.concatenate([out, rest], axis=-1)


# ---- attention -------------------------------------------------------------------------------


def attend(
    q_BxLxHxD,
    k_BxSxKxD,
    v_BxSxKxD,
    allowed_BxLxS,
    *,
    scale=None,
    softcap=None,
    implementation="auto",
):
    """Masked softmax attention with H query heads sharing K key/value heads (GQA).

    Query head h uses key/value head ⌊h / (H/K)⌋; scores are ``scale · q·k`` (default
    ``1/√D``), soft-capped to ``c·tanh(s/c)`` when ``softcap`` is set (Gemma 2). A query whose
    row of ``allowed`` is empty (padding) stays finite.

    ``implementation``: ``"reference"`` is the hand-written einsum path; ``"xla"`` and
    ``"cudnn"`` call :func:`jax.nn.dot_product_attention` with that backend; ``"auto"`` takes
    it (cuDNN for half-precision prefill on GPU, XLA otherwise) wherever its masks suffice, and
    the reference path for soft-capping (which it has no option for) and float64 (it computes
    the softmax in float32).
    """
    if implementation not in ATTENTION_IMPLS:
        raise ValueError(f"attention: unknown {implementation!r}; choices: {ATTENTION_IMPLS}")
    dt = jnp.result_type(q_BxLxHxD, k_BxSxKxD, v_BxSxKxD)  # e.g. a cache kept in another dtype
    q_BxLxHxD, k_BxSxKxD, v_BxSxKxD = (a.astype(dt) for a in (q_BxLxHxD, k_BxSxKxD, v_BxSxKxD))
    dim = q_BxLxHxD.shape[-1]
    scale = 1.0 / math.sqrt(dim) if scale is None else scale
    if implementation == "reference" or softcap is not None or q_BxLxHxD.dtype == jnp.float64:
        if implementation in ("xla", "cudnn") and softcap is not None:
            raise ValueError(f"attention: {implementation!r} has no soft-capping; use 'auto'")
        return _attend_reference(q_BxLxHxD, k_BxSxKxD, v_BxSxKxD, allowed_BxLxS, scale, softcap)
    mask = allowed_BxLxS[:, None]
    b, length, heads, _ = q_BxLxHxD.shape
    if implementation == "cudnn" or (implementation == "auto" and _cudnn_candidate(q_BxLxHxD)):
        try:
            out = jax.nn.dot_product_attention(
                q_BxLxHxD, k_BxSxKxD, v_BxSxKxD, mask=mask, scale=scale, implementation="cudnn"
            )
            return out.reshape(b, length, heads * dim)
        except (ValueError, NotImplementedError, RuntimeError):
            if implementation == "cudnn":
                raise
    out = jax.nn.dot_product_attention(
        q_BxLxHxD, k_BxSxKxD, v_BxSxKxD, mask=mask, scale=scale, implementation="xla"
    )
    return out.reshape(b, length, heads * dim)


def _cudnn_candidate(q) -> bool:
    half = q.dtype in (jnp.bfloat16, jnp.float16)
    return half and q.shape[1] > 1 and jax.default_backend() == "gpu"


def _attend_reference(q_BxLxHxD, k_BxSxKxD, v_BxSxKxD, allowed_BxLxS, scale, softcap):
    b, length, heads, dim = q_BxLxHxD.shape
    kv_heads = k_BxSxKxD.shape[2]
    q = q_BxLxHxD.reshape(b, length, kv_heads, heads // kv_heads, dim)
    scores = jnp.einsum("blkgd,bskd->bkgls", q, k_BxSxKxD)
    scores = scores.astype(jnp.promote_types(scores.dtype, jnp.float32)) * scale
    if softcap is not None:
        scores = softcap * jnp.tanh(scores / softcap)
    scores = jnp.where(allowed_BxLxS[:, None, None], scores, jnp.finfo(scores.dtype).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v_BxSxKxD.dtype)
    out = jnp.einsum("bkgls,bskd->blkgd", probs, v_BxSxKxD)
    return out.reshape(b, length, heads * dim)

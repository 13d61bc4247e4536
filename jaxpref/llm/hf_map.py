"""Which HF tensor each :class:`~jaxpref.llm.model.Decoder` parameter comes from, and how.

:func:`param_map` maps every parameter path of the per-layer model (``layers.3.attn.q_proj.
kernel``) to a :class:`Source` ``(hf, how)``: the HF tensor name and whether it is an
``nn.Linear`` weight ``(out, in)`` to transpose into our ``(in, out)`` kernel (``"T"``) or, for
fused HF tensors (GPT-2's ``c_attn``, Phi-3's ``qkv_proj`` and ``gate_up_proj``), the slice of
the fused axis that is ours.
A ``scan_layers`` model stacks the blocks on a leading axis: its parameter ``layers.attn.q_proj.
kernel`` holds, at index i, the parameter ``layers.{i}.attn.q_proj.kernel`` of this map
(:func:`layer_names`).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

from jaxpref.llm.config import DecoderConfig


class Source(NamedTuple):
    """``(hf, how)``: the HF tensor name and how our parameter comes from it. ``how`` is None
    (as stored), ``"T"`` (an ``nn.Linear`` weight ``(out, in)`` transposed into our ``(in, out)``
    kernel) or ``("part", axis, start, stop, total, transpose)``: our slice ``[start, stop)`` of
    the fused HF axis ``axis`` of length ``total``, then transposed or not."""

    hf: str
    how: object = None

    @property
    def transpose(self) -> bool:
        return self.how == "T" or (isinstance(self.how, tuple) and self.how[5])

    @property
    def part(self):
        return self.how[1:5] if isinstance(self.how, tuple) else None  # (axis, start, stop, total)

    def hf_shape(self, shape) -> tuple[int, ...]:
        """The shape the HF tensor must have for our parameter of ``shape``."""
        out = list(reversed(shape)) if self.transpose else list(shape)
        if self.part is not None:
            axis, _, _, total = self.part
            out[axis] = total
        return tuple(out)

    def to_ours(self, array: np.ndarray) -> np.ndarray:
        """Our parameter from the HF tensor (a view when the tensor is memory-mapped)."""
        if self.part is not None:
            axis, start, stop, _ = self.part
            index = [slice(None)] * array.ndim
            index[axis] = slice(start, stop)
            array = array[tuple(index)]
        return array.T if self.transpose else array

    def to_hf(self, array: np.ndarray) -> np.ndarray:
        """Our parameter in the HF layout (still only our part of a fused tensor)."""
        return array.T if self.transpose else array


def assemble(pieces: list[tuple[np.ndarray, Source]]) -> np.ndarray:
    """The HF tensor from our parameters that make it up (concatenated for fused tensors)."""
    if len(pieces) == 1 and pieces[0][1].part is None:
        return pieces[0][1].to_hf(pieces[0][0])
    ordered = sorted(pieces, key=lambda p: p[1].part[1])
    return np.concatenate([s.to_hf(a) for a, s in ordered], axis=ordered[0][1].part[0])


def _linear(out, ours, hf, bias):
    out[f"{ours}.kernel"] = Source(f"{hf}.weight", "T")
    if bias:
        out[f"{ours}.bias"] = Source(f"{hf}.bias")


def _fused(out, names_sizes, hf, bias, *, conv1d=False):
    """Parameters that are consecutive slices of one fused HF tensor."""
    total, start = sum(size for _, size in names_sizes), 0
    axis = -1 if conv1d else 0
    for ours, size in names_sizes:
        span = (start, start + size, total)
        out[f"{ours}.kernel"] = Source(f"{hf}.weight", ("part", axis, *span, not conv1d))
        if bias:
            out[f"{ours}.bias"] = Source(f"{hf}.bias", ("part", -1, *span, False))
        start += size


def _norm(out, ours, hf, layer_norm=False):
    out[f"{ours}.weight"] = Source(f"{hf}.weight")
    if layer_norm:
        out[f"{ours}.bias"] = Source(f"{hf}.bias")


def _llama_map(c: DecoderConfig) -> dict[str, Source]:
    out = {"embed.embedding": Source("model.embed_tokens.weight")}
    _norm(out, "final_norm", "model.norm")
    if not c.tie_word_embeddings:
        _linear(out, "lm_head", "lm_head", False)
    q, kv, m = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.intermediate_size
    for i in range(c.num_layers):
        ours, hf = f"layers.{i}", f"model.layers.{i}"
        _norm(out, f"{ours}.attn_norm", f"{hf}.input_layernorm")
        if c.post_norms:  # Gemma 2
            _norm(out, f"{ours}.post_attn_norm", f"{hf}.post_attention_layernorm")
            _norm(out, f"{ours}.mlp_norm", f"{hf}.pre_feedforward_layernorm")
            _norm(out, f"{ours}.post_mlp_norm", f"{hf}.post_feedforward_layernorm")
        else:
            _norm(out, f"{ours}.mlp_norm", f"{hf}.post_attention_layernorm")
        if c.qk_norm:
            _norm(out, f"{ours}.attn.q_norm", f"{hf}.self_attn.q_norm")
            _norm(out, f"{ours}.attn.k_norm", f"{hf}.self_attn.k_norm")
        attn, mlp = f"{ours}.attn", f"{ours}.mlp"
        if c.model_type == "phi3":
            parts = [(f"{attn}.q_proj", q), (f"{attn}.k_proj", kv), (f"{attn}.v_proj", kv)]
            _fused(out, parts, f"{hf}.self_attn.qkv_proj", c.qkv_bias)
            _fused(
                out,
                [(f"{mlp}.gate_proj", m), (f"{mlp}.up_proj", m)],
                f"{hf}.mlp.gate_up_proj",
                c.mlp_bias,
            )
        else:
            for p in "qkv":
                _linear(out, f"{attn}.{p}_proj", f"{hf}.self_attn.{p}_proj", c.qkv_bias)
            for p in ("gate", "up"):
                _linear(out, f"{mlp}.{p}_proj", f"{hf}.mlp.{p}_proj", c.mlp_bias)
        _linear(out, f"{attn}.o_proj", f"{hf}.self_attn.o_proj", c.o_bias)
        _linear(out, f"{mlp}.down_proj", f"{hf}.mlp.down_proj", c.mlp_bias)
    return out


def _opt_map(c: DecoderConfig) -> dict[str, Source]:
    d = "model.decoder"
    out = {
        "embed.embedding": Source(f"{d}.embed_tokens.weight"),
        "pos_embed.embedding": Source(f"{d}.embed_positions.weight"),
    }
    if c.embed_proj_dim is not None:
        _linear(out, "project_in", f"{d}.project_in", False)
        _linear(out, "project_out", f"{d}.project_out", False)
    if c.final_norm:
        _norm(out, "final_norm", f"{d}.final_layer_norm", layer_norm=True)
    if not c.tie_word_embeddings:
        _linear(out, "lm_head", "lm_head", False)
    for i in range(c.num_layers):
        ours, hf = f"layers.{i}", f"{d}.layers.{i}"
        _norm(out, f"{ours}.attn_norm", f"{hf}.self_attn_layer_norm", layer_norm=True)
        _norm(out, f"{ours}.mlp_norm", f"{hf}.final_layer_norm", layer_norm=True)
        for p in "qkv":
            _linear(out, f"{ours}.attn.{p}_proj", f"{hf}.self_attn.{p}_proj", c.qkv_bias)
        _linear(out, f"{ours}.attn.o_proj", f"{hf}.self_attn.out_proj", c.o_bias)
        _linear(out, f"{ours}.mlp.up_proj", f"{hf}.fc1", c.mlp_bias)
        _linear(out, f"{ours}.mlp.down_proj", f"{hf}.fc2", c.mlp_bias)
    return out


def _gpt2_map(c: DecoderConfig) -> dict[str, Source]:
    t = "transformer"
    out = {
        "embed.embedding": Source(f"{t}.wte.weight"),
        "pos_embed.embedding": Source(f"{t}.wpe.weight"),
    }
    _norm(out, "final_norm", f"{t}.ln_f", layer_norm=True)
    if not c.tie_word_embeddings:
        _linear(out, "lm_head", "lm_head", False)
    for i in range(c.num_layers):
        ours, hf = f"layers.{i}", f"{t}.h.{i}"
        _norm(out, f"{ours}.attn_norm", f"{hf}.ln_1", layer_norm=True)
        _norm(out, f"{ours}.mlp_norm", f"{hf}.ln_2", layer_norm=True)
        conv1d = {
            "attn.o_proj": "attn.c_proj",
            "mlp.up_proj": "mlp.c_fc",
            "mlp.down_proj": "mlp.c_proj",
        }
        for p, q in conv1d.items():  # Conv1D weights are already (in, out)
            out[f"{ours}.{p}.kernel"] = Source(f"{hf}.{q}.weight")
            out[f"{ours}.{p}.bias"] = Source(f"{hf}.{q}.bias")
        parts = [(f"{ours}.attn.{p}_proj", c.hidden_size) for p in "qkv"]
        _fused(out, parts, f"{hf}.attn.c_attn", True, conv1d=True)
    return out


def param_map(config: DecoderConfig) -> dict[str, Source]:
    """Our (per-layer) parameter path → :class:`Source` for ``config``."""
    if config.model_type == "gpt2":
        return _gpt2_map(config)
    if config.model_type == "opt":
        return _opt_map(config)
    return _llama_map(config)


BASE_PREFIX = {"gpt2": "transformer.", "opt": "model."}  # others: "model."
LAYER = re.compile(r"^layers\.(\d+)\.(.*)$")


def base_prefix(config: DecoderConfig) -> str:
    return BASE_PREFIX.get(config.model_type, "model.")


def layer_names(stacked_name: str, num_layers: int) -> list[str] | None:
    """``layers.X`` of a stacked model → ``[layers.0.X, …]``; None for a non-layer name."""
    if not stacked_name.startswith("layers."):
        return None
    rest = stacked_name.removeprefix("layers.")
    return [f"layers.{i}.{rest}" for i in range(num_layers)]


def stacked_name(per_layer_name: str) -> tuple[str, int] | None:
    """``layers.3.X`` → (``layers.X``, 3); None for a non-layer name."""
    match = LAYER.match(per_layer_name)
    return None if match is None else (f"layers.{match.group(2)}", int(match.group(1)))

"""Typed, frozen model configs read from (and written back to) a Hugging Face ``config.json``.

One :class:`DecoderConfig` describes every supported family: the Llama family (Llama 2/3 with
Llama-3 RoPE scaling, Qwen2/2.5 with q/k/v bias, Mistral with its sliding window) and GPT-2
(learned positions, LayerNorm, GELU). ``family`` selects the block; the other fields are the
numbers a block needs. Named tiny sizes (``DecoderConfig.tiny``) serve tests and demos.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

LLAMA_TYPES = ("llama", "qwen2", "mistral")
SUPPORTED_TYPES = (*LLAMA_TYPES, "gpt2")
ROPE_TYPES = ("default", "linear", "llama3")


@dataclasses.dataclass(frozen=True)
class RopeConfig:
    """Rotary embedding: base ``theta`` and an optional HF ``rope_type`` scaling."""

    theta: float = 10000.0
    rope_type: str = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """A decoder-only transformer. ``model_type`` is the HF name (llama, qwen2, mistral, gpt2)."""

    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_position_embeddings: int
    norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    rope: RopeConfig | None = dataclasses.field(default_factory=RopeConfig)
    sliding_window: int | None = None
    activation: str = "silu"
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    hf_extra: tuple[tuple[str, Any], ...] = ()  # other config.json keys, written back verbatim

    def __post_init__(self):
        if self.model_type not in SUPPORTED_TYPES:
            raise ValueError(
                f"model_type: unsupported architecture {self.model_type!r}; "
                f"supported: {', '.join(SUPPORTED_TYPES)}"
            )
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_kv_heads: {self.num_kv_heads} does not divide num_heads={self.num_heads}"
            )
        if self.rope is not None and self.rope.rope_type not in ROPE_TYPES:
            raise ValueError(
                f"rope_type: unsupported {self.rope.rope_type!r}; supported: {ROPE_TYPES}"
            )

    @property
    def family(self) -> str:
        """``"llama"`` for the Llama family (Llama, Qwen2, Mistral), ``"gpt2"`` for GPT-2."""
        return "gpt2" if self.model_type == "gpt2" else "llama"

    @classmethod
    def tiny(cls, model_type: str = "llama", **overrides) -> DecoderConfig:
        """A 2-layer, 32-wide model of ``model_type`` for tests (vocab 96, 4 heads, 2 KV heads)."""
        base = dict(
            model_type=model_type,
            vocab_size=96,
            hidden_size=32,
            intermediate_size=64,
            num_layers=2,
            num_heads=4,
            num_kv_heads=2,
            head_dim=8,
            max_position_embeddings=64,
        )
        if model_type == "qwen2":
            base.update(qkv_bias=True, tie_word_embeddings=True)
        if model_type == "gpt2":
            base.update(
                num_kv_heads=4,
                intermediate_size=128,
                norm_eps=1e-5,
                rope=None,
                activation="gelu_new",
                qkv_bias=True,
                o_bias=True,
                mlp_bias=True,
                tie_word_embeddings=True,
            )
        return cls(**{**base, **overrides})

    @classmethod
    def small(cls, **overrides) -> DecoderConfig:
        """A ~32M-parameter Llama (8 layers, width 512, 8/4 heads, vocab 8192) for benchmarks."""
        base = dict(
            model_type="llama",
            vocab_size=8192,
            hidden_size=512,
            intermediate_size=1408,
            num_layers=8,
            num_heads=8,
            num_kv_heads=4,
            head_dim=64,
            max_position_embeddings=2048,
        )
        return cls(**{**base, **overrides})

    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any]) -> DecoderConfig:
        """Read a HF ``config.json`` dictionary (transformers 4 or 5 spelling)."""
        model_type = hf.get("model_type")
        if model_type not in SUPPORTED_TYPES:
            archs = hf.get("architectures")
            raise ValueError(
                f"config.json: unsupported architecture model_type={model_type!r} "
                f"(architectures={archs}); supported: {', '.join(SUPPORTED_TYPES)}"
            )
        reader = _gpt2_fields if model_type == "gpt2" else _llama_fields
        fields = reader(hf)
        used = set(fields.pop("_used"))
        extra = tuple(sorted((k, v) for k, v in hf.items() if k not in used and k != "model_type"))
        return cls(model_type=model_type, hf_extra=_freeze(extra), **fields)

    def to_hf_dict(self) -> dict[str, Any]:
        """The HF ``config.json`` dictionary for this config (transformers 5 spelling)."""
        out = {k: _thaw(v) for k, v in self.hf_extra}
        out.update(_gpt2_json(self) if self.family == "gpt2" else _llama_json(self))
        out["model_type"] = self.model_type
        return out


def load_config(path: str | pathlib.Path) -> DecoderConfig:
    """Read ``config.json`` from a HF model directory (or the file itself)."""
    path = pathlib.Path(path)
    file = path / "config.json" if path.is_dir() else path
    if not file.exists():
        raise ValueError(f"path: no config.json at {file}")
    return DecoderConfig.from_hf_dict(json.loads(file.read_text()))


def _freeze(value):
    if isinstance(value, dict):
        return ("__dict__", tuple(sorted((k, _freeze(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("__list__", tuple(_freeze(v) for v in value))
    if isinstance(value, tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value):
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "__dict__":
        return {k: _thaw(v) for k, v in value[1]}
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "__list__":
        return [_thaw(v) for v in value[1]]
    return value


def _rope_from_hf(hf: dict[str, Any]) -> RopeConfig:
    params = dict(hf.get("rope_parameters") or {})
    scaling = dict(hf.get("rope_scaling") or {})
    params = {**scaling, **params}
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
    rope_type = params.get("rope_type", params.get("type", "default"))
    keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    return RopeConfig(
        theta=float(theta), rope_type=rope_type, **{k: params[k] for k in keys if k in params}
    )


def _llama_fields(hf: dict[str, Any]) -> dict[str, Any]:
    model_type = hf["model_type"]
    heads = hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or hf["hidden_size"] // heads
    window = hf.get("sliding_window", 4096 if model_type == "mistral" else None)  # HF defaults
    if model_type == "qwen2" and hf.get("use_sliding_window"):
        raise ValueError("use_sliding_window: Qwen2 per-layer sliding windows are not supported")
    if model_type == "qwen2" or model_type == "llama":
        window = None
    if hf.get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act: expected 'silu', got {hf['hidden_act']!r}")
    attn_bias = bool(hf.get("attention_bias", False))
    used = (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "max_position_embeddings",
        "rms_norm_eps",
        "tie_word_embeddings",
        "attention_bias",
        "mlp_bias",
        "rope_theta",
        "rope_scaling",
        "rope_parameters",
        "sliding_window",
        "hidden_act",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
    )
    return dict(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        intermediate_size=hf["intermediate_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=head_dim,
        max_position_embeddings=hf.get("max_position_embeddings", 2048),
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        tie_word_embeddings=hf.get("tie_word_embeddings", False),
        qkv_bias=attn_bias or model_type == "qwen2",
        o_bias=attn_bias,
        mlp_bias=bool(hf.get("mlp_bias", False)),
        rope=_rope_from_hf(hf),
        sliding_window=window,
        bos_token_id=hf.get("bos_token_id"),
        eos_token_id=hf.get("eos_token_id"),
        pad_token_id=hf.get("pad_token_id"),
        _used=used,
    )


def _gpt2_fields(hf: dict[str, Any]) -> dict[str, Any]:
    act = hf.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu", "gelu_pytorch_tanh"):
        raise ValueError(f"activation_function: unsupported {act!r}")
    if hf.get("scale_attn_by_inverse_layer_idx") or not hf.get("scale_attn_weights", True):
        raise ValueError("scale_attn_weights: only the default GPT-2 attention scale is supported")
    width, heads = hf["n_embd"], hf["n_head"]
    used = (
        "vocab_size",
        "n_embd",
        "n_inner",
        "n_layer",
        "n_head",
        "n_positions",
        "layer_norm_epsilon",
        "tie_word_embeddings",
        "activation_function",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
    )
    return dict(
        vocab_size=hf["vocab_size"],
        hidden_size=width,
        intermediate_size=hf.get("n_inner") or 4 * width,
        num_layers=hf["n_layer"],
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=width // heads,
        max_position_embeddings=hf["n_positions"],
        norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        tie_word_embeddings=hf.get("tie_word_embeddings", True),
        qkv_bias=True,
        o_bias=True,
        mlp_bias=True,
        rope=None,
        activation=act,
        bos_token_id=hf.get("bos_token_id"),
        eos_token_id=hf.get("eos_token_id"),
        pad_token_id=hf.get("pad_token_id"),
        _used=used,
    )


def _llama_json(c: DecoderConfig) -> dict[str, Any]:
    rope = {"rope_type": c.rope.rope_type, "rope_theta": c.rope.theta}
    if c.rope.rope_type != "default":
        rope["factor"] = c.rope.factor
    if c.rope.rope_type == "llama3":
        rope.update(
            low_freq_factor=c.rope.low_freq_factor,
            high_freq_factor=c.rope.high_freq_factor,
            original_max_position_embeddings=c.rope.original_max_position_embeddings,
        )
    arch = {
        "llama": "LlamaForCausalLM",
        "qwen2": "Qwen2ForCausalLM",
        "mistral": "MistralForCausalLM",
    }[c.model_type]
    out = dict(
        architectures=[arch],
        vocab_size=c.vocab_size,
        hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_heads,
        num_key_value_heads=c.num_kv_heads,
        head_dim=c.head_dim,
        max_position_embeddings=c.max_position_embeddings,
        rms_norm_eps=c.norm_eps,
        tie_word_embeddings=c.tie_word_embeddings,
        rope_parameters=rope,
        rope_theta=c.rope.theta,
        hidden_act="silu",
        bos_token_id=c.bos_token_id,
        eos_token_id=c.eos_token_id,
        pad_token_id=c.pad_token_id,
    )
    if c.model_type == "llama":
        out.update(attention_bias=c.qkv_bias, mlp_bias=c.mlp_bias)
    if c.model_type == "mistral":
        out["sliding_window"] = c.sliding_window
    return out


def _gpt2_json(c: DecoderConfig) -> dict[str, Any]:
    return dict(
        architectures=["GPT2LMHeadModel"],
        vocab_size=c.vocab_size,
        n_embd=c.hidden_size,
        n_inner=c.intermediate_size,
        n_layer=c.num_layers,
        n_head=c.num_heads,
        n_positions=c.max_position_embeddings,
        layer_norm_epsilon=c.norm_eps,
        tie_word_embeddings=c.tie_word_embeddings,
        activation_function=c.activation,
        bos_token_id=c.bos_token_id,
        eos_token_id=c.eos_token_id,
        pad_token_id=c.pad_token_id,
    )

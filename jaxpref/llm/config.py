"""Typed, frozen model configs read from (and written back to) a Hugging Face ``config.json``.

One :class:`DecoderConfig` describes every supported family: the Llama family (Llama 2/3 with
``linear``, ``llama3``, ``yarn`` and ``dynamic`` RoPE scaling, Qwen2/2.5 with q/k/v bias, Qwen3
with q/k RMSNorm, Mistral with its sliding window), Gemma (scaled embeddings, 1 + w RMSNorm,
GeGLU), Gemma 2 (pre/post norms, attention and final logit soft-capping, alternating sliding
windows), Phi-3 (fused qkv and gate_up projections, partial rotary), OPT (learned positions with
offset 2, ReLU, LayerNorm, the post-norm ``project_in/out`` variant of opt-350m) and GPT-2.
``model_type`` (the HF name) selects the block; the fields are the numbers and switches a block
needs. The HF ``config.json`` side lives in :mod:`jaxpref.llm.hf_config`. Named tiny sizes
(``DecoderConfig.tiny``) serve tests and demos.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any

MODEL_TYPES = ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "phi3", "opt", "gpt2")
SUPPORTED_TYPES = MODEL_TYPES
LLAMA_TYPES = ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "phi3")  # RoPE, RMSNorm
LEARNED_POSITION_TYPES = ("opt", "gpt2")
ROPE_TYPES = ("default", "linear", "llama3", "yarn", "dynamic")
ACTIVATIONS = ("silu", "gelu_new", "gelu", "gelu_pytorch_tanh", "relu")
LAYER_TYPES = ("full_attention", "sliding_attention")


@dataclasses.dataclass(frozen=True)
class RopeConfig:
    """Rotary embedding: base ``theta`` and an optional HF ``rope_type`` scaling.

    ``factor`` scales ``linear``, ``llama3``, ``yarn`` and ``dynamic``; ``low_freq_factor`` /
    ``high_freq_factor`` belong to ``llama3``; ``beta_fast``, ``beta_slow``, ``mscale``,
    ``mscale_all_dim``, ``attention_factor`` and ``truncate`` to ``yarn``.
    ``original_max_position_embeddings`` (``llama3``, ``yarn``) defaults, as in transformers, to
    the model's ``max_position_embeddings`` when None.
    """

    theta: float = 10000.0
    rope_type: str = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int | None = 8192
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float | None = None
    mscale_all_dim: float | None = None
    attention_factor: float | None = None
    truncate: bool = True


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """A decoder-only transformer; ``model_type`` is the HF name (see :data:`MODEL_TYPES`).

    Family switches beyond the Llama block: ``layer_types`` (one of :data:`LAYER_TYPES` per layer;
    None means every layer uses ``sliding_window``, which may itself be None), ``attn_softcap`` and
    ``final_softcap`` (Gemma 2: ``c·tanh(x/c)`` on attention scores / logits),
    ``query_pre_attn_scalar`` (Gemma 2: scores scaled by its ``-1/2`` power instead of
    ``head_dim``'s), ``partial_rotary_factor`` (Phi-3: RoPE on that fraction of each head),
    ``pre_norm`` / ``final_norm`` / ``embed_proj_dim`` (OPT: post-norm blocks without a final norm
    and the ``project_in/out`` maps of opt-350m). ``eos_token_id`` is an int or a tuple of ints.
    """

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
    layer_types: tuple[str, ...] | None = None
    attn_softcap: float | None = None
    final_softcap: float | None = None
    query_pre_attn_scalar: float | None = None
    partial_rotary_factor: float = 1.0
    pre_norm: bool = True
    final_norm: bool = True
    embed_proj_dim: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None
    hf_extra: tuple[tuple[str, Any], ...] = ()  # other config.json keys, written back verbatim

    def __post_init__(self):
        if self.model_type not in MODEL_TYPES:
            raise ValueError(
                f"model_type: unsupported architecture {self.model_type!r}; "
                f"supported: {', '.join(MODEL_TYPES)}"
            )
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers"):
            _check_positive_int(name, getattr(self, name))
        for name in ("num_heads", "num_kv_heads", "head_dim", "max_position_embeddings"):
            _check_positive_int(name, getattr(self, name))
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_kv_heads: {self.num_kv_heads} does not divide num_heads={self.num_heads}"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation: unsupported {self.activation!r}; supported: {ACTIVATIONS}"
            )
        if isinstance(self.eos_token_id, list):
            object.__setattr__(self, "eos_token_id", tuple(self.eos_token_id))
        if isinstance(self.layer_types, list):
            object.__setattr__(self, "layer_types", tuple(self.layer_types))
        self._check_rope()
        self._check_attention()
        self._check_opt_switches()

    def _check_rope(self):
        learned = self.model_type in LEARNED_POSITION_TYPES
        if learned and self.rope is not None:
            raise ValueError(f"rope: {self.model_type} uses learned positions; set rope=None")
        if not learned and self.rope is None:
            raise ValueError(f"rope: {self.model_type} needs a RopeConfig")
        if self.rope is not None and self.rope.rope_type not in ROPE_TYPES:
            raise ValueError(
                f"rope_type: unsupported {self.rope.rope_type!r}; supported: {ROPE_TYPES}"
            )
        if self.rope is not None and self.rope.rope_type != "default" and self.rope.factor <= 0:
            raise ValueError(f"rope.factor: must be > 0, got {self.rope.factor}")
        prf = self.partial_rotary_factor
        if not 0 < prf <= 1 or int(self.head_dim * prf) % 2:
            raise ValueError(
                f"partial_rotary_factor: {prf} must lie in (0, 1] and give an even number of "
                f"rotary dimensions of head_dim={self.head_dim}"
            )

    def _check_attention(self):
        if self.sliding_window is not None:
            _check_positive_int("sliding_window", self.sliding_window)
        if self.layer_types is not None:
            if len(self.layer_types) != self.num_layers or not set(self.layer_types) <= set(
                LAYER_TYPES
            ):
                raise ValueError(
                    f"layer_types: expected {self.num_layers} entries from {LAYER_TYPES}, "
                    f"got {self.layer_types}"
                )
            if "sliding_attention" in self.layer_types and self.sliding_window is None:
                raise ValueError("layer_types: sliding_attention layers need a sliding_window")
        for name in ("attn_softcap", "final_softcap", "query_pre_attn_scalar"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: must be finite and > 0 or None, got {value!r}")

    def _check_opt_switches(self):
        opt = self.model_type == "opt"
        if not opt and (not self.pre_norm or not self.final_norm):
            raise ValueError("pre_norm/final_norm: only OPT has post-norm blocks")
        if self.embed_proj_dim is not None:
            if not opt:
                raise ValueError("embed_proj_dim: only OPT has project_in/out maps")
            _check_positive_int("embed_proj_dim", self.embed_proj_dim)

    # ---- what the block does, by family --------------------------------------------------------

    @property
    def family(self) -> str:
        """``"llama"`` (RoPE + RMSNorm + gated MLP), ``"opt"`` or ``"gpt2"``."""
        return self.model_type if self.model_type in LEARNED_POSITION_TYPES else "llama"

    @property
    def norm_kind(self) -> str:
        return "layer" if self.model_type in LEARNED_POSITION_TYPES else "rms"

    @property
    def norm_offset(self) -> bool:
        """Gemma's RMSNorm scales by ``1 + w`` (weights stored as ``w``, zero at init)."""
        return self.model_type in ("gemma", "gemma2")

    @property
    def embed_scale(self) -> float | None:
        """Gemma multiplies token embeddings by √hidden_size."""
        return math.sqrt(self.hidden_size) if self.model_type in ("gemma", "gemma2") else None

    @property
    def post_norms(self) -> bool:
        """Gemma 2 normalises the attention and MLP outputs before each residual add."""
        return self.model_type == "gemma2"

    @property
    def qk_norm(self) -> bool:
        """Qwen3 applies an RMSNorm over head_dim to every query and key head before RoPE."""
        return self.model_type == "qwen3"

    @property
    def gated_mlp(self) -> bool:
        return self.model_type not in LEARNED_POSITION_TYPES

    @property
    def position_offset(self) -> int:
        """OPT's learned position table starts two rows after position 0."""
        return 2 if self.model_type == "opt" else 0

    @property
    def embed_width(self) -> int:
        """Width of the token embeddings and of the LM head's input (OPT: word_embed_proj_dim)."""
        return self.embed_proj_dim or self.hidden_size

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)

    @property
    def attention_scale(self) -> float:
        scalar = self.query_pre_attn_scalar or self.head_dim
        return float(scalar) ** -0.5

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        """``eos_token_id`` as a (possibly empty) tuple."""
        eos = self.eos_token_id
        return () if eos is None else (eos,) if isinstance(eos, int) else tuple(eos)

    def layer_window(self, layer: int) -> int | None:
        """The sliding window of ``layer`` (None: full causal attention)."""
        if self.layer_types is not None and self.layer_types[layer] == "full_attention":
            return None
        return self.sliding_window

    # ---- named sizes ---------------------------------------------------------------------------

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
        base.update(_TINY.get(model_type, {}))
        if model_type in LEARNED_POSITION_TYPES:
            base.update(num_kv_heads=4, rope=None)
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
        """Read a HF ``config.json`` dictionary (transformers 4 or 5 spelling); refuses remote
        code and any field that changes the math and is not implemented."""
        from jaxpref.llm.hf_config import read_hf_config

        return cls(**read_hf_config(hf))

    def to_hf_dict(self) -> dict[str, Any]:
        """The HF ``config.json`` dictionary for this config (transformers 5 spelling); raises
        when the HF class of ``model_type`` cannot express this config."""
        from jaxpref.llm.hf_config import write_hf_config

        return write_hf_config(self)


_TINY = {
    "qwen2": dict(qkv_bias=True, tie_word_embeddings=True),
    "gemma": dict(tie_word_embeddings=True, activation="gelu_pytorch_tanh", head_dim=16),
    "gemma2": dict(
        tie_word_embeddings=True,
        activation="gelu_pytorch_tanh",
        sliding_window=4,
        layer_types=("sliding_attention", "full_attention"),
        attn_softcap=50.0,
        final_softcap=30.0,
        query_pre_attn_scalar=16.0,
    ),
    "gpt2": dict(
        intermediate_size=128,
        norm_eps=1e-5,
        activation="gelu_new",
        qkv_bias=True,
        o_bias=True,
        mlp_bias=True,
        tie_word_embeddings=True,
    ),
    "opt": dict(
        norm_eps=1e-5,
        activation="relu",
        qkv_bias=True,
        o_bias=True,
        mlp_bias=True,
        tie_word_embeddings=True,
    ),
}


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name}: must be an integer ≥ 1, got {value!r}")


def load_config(path: str | pathlib.Path) -> DecoderConfig:
    """Read ``config.json`` from a HF model directory (or the file itself); an unsupported or
    unimplemented field raises a ``ValueError`` naming the file and the field."""
    path = pathlib.Path(path)
    file = path / "config.json" if path.is_dir() else path
    if not file.exists():
        raise ValueError(f"path: no config.json at {file}")
    try:
        return DecoderConfig.from_hf_dict(json.loads(file.read_text()))
    except ValueError as err:
        raise ValueError(f"{file}: {err}") from None


# ---- generation defaults ----------------------------------------------------------------------

# generation_config.json keys that change greedy or sampled outputs, with their no-op values;
# jaxpref implements temperature, top-k, top-p and EOS lists only.
GENERATION_NO_OP = {
    "repetition_penalty": (None, 1.0),
    "encoder_repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "typical_p": (None, 1.0),
    "epsilon_cutoff": (None, 0.0),
    "eta_cutoff": (None, 0.0),
    "min_p": (None,),
    "num_beams": (None, 1),
    "num_beam_groups": (None, 1),
    "penalty_alpha": (None,),
    "diversity_penalty": (None, 0.0),
    "bad_words_ids": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "sequence_bias": (None,),
    "guidance_scale": (None, 1.0),
    "renormalize_logits": (None, False),
    "exponential_decay_length_penalty": (None,),
    "watermarking_config": (None,),
}


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    """A checkpoint's sampling defaults (transformers' ``GenerationConfig``): what
    :func:`~jaxpref.llm.generate` uses for any argument left unset. Built from
    ``generation_config.json`` when the checkpoint has one, else from ``config.json``'s token ids
    with transformers' defaults (greedy; ``top_k`` 50 once sampling). ``unsupported`` lists the
    file's settings jaxpref does not implement (e.g. ``repetition_penalty``); ``generate`` refuses
    to use such defaults silently."""

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    eos_token_id: tuple[int, ...] = ()
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    unsupported: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_model_config(cls, config: DecoderConfig) -> GenerationConfig:
        return cls(
            eos_token_id=config.eos_token_ids,
            pad_token_id=config.pad_token_id,
            bos_token_id=config.bos_token_id,
        )

    def to_hf_dict(self) -> dict[str, Any]:
        """The ``generation_config.json`` dictionary (transformers' key names)."""
        eos = list(self.eos_token_id)
        out = dict(
            do_sample=self.do_sample,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            eos_token_id=eos[0] if len(eos) == 1 else (eos or None),
            pad_token_id=self.pad_token_id,
            bos_token_id=self.bos_token_id,
        )
        out.update((k, json.loads(v)) for k, v in self.unsupported)
        return out

    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any], config: DecoderConfig) -> GenerationConfig:
        base = cls.from_model_config(config)
        eos = hf.get("eos_token_id", base.eos_token_id)
        eos = () if eos is None else (eos,) if isinstance(eos, int) else tuple(eos)
        unsupported = tuple(
            sorted(
                (k, json.dumps(v))  # JSON text: hashable, and written back as it was
                for k, v in hf.items()
                if k in GENERATION_NO_OP and v not in GENERATION_NO_OP[k]
            )
        )

        def get(key, default):
            value = hf.get(key)
            return default if value is None else value

        return cls(
            do_sample=bool(get("do_sample", False)),
            temperature=float(get("temperature", 1.0)),
            top_k=int(get("top_k", 50)),
            top_p=float(get("top_p", 1.0)),
            eos_token_id=eos,
            pad_token_id=get("pad_token_id", base.pad_token_id),
            bos_token_id=get("bos_token_id", base.bos_token_id),
            unsupported=unsupported,
        )


def load_generation_config(path: str | pathlib.Path, config: DecoderConfig) -> GenerationConfig:
    """``generation_config.json`` of a HF model directory, else defaults from ``config``."""
    file = pathlib.Path(path) / "generation_config.json"
    if not file.exists():
        return GenerationConfig.from_model_config(config)
    try:
        return GenerationConfig.from_hf_dict(json.loads(file.read_text()), config)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{file}: {err}") from None

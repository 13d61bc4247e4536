"""Hugging Face ``config.json`` ⇄ :class:`~jaxpref.llm.config.DecoderConfig`, one reader and one
writer per ``model_type``.

Reading follows what transformers' config class of the ``model_type`` does with the file: a key
that is absent takes the class default, and a key that the HF model reads and that changes the
math but is not implemented here (``partial_rotary_factor`` outside Phi-3, soft-capping outside
Gemma 2, ``quantization_config``, ``longrope``, …) is refused unless it holds its no-op value, as
is ``auto_map`` (remote code). Dropout rates are accepted and ignored: the forward is the
evaluation-mode forward (TRL's trainers disable dropout by default too).

Writing emits what the HF class reads, and refuses a config that class cannot express (Mistral
with q/k/v bias, Qwen2 with an MLP bias, Llama with q/k/v bias but no o bias, …), so that
transformers never silently loads a different model than the one saved.
"""

from __future__ import annotations

from typing import Any

from jaxpref.llm.config import (
    ACTIVATIONS,
    MODEL_TYPES,
    DecoderConfig,
    RopeConfig,
)

ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "mistral": "MistralForCausalLM",
    "gemma": "GemmaForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "phi3": "Phi3ForCausalLM",
    "opt": "OPTForCausalLM",
    "gpt2": "GPT2LMHeadModel",
}

# transformers' class defaults for keys a config.json may omit.
CLASS_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": dict(max_position_embeddings=2048, rms_norm_eps=1e-6, tie_word_embeddings=False),
    "qwen2": dict(max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=False),
    "qwen3": dict(
        max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=False, head_dim=128
    ),
    "mistral": dict(
        max_position_embeddings=131072,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        sliding_window=4096,
    ),
    "gemma": dict(
        max_position_embeddings=8192,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        head_dim=256,
        hidden_act="gelu_pytorch_tanh",
    ),
    "gemma2": dict(
        max_position_embeddings=8192,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        head_dim=256,
        hidden_activation="gelu_pytorch_tanh",
        query_pre_attn_scalar=256,
        sliding_window=4096,
        final_logit_softcapping=30.0,
        attn_logit_softcapping=50.0,
    ),
    "phi3": dict(max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False),
    "opt": dict(max_position_embeddings=2048, tie_word_embeddings=True),
    "gpt2": dict(n_positions=1024, layer_norm_epsilon=1e-5, tie_word_embeddings=True),
}

# Keys some HF model reads that change the math, with their no-op values. A reader that
# implements a key consumes it first, so this table only judges keys left unread.
NO_OP_VALUES: dict[str, tuple] = {
    "partial_rotary_factor": (1.0, None),
    "attn_logit_softcapping": (None,),
    "final_logit_softcapping": (None,),
    "query_pre_attn_scalar": (None,),
    "use_bidirectional_attention": (None, False),
    "use_sliding_window": (None, False),
    "add_cross_attention": (None, False),
    "scale_attn_by_inverse_layer_idx": (None, False),
    "scale_attn_weights": (None, True),
    "layer_norm_elementwise_affine": (None, True),
    "quantization_config": (None,),
    "attention_chunk_size": (None,),
    "no_rope_layers": (None,),
    "mup": (None, False),
}

ROPE_KEYS = (
    "factor",
    "low_freq_factor",
    "high_freq_factor",
    "original_max_position_embeddings",
    "beta_fast",
    "beta_slow",
    "mscale",
    "mscale_all_dim",
    "attention_factor",
    "truncate",
)


class _Reader:
    """``hf`` with the keys that were read recorded, and the class defaults of ``model_type``."""

    def __init__(self, hf: dict[str, Any], model_type: str):
        self.hf, self.defaults, self.used = hf, CLASS_DEFAULTS[model_type], {"model_type"}

    def __call__(self, key: str, default: Any = None) -> Any:
        """The file's value (an explicit null stays None, as transformers keeps it), else the
        class default."""
        self.used.add(key)
        if key not in self.hf:
            return self.defaults.get(key, default)
        return self.hf[key]

    def require(self, key: str) -> Any:
        self.used.add(key)
        if self.hf.get(key) is None:
            raise ValueError(f"{key}: missing from config.json")
        return self.hf[key]


def read_hf_config(hf: dict[str, Any]) -> dict[str, Any]:
    """:class:`DecoderConfig` keyword arguments from a HF ``config.json`` dictionary."""
    if hf.get("auto_map"):
        raise ValueError(
            "auto_map: the config asks for remote code (custom modelling files), which jaxpref "
            "never runs; only the built-in architectures are supported"
        )
    model_type = hf.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"model_type: unsupported architecture model_type={model_type!r} "
            f"(architectures={hf.get('architectures')}); supported: {', '.join(MODEL_TYPES)}"
        )
    read = _Reader(hf, model_type)
    fields = _READERS[model_type](read)
    for key, value in hf.items():
        if key in read.used or key not in NO_OP_VALUES:
            continue
        if value not in NO_OP_VALUES[key]:
            raise ValueError(
                f"{key}: {value!r} changes the math and is not implemented for "
                f"model_type={model_type!r} (accepted: {NO_OP_VALUES[key]})"
            )
    extra = sorted((k, v) for k, v in hf.items() if k not in read.used and k != "auto_map")
    fields["hf_extra"] = _freeze(tuple(extra))
    fields["model_type"] = model_type
    return fields


def write_hf_config(c: DecoderConfig) -> dict[str, Any]:
    """The HF ``config.json`` dictionary of ``c``; raises when the HF class cannot express it."""
    out = {k: _thaw(v) for k, v in c.hf_extra if k != "auto_map"}
    writer = _gpt2_json if c.model_type == "gpt2" else _opt_json if c.model_type == "opt" else None
    out.update((writer or _llama_json)(c))
    out.update(
        architectures=[ARCHITECTURES[c.model_type]],
        model_type=c.model_type,
        vocab_size=c.vocab_size,
        bos_token_id=c.bos_token_id,
        eos_token_id=list(c.eos_token_id) if isinstance(c.eos_token_id, tuple) else c.eos_token_id,
        pad_token_id=c.pad_token_id,
        tie_word_embeddings=c.tie_word_embeddings,
    )
    return out


# ---- readers ---------------------------------------------------------------------------------


def _activation(read: _Reader, key: str) -> str:
    act = read(key, "silu")
    if read.hf.get("model_type") == "gemma" and act == "gelu":
        act = "gelu_pytorch_tanh"  # transformers' GemmaConfig rewrites the legacy value
    if act not in ACTIVATIONS:
        raise ValueError(f"{key}: unsupported activation {act!r}; supported: {ACTIVATIONS}")
    return act


def _rope_params(read: _Reader) -> dict[str, Any]:
    return {**dict(read("rope_scaling") or {}), **dict(read("rope_parameters") or {})}


def _rope(read: _Reader, max_positions: int) -> RopeConfig:
    params = _rope_params(read)
    theta = params.get("rope_theta", read("rope_theta", 10000.0))
    rope_type = params.get("rope_type", params.get("type", "default"))
    kw = {k: params[k] for k in ROPE_KEYS if params.get(k) is not None}
    if rope_type in ("llama3", "yarn"):
        original = read("original_max_position_embeddings")  # Phi-3 style top-level key first
        kw["original_max_position_embeddings"] = original or kw.get(
            "original_max_position_embeddings", max_positions
        )
    if rope_type == "yarn" and params.get("factor") is None:
        kw["factor"] = max_positions / kw["original_max_position_embeddings"]
    return RopeConfig(theta=float(theta), rope_type=rope_type, **kw)


def _llama_fields(read: _Reader) -> dict[str, Any]:
    model_type = read.hf["model_type"]
    heads = read.require("num_attention_heads")
    hidden = read.require("hidden_size")
    max_positions = read("max_position_embeddings")
    act_key = "hidden_activation" if model_type == "gemma2" else "hidden_act"
    attn_bias = bool(read("attention_bias", False))
    out = dict(
        vocab_size=read.require("vocab_size"),
        hidden_size=hidden,
        intermediate_size=read.require("intermediate_size"),
        num_layers=read.require("num_hidden_layers"),
        num_heads=heads,
        num_kv_heads=read("num_key_value_heads") or heads,
        head_dim=read("head_dim") or hidden // heads,
        max_position_embeddings=max_positions,
        norm_eps=read("rms_norm_eps"),
        tie_word_embeddings=bool(read("tie_word_embeddings")),
        qkv_bias=attn_bias,
        o_bias=attn_bias,
        mlp_bias=False,
        rope=_rope(read, max_positions),
        activation=_activation(read, act_key),
        bos_token_id=read("bos_token_id"),
        eos_token_id=_eos(read("eos_token_id")),
        pad_token_id=read("pad_token_id"),
    )
    out.update(_FAMILY_FIELDS[model_type](read))
    prf = _rope_params(read).get("partial_rotary_factor")
    if model_type != "phi3" and prf not in (None, 1.0):
        raise ValueError(
            f"rope_parameters.partial_rotary_factor: {prf!r} changes the math and is not "
            f"implemented for model_type={model_type!r} (accepted: 1.0)"
        )
    return out


def _eos(value):
    return tuple(value) if isinstance(value, list) else value


def _qwen_windows(read: _Reader) -> dict[str, Any]:
    """Qwen2/Qwen3: windows only with ``use_sliding_window``, on the layers ``layer_types`` (or
    ``i >= max_window_layers``) marks, as transformers' Qwen2Config derives them."""
    window = read("sliding_window", 4096) if read("use_sliding_window", False) else None
    layers = read("num_hidden_layers")
    types = read("layer_types")
    if window is None:
        return dict(sliding_window=None, layer_types=None)
    if types is None:
        first = read("max_window_layers", 28)
        types = ["sliding_attention" if i >= first else "full_attention" for i in range(layers)]
    return dict(sliding_window=window, layer_types=tuple(types))


def _qwen2(read: _Reader) -> dict[str, Any]:
    return dict(qkv_bias=True, o_bias=False, **_qwen_windows(read))


def _qwen3(read: _Reader) -> dict[str, Any]:
    return _qwen_windows(read)


def _mistral(read: _Reader) -> dict[str, Any]:
    return dict(qkv_bias=False, o_bias=False, sliding_window=read("sliding_window"))


def _gemma2(read: _Reader) -> dict[str, Any]:
    layers = read("num_hidden_layers")
    types = read("layer_types") or [
        "sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(layers)
    ]
    return dict(
        sliding_window=read("sliding_window"),
        layer_types=tuple(types),
        attn_softcap=read("attn_logit_softcapping"),
        final_softcap=read("final_logit_softcapping"),
        query_pre_attn_scalar=float(read("query_pre_attn_scalar")),
    )


def _phi3(read: _Reader) -> dict[str, Any]:
    rope_type = _rope_params(read).get("rope_type", _rope_params(read).get("type", "default"))
    if rope_type != "default":  # transformers reads su / yarn as longrope for Phi-3
        raise ValueError(
            f"rope_parameters.rope_type: Phi-3's {rope_type!r} (longrope) scaling is not "
            "implemented"
        )
    top = read("partial_rotary_factor", 1.0)  # transformers 5 also copies it into the rope dict
    prf = _rope_params(read).get("partial_rotary_factor") or top
    return dict(
        qkv_bias=False,
        o_bias=False,
        sliding_window=read("sliding_window"),
        partial_rotary_factor=float(prf),
    )


_FAMILY_FIELDS = {
    "llama": lambda read: dict(mlp_bias=bool(read("mlp_bias", False))),
    "qwen2": _qwen2,
    "qwen3": _qwen3,
    "mistral": _mistral,
    "gemma": lambda read: {},
    "gemma2": _gemma2,
    "phi3": _phi3,
}


def _opt_fields(read: _Reader) -> dict[str, Any]:
    hidden, heads = read.require("hidden_size"), read.require("num_attention_heads")
    if not read("layer_norm_elementwise_affine", True):
        raise ValueError(
            "layer_norm_elementwise_affine: OPT LayerNorms without weights are not implemented"
        )
    pre_norm = bool(read("do_layer_norm_before", True))
    proj = read("word_embed_proj_dim") or hidden
    bias = bool(read("enable_bias", True))
    return dict(
        vocab_size=read.require("vocab_size"),
        hidden_size=hidden,
        intermediate_size=read.require("ffn_dim"),
        num_layers=read.require("num_hidden_layers"),
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=hidden // heads,
        max_position_embeddings=read("max_position_embeddings"),
        norm_eps=1e-5,  # torch.nn.LayerNorm's default; OPT has no eps field
        tie_word_embeddings=bool(read("tie_word_embeddings")),
        qkv_bias=bias,
        o_bias=bias,
        mlp_bias=bias,
        rope=None,
        activation=_activation(read, "activation_function"),
        pre_norm=pre_norm,
        final_norm=pre_norm and not read("_remove_final_layer_norm", False),
        embed_proj_dim=None if proj == hidden else proj,
        bos_token_id=read("bos_token_id"),
        eos_token_id=_eos(read("eos_token_id")),
        pad_token_id=read("pad_token_id"),
    )


def _gpt2_fields(read: _Reader) -> dict[str, Any]:
    act = _activation(read, "activation_function")
    width, heads = read.require("n_embd"), read.require("n_head")
    return dict(
        vocab_size=read.require("vocab_size"),
        hidden_size=width,
        intermediate_size=read("n_inner") or 4 * width,
        num_layers=read.require("n_layer"),
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=width // heads,
        max_position_embeddings=read("n_positions"),
        norm_eps=read("layer_norm_epsilon"),
        tie_word_embeddings=bool(read("tie_word_embeddings")),
        qkv_bias=True,
        o_bias=True,
        mlp_bias=True,
        rope=None,
        activation=act,
        bos_token_id=read("bos_token_id"),
        eos_token_id=_eos(read("eos_token_id")),
        pad_token_id=read("pad_token_id"),
    )


_READERS = {t: _llama_fields for t in _FAMILY_FIELDS} | {"opt": _opt_fields, "gpt2": _gpt2_fields}


# ---- writers ---------------------------------------------------------------------------------


def _refuse(c: DecoderConfig, field: str, what: str) -> None:
    raise ValueError(
        f"{field}: transformers' {ARCHITECTURES[c.model_type]} cannot express {what}; "
        "save_pretrained refuses rather than write a checkpoint that loads as a different model"
    )


def _check_common(c: DecoderConfig) -> None:
    if c.partial_rotary_factor != 1.0 and c.model_type != "phi3":
        _refuse(c, "partial_rotary_factor", f"partial_rotary_factor={c.partial_rotary_factor}")
    gemma2 = c.model_type == "gemma2"
    for field in ("attn_softcap", "final_softcap", "query_pre_attn_scalar"):
        if getattr(c, field) is not None and not gemma2:
            _refuse(c, field, f"{field}={getattr(c, field)}")
    per_layer = c.model_type in ("qwen2", "qwen3", "gemma2")
    if c.layer_types is not None and not per_layer:
        _refuse(c, "layer_types", "per-layer attention types")
    if c.sliding_window is not None and c.model_type in ("llama", "gemma", "opt", "gpt2"):
        _refuse(c, "sliding_window", f"a sliding window ({c.sliding_window})")


def _check_biases(c: DecoderConfig) -> None:
    allowed = {  # (qkv, o, mlp) combinations each HF class builds
        "llama": {(b, b, m) for b in (False, True) for m in (False, True)},
        "qwen2": {(True, False, False)},
        "qwen3": {(False, False, False), (True, True, False)},
        "mistral": {(False, False, False)},
        "gemma": {(False, False, False), (True, True, False)},
        "gemma2": {(False, False, False), (True, True, False)},
        "phi3": {(False, False, False)},
        "opt": {(False, False, False), (True, True, True)},
        "gpt2": {(True, True, True)},
    }[c.model_type]
    have = (c.qkv_bias, c.o_bias, c.mlp_bias)
    if have not in allowed:
        _refuse(
            c,
            "qkv_bias/o_bias/mlp_bias",
            f"biases (qkv={c.qkv_bias}, o={c.o_bias}, mlp={c.mlp_bias}); it builds "
            + " or ".join(f"(qkv={q}, o={o}, mlp={m})" for q, o, m in sorted(allowed)),
        )


def _rope_json(c: DecoderConfig) -> dict[str, Any]:
    r = c.rope
    rope: dict[str, Any] = {"rope_type": r.rope_type, "rope_theta": r.theta}
    if r.rope_type != "default":
        rope["factor"] = r.factor
    if r.rope_type == "llama3":
        rope.update(
            low_freq_factor=r.low_freq_factor,
            high_freq_factor=r.high_freq_factor,
            original_max_position_embeddings=r.original_max_position_embeddings
            or c.max_position_embeddings,
        )
    if r.rope_type == "yarn":
        rope.update(
            original_max_position_embeddings=r.original_max_position_embeddings
            or c.max_position_embeddings,
            beta_fast=r.beta_fast,
            beta_slow=r.beta_slow,
            truncate=r.truncate,
        )
        for key in ("mscale", "mscale_all_dim", "attention_factor"):
            if getattr(r, key) is not None:
                rope[key] = getattr(r, key)
    if c.partial_rotary_factor != 1.0:
        rope["partial_rotary_factor"] = c.partial_rotary_factor
    return rope


def _llama_json(c: DecoderConfig) -> dict[str, Any]:
    _check_common(c)
    _check_biases(c)
    if c.model_type == "phi3" and c.rope.rope_type != "default":
        _refuse(c, "rope_type", f"rope_type={c.rope.rope_type!r} (it takes default or longrope)")
    act_key = "hidden_activation" if c.model_type == "gemma2" else "hidden_act"
    out = {
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "num_key_value_heads": c.num_kv_heads,
        "head_dim": c.head_dim,
        "max_position_embeddings": c.max_position_embeddings,
        "rms_norm_eps": c.norm_eps,
        "rope_parameters": _rope_json(c),
        "rope_theta": c.rope.theta,
        act_key: c.activation,
    }
    if c.model_type in ("llama", "qwen3", "gemma", "gemma2"):
        out["attention_bias"] = c.qkv_bias
    if c.model_type == "llama":
        out["mlp_bias"] = c.mlp_bias
    if c.model_type in ("mistral", "phi3"):
        out["sliding_window"] = c.sliding_window
    if c.model_type in ("qwen2", "qwen3"):
        out.update(_qwen_window_json(c))
    if c.model_type == "gemma2":
        out.update(
            sliding_window=c.sliding_window,
            layer_types=list(c.layer_types or ["sliding_attention"] * c.num_layers),
            attn_logit_softcapping=c.attn_softcap,
            final_logit_softcapping=c.final_softcap,
            query_pre_attn_scalar=_whole(c, "query_pre_attn_scalar", c.query_pre_attn_scalar),
        )
        if c.sliding_window is None:
            out["layer_types"] = ["full_attention"] * c.num_layers
    if c.model_type == "phi3":
        out["partial_rotary_factor"] = c.partial_rotary_factor
    return out


def _whole(c: DecoderConfig, field: str, value) -> int:
    """Gemma2Config types ``query_pre_attn_scalar`` as an int (None: our default, head_dim)."""
    value = c.head_dim if value is None else value
    if float(value) != int(value):
        _refuse(c, field, f"a non-integer {field}={value}")
    return int(value)


def _qwen_window_json(c: DecoderConfig) -> dict[str, Any]:
    if c.sliding_window is None:
        return dict(use_sliding_window=False, layer_types=["full_attention"] * c.num_layers)
    types = list(c.layer_types or ["sliding_attention"] * c.num_layers)
    full = [i for i, t in enumerate(types) if t == "full_attention"]
    first = (max(full) + 1) if full else 0
    return dict(
        use_sliding_window=True,
        sliding_window=c.sliding_window,
        max_window_layers=first,
        layer_types=types,
    )


def _learned_checks(c: DecoderConfig) -> None:
    _check_common(c)
    _check_biases(c)
    if c.num_kv_heads != c.num_heads or c.head_dim * c.num_heads != c.hidden_size:
        _refuse(c, "num_kv_heads/head_dim", "grouped heads or head_dim × heads ≠ hidden_size")


def _opt_json(c: DecoderConfig) -> dict[str, Any]:
    _learned_checks(c)
    if c.final_norm and not c.pre_norm:
        _refuse(c, "final_norm", "a final LayerNorm after post-norm blocks")
    if c.norm_eps != 1e-5:
        _refuse(c, "norm_eps", f"norm_eps={c.norm_eps} (its LayerNorms use 1e-5)")
    return dict(
        hidden_size=c.hidden_size,
        ffn_dim=c.intermediate_size,
        num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_heads,
        max_position_embeddings=c.max_position_embeddings,
        activation_function=c.activation,
        do_layer_norm_before=c.pre_norm,
        _remove_final_layer_norm=c.pre_norm and not c.final_norm,
        word_embed_proj_dim=c.embed_width,
        enable_bias=c.qkv_bias,
        layer_norm_elementwise_affine=True,
    )


def _gpt2_json(c: DecoderConfig) -> dict[str, Any]:
    _learned_checks(c)
    return dict(
        n_embd=c.hidden_size,
        n_inner=c.intermediate_size,
        n_layer=c.num_layers,
        n_head=c.num_heads,
        n_positions=c.max_position_embeddings,
        layer_norm_epsilon=c.norm_eps,
        activation_function=c.activation,
    )


# ---- hashable copies of arbitrary JSON values (hf_extra) --------------------------------------


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

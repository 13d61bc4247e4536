"""Models of a training run: loading (sharded, with LoRA), trainable filters and HF export."""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpref import llm
from jaxpref.data import load_tokenizer
from jaxpref.llm.hf_map import layer_names, param_map
from jaxpref.llm.lora import LoRAParam
from jaxpref.llm.safetensors_io import save_file
from jaxpref.llm.sharding import path_name
from jaxpref.train.config import TrainConfig

ALL_LINEAR = r"\.(q|k|v|o|gate|up|down)_proj$"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def tokenizer_for(config: TrainConfig):
    """The tokenizer of ``--tokenizer_name_or_path`` (default: the model directory)."""
    path = pathlib.Path(config.tokenizer_name_or_path or config.model_name_or_path)
    if not any((path / f).exists() for f in TOKENIZER_FILES):
        flag = "tokenizer_name_or_path" if config.tokenizer_name_or_path else "model_name_or_path"
        raise ValueError(
            f"{flag}: no tokenizer files in {path} (expected one of {', '.join(TOKENIZER_FILES)}); "
            "pass --tokenizer_name_or_path"
        )
    return load_tokenizer(path)


def init_model_dir(
    path, config: llm.DecoderConfig, tokenizer, *, seed: int = 0, overwrite: bool = False
) -> pathlib.Path:
    """A randomly initialised model of ``config`` saved with ``tokenizer`` as a HF directory
    (the starting point of a pipeline trained from scratch); an existing checkpoint in ``path``
    is replaced only with ``overwrite``."""
    path = pathlib.Path(path)
    llm.save_pretrained(llm.create_model(config, seed=seed), path, overwrite=overwrite)
    tokenizer.save_pretrained(str(path))
    return path


def small_llama(
    tokenizer, *, hidden_size: int, num_layers: int, num_heads: int, max_positions: int
):
    """A Llama config sized for CPU experiments, with the tokenizer's vocabulary and ids."""
    return llm.DecoderConfig(
        model_type="llama",
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def check_model_dir(flag: str, path: str | None) -> pathlib.Path:
    p = pathlib.Path(path or "")
    if not (p / "config.json").is_file():
        raise ValueError(f"{flag}: {str(p)!r} is not a model directory (no config.json)")
    return p


def lora_pattern(targets: tuple[str, ...]) -> str:
    if targets == ("all-linear",):
        return ALL_LINEAR
    for t in targets:
        if not re.fullmatch(r"[A-Za-z0-9_]+", t):
            raise ValueError(f"lora_target_modules: {t!r} is not a module name (e.g. q_proj)")
    return r"\.(" + "|".join(targets) + r")$"


def add_lora(model: nnx.Module, config: TrainConfig, mesh) -> list[str]:
    """Attach adapters (B = 0, so the model is unchanged) and place them on the mesh."""
    lora = llm.LoRAConfig(
        config.lora_r, config.lora_alpha, lora_pattern(config.lora_target_modules)
    )
    try:
        names = llm.apply_lora(model, lora, rngs=nnx.Rngs(config.seed))
    except ValueError as err:
        raise ValueError(f"lora_target_modules: {err}") from err
    llm.shard_model(model, mesh)
    return names


def trainable(config: TrainConfig, *extra: str):
    """Filter of the trained variables: adapters (plus the ``extra`` paths) with LoRA, else all."""
    if not config.use_peft:
        return nnx.Param
    return nnx.Any(LoRAParam, *(nnx.PathContains(name) for name in extra))


def copy_module(module: nnx.Module) -> nnx.Module:
    """An independent copy (new buffers, same shardings): a frozen reference that a donating
    train step cannot invalidate."""
    graphdef, state = nnx.split(module)
    return nnx.merge(graphdef, jax.tree.map(lambda x: x.copy(), state))


def cast_floats(tree: Any, dtype) -> Any:
    """Every floating array of ``tree`` in ``dtype`` (mixed precision: master weights stay)."""

    def cast(x):
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating) and x.dtype != dtype:
            return x.astype(dtype)
        return x

    return jax.tree.map(cast, tree)


def adapter_tensors(model: llm.Decoder) -> dict[str, np.ndarray]:
    """LoRA factors in PEFT's layout (``base_model.model.<module>.lora_A/B.weight``), from a
    looped or a scanned (stacked) model."""
    sources = param_map(model.config)
    out = {}
    for path, module in nnx.iter_modules(model):
        if getattr(module, "lora_a", None) is None:
            continue
        name = path_name(path)
        a = np.asarray(jax.device_get(module.lora_a[...]))
        b = np.asarray(jax.device_get(module.lora_b[...]))
        per_layer = layer_names(name, model.config.num_layers) if a.ndim == 3 else None
        for i, layer in enumerate(per_layer or [name]):
            source = sources[f"{layer}.kernel"]
            if source.how != "T":
                raise ValueError(
                    f"save_adapters: {layer} is not a plain nn.Linear in the HF layout "
                    f"({source.hf}); PEFT adapters cannot express it — save the merged model only"
                )
            base = "base_model.model." + source.hf.removesuffix(".weight")
            out[f"{base}.lora_A.weight"] = (a[i] if per_layer else a).T
            out[f"{base}.lora_B.weight"] = (b[i] if per_layer else b).T
    return out


def save_adapters(model: llm.Decoder, config: TrainConfig, path: pathlib.Path) -> None:
    """``adapter_model.safetensors`` + ``adapter_config.json`` that PEFT reads."""
    tensors = adapter_tensors(model)
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, path / "adapter_model.safetensors")
    modules = sorted({k.split(".")[-3] for k in tensors})
    adapter = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": config.lora_r,
        "lora_alpha": config.lora_alpha,
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "target_modules": modules,
        "base_model_name_or_path": str(config.model_name_or_path),
    }
    (path / "adapter_config.json").write_text(json.dumps(adapter, indent=2))

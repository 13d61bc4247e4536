"""Load and save Hugging Face checkpoints (``config.json`` + safetensors, one file or sharded).

:func:`param_map` names, for every parameter of a :class:`~jaxpref.llm.model.Decoder`, the HF
tensor it comes from and how: ``"T"`` transposes an ``nn.Linear`` weight ``(out, in)`` into our
``(in, out)`` kernel; GPT-2's ``Conv1D`` weights are already ``(in, out)``; its fused ``c_attn``
is split into q, k, v (``("split", i)``). :func:`from_pretrained` builds the model abstractly,
then reads, checks and places each tensor directly with its target sharding, one at a time, so
host memory never holds more than one tensor (with a mesh: one device shard).
"""

from __future__ import annotations

import json
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpref.llm.config import DecoderConfig, load_config
from jaxpref.llm.model import Decoder
from jaxpref.llm.safetensors_io import SafetensorsFile, save_file
from jaxpref.llm.sharding import (
    LOGICAL_RULES,
    flat_variables,
    map_variables,
    path_name,
    variable_spec,
)

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
# Tensors a checkpoint may hold that are not parameters (GPT-2 mask buffers, rotary caches).
IGNORED = re.compile(r"(\.attn\.(masked_)?bias$|rotary_emb\.inv_freq$)")


def _llama_map(c: DecoderConfig) -> dict[str, tuple[str, object]]:
    out = {
        "embed.embedding": ("model.embed_tokens.weight", None),
        "final_norm.weight": ("model.norm.weight", None),
    }
    if not c.tie_word_embeddings:
        out["lm_head.kernel"] = ("lm_head.weight", "T")
    for i in range(c.num_layers):
        ours, hf = f"layers.{i}", f"model.layers.{i}"
        out[f"{ours}.attn_norm.weight"] = (f"{hf}.input_layernorm.weight", None)
        out[f"{ours}.mlp_norm.weight"] = (f"{hf}.post_attention_layernorm.weight", None)
        biases = {"q": c.qkv_bias, "k": c.qkv_bias, "v": c.qkv_bias, "o": c.o_bias}
        for p, has_bias in biases.items():
            out[f"{ours}.attn.{p}_proj.kernel"] = (f"{hf}.self_attn.{p}_proj.weight", "T")
            if has_bias:
                out[f"{ours}.attn.{p}_proj.bias"] = (f"{hf}.self_attn.{p}_proj.bias", None)
        for p in ("gate", "up", "down"):
            out[f"{ours}.mlp.{p}_proj.kernel"] = (f"{hf}.mlp.{p}_proj.weight", "T")
            if c.mlp_bias:
                out[f"{ours}.mlp.{p}_proj.bias"] = (f"{hf}.mlp.{p}_proj.bias", None)
    return out


def _gpt2_map(c: DecoderConfig) -> dict[str, tuple[str, object]]:
    out = {
        "embed.embedding": ("transformer.wte.weight", None),
        "pos_embed.embedding": ("transformer.wpe.weight", None),
    }
    for part in ("weight", "bias"):
        out[f"final_norm.{part}"] = (f"transformer.ln_f.{part}", None)
    if not c.tie_word_embeddings:
        out["lm_head.kernel"] = ("lm_head.weight", "T")
    for i in range(c.num_layers):
        ours, hf = f"layers.{i}", f"transformer.h.{i}"
        names = {
            "attn_norm": "ln_1",
            "mlp_norm": "ln_2",
            "attn.o_proj": "attn.c_proj",
            "mlp.up_proj": "mlp.c_fc",
            "mlp.down_proj": "mlp.c_proj",
        }
        for p, q in names.items():
            suffixes = ("weight", "bias") if "norm" in p else ("kernel", "bias")
            for s, hs in zip(suffixes, ("weight", "bias")):
                out[f"{ours}.{p}.{s}"] = (f"{hf}.{q}.{hs}", None)
        for j, p in enumerate("qkv"):
            out[f"{ours}.attn.{p}_proj.kernel"] = (f"{hf}.attn.c_attn.weight", ("split", j))
            out[f"{ours}.attn.{p}_proj.bias"] = (f"{hf}.attn.c_attn.bias", ("split", j))
    return out


def param_map(config: DecoderConfig) -> dict[str, tuple[str, object]]:
    """Our parameter path → (HF tensor name, transform) for ``config``."""
    return _gpt2_map(config) if config.family == "gpt2" else _llama_map(config)


class _Checkpoint:
    """Tensor name → file lookup over a single or sharded safetensors checkpoint."""

    def __init__(self, path: pathlib.Path):
        if (path / INDEX).exists():
            weight_map = json.loads((path / INDEX).read_text())["weight_map"]
        elif (path / SINGLE).exists():
            weight_map = {k: SINGLE for k in SafetensorsFile(path / SINGLE).keys()}
        else:
            raise ValueError(f"path: no {SINGLE} or {INDEX} in {path}")
        for name, file in weight_map.items():
            if not (path / file).exists():
                raise ValueError(f"checkpoint: missing shard {file} (holds tensor {name!r})")
        self.path, self.weight_map, self.files = path, weight_map, {}

    def names(self):
        return set(self.weight_map)

    def get(self, name: str) -> np.ndarray:
        file = self.weight_map[name]
        if file not in self.files:
            self.files[file] = SafetensorsFile(self.path / file)
        if name not in self.files[file].keys():
            raise ValueError(f"checkpoint: tensor {name!r} is not in its shard {file}")
        return self.files[file].get(name)


def _hf_name(name: str, config: DecoderConfig, available: set[str]) -> str:
    """Accept GPT-2 checkpoints saved without the ``transformer.`` prefix."""
    if name not in available and name.startswith("transformer."):
        bare = name.removeprefix("transformer.")
        return bare if bare in available else name
    return name


def _check_names(mapping, ckpt: _Checkpoint, config: DecoderConfig, ignore=()) -> None:
    available = ckpt.names() - set(ignore)
    wanted = {_hf_name(hf, config, available) for hf, _ in mapping.values()}
    missing = sorted(wanted - available)
    if missing:
        raise ValueError(
            f"checkpoint: missing tensor {missing[0]!r} ({len(missing)} missing) "
            f"for model_type={config.model_type!r}"
        )
    extra = sorted(n for n in available - wanted if not IGNORED.search(n))
    if config.tie_word_embeddings:
        extra = [n for n in extra if n != "lm_head.weight"]  # some writers save the tied copy
    if extra:
        raise ValueError(
            f"checkpoint: unexpected tensor {extra[0]!r} ({len(extra)} unexpected) "
            f"for model_type={config.model_type!r}"
        )


def _transform(array: np.ndarray, how) -> np.ndarray:
    if how == "T":
        return array.T
    if isinstance(how, tuple):
        return np.split(array, 3, axis=-1)[how[1]]
    return array


def _host_copy(view: np.ndarray, dtype) -> np.ndarray:
    """A private host copy: a device array must never alias the memory-mapped file."""
    return np.array(view, dtype=jnp.dtype(dtype), copy=True)


def _hf_shape(shape, how) -> tuple[int, ...]:
    """The shape the HF tensor must have for our parameter of ``shape``."""
    if how == "T":
        return tuple(reversed(shape))
    if isinstance(how, tuple):
        return (*shape[:-1], 3 * shape[-1])
    return tuple(shape)


def from_pretrained(
    path, *, dtype=jnp.float32, mesh=None, rules=LOGICAL_RULES, config=None, ignore=()
) -> Decoder:
    """Load a HF model directory (``config.json`` + safetensors) into a :class:`Decoder`.

    Args:
      path: local directory with ``config.json`` and ``model.safetensors`` or a sharded
        checkpoint with ``model.safetensors.index.json``.
      dtype: parameter dtype (tensors are cast on the host, one at a time).
      mesh: if given, each tensor is placed directly with its rules-table sharding on it; each
        device's shard is read from the memory-mapped file on its own (so on many hosts every
        process reads only the slices its devices hold).
      config: the :class:`DecoderConfig` to build (default: the directory's ``config.json``);
        e.g. with tied embeddings to read a backbone without its LM head.
      ignore: tensor names of the checkpoint that are not the decoder's (a reward head).
    Raises:
      ValueError: unsupported architecture, missing/unexpected tensor, shape mismatch, missing
        shard, or a mesh axis that does not divide the dimension it shards.
    """
    path = pathlib.Path(path)
    config = load_config(path) if config is None else config
    ckpt = _Checkpoint(path)
    mapping = param_map(config)
    _check_names(mapping, ckpt, config, ignore)
    abstract = nnx.eval_shape(lambda: Decoder(config, dtype=dtype, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    available = ckpt.names()

    def load(key, var):
        name = path_name(key)
        if name not in mapping:
            raise ValueError(f"{name}: parameter has no HF tensor in the map")
        hf, how = mapping[name]
        hf = _hf_name(hf, config, available)
        raw, want = ckpt.get(hf), _hf_shape(var.get_value().shape, how)
        if tuple(raw.shape) != want:
            raise ValueError(
                f"checkpoint: tensor {hf!r} has shape {tuple(raw.shape)}, expected "
                f"{want} (for {name} of model_type={config.model_type!r})"
            )
        view = _transform(raw, how)  # still a view of the memory-mapped file
        if mesh is None:
            return var.replace(jax.device_put(_host_copy(view, dtype)))
        sharding = jax.sharding.NamedSharding(mesh, variable_spec(name, var, mesh, rules))
        return var.replace(
            jax.make_array_from_callback(
                view.shape, sharding, lambda index: _host_copy(view[index], dtype)
            )
        )

    return nnx.merge(graphdef, map_variables(load, state))


class _Export:
    """HF tensor name → our parameter(s), fetched to the host only when asked for."""

    def __init__(self, model: Decoder, extra: dict[str, np.ndarray]):
        state = nnx.state(model, nnx.Not(_lora_filter()))
        values = {path_name(key): var.get_value() for key, var in flat_variables(state)}
        self.parts: dict[str, list] = {}
        for name, (hf, how) in param_map(model.config).items():
            self.parts.setdefault(hf, []).append((values[name], how))
        for hf, value in extra.items():
            self.parts[hf] = [(value, None)]

    def nbytes(self, hf: str) -> int:
        return sum(int(v.size) * jnp.dtype(v.dtype).itemsize for v, _ in self.parts[hf])

    def fetch(self, hf: str) -> np.ndarray:
        arrays = [np.asarray(jax.device_get(v)) for v, _ in self.parts[hf]]
        arrays = [a.T if how == "T" else a for a, (_, how) in zip(arrays, self.parts[hf])]
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=-1)


def _lora_filter():
    from jaxpref.llm.layers import LoRAParam

    return LoRAParam


def _check_adapters_merged(model: Decoder) -> None:
    for path, module in nnx.iter_modules(model):
        if getattr(module, "lora_a", None) is not None and not module.lora_merged:
            name = ".".join(str(p) for p in path)
            raise ValueError(
                f"model: LoRA adapter at {name} is not merged; call "
                "jaxpref.llm.lora.merge_lora(model) before save_pretrained"
            )


def save_pretrained(
    model: Decoder,
    path,
    *,
    max_shard_bytes: int | None = None,
    extra_tensors: dict[str, np.ndarray] | None = None,
    config_updates: dict | None = None,
) -> None:
    """Write ``config.json`` and HF-named safetensors (sharded with an index when larger than
    ``max_shard_bytes``) that transformers' ``from_pretrained`` reads.

    ``extra_tensors`` (HF name → host array) and ``config_updates`` (``config.json`` keys) let a
    wrapper save what is not the decoder's, e.g. a reward model's ``score.weight``.

    Each parameter is gathered to the host one at a time (``jax.device_get``), which needs every
    shard addressable: on several hosts, save training state with Orbax instead and export from
    one process. LoRA adapters must be merged first (:func:`jaxpref.llm.lora.merge_lora`).
    """
    _check_adapters_merged(model)
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    hf = model.config.to_hf_dict()
    hf["dtype"] = str(jnp.dtype(model.dtype))
    hf.update(config_updates or {})
    (path / "config.json").write_text(json.dumps(hf, indent=2, sort_keys=True))
    export = _Export(model, extra_tensors or {})
    shards = _split_shards({hf: export.nbytes(hf) for hf in export.parts}, max_shard_bytes)
    if len(shards) == 1:
        save_file({hf: export.fetch(hf) for hf in shards[0]}, path / SINGLE)
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):  # host memory: one shard at a time
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file({hf: export.fetch(hf) for hf in shard}, path / file)
        weight_map.update({name: file for name in shard})
    total = sum(export.nbytes(hf) for hf in export.parts)
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (path / INDEX).write_text(json.dumps(index, indent=2))


def _split_shards(sizes: dict[str, int], max_bytes):
    """Group tensor names (sorted) into shards of at most ``max_bytes`` (one shard if None)."""
    shards, size = [[]], 0
    for name in sorted(sizes):
        if max_bytes is not None and shards[-1] and size + sizes[name] > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += sizes[name]
    return shards

"""Load and save Hugging Face checkpoints (``config.json`` + safetensors, one file or sharded).

:func:`~jaxpref.llm.hf_map.param_map` names, for every parameter of a
:class:`~jaxpref.llm.model.Decoder`, the HF tensor it comes from and how (transposed, a slice of
a fused tensor; stacked over layers for ``scan_layers``). :func:`from_pretrained` builds the
model abstractly, then reads, checks and places each tensor directly with its target sharding,
one at a time, so host memory never holds more than one tensor (with a mesh: one device shard).
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpref.llm import model_dir
from jaxpref.llm.config import (
    DecoderConfig,
    GenerationConfig,
    load_config,
    load_generation_config,
)
from jaxpref.llm.hf_map import (
    Source,
    assemble,
    base_prefix,
    layer_names,
    param_map,
    stacked_name,
)
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


class _Checkpoint:
    """Tensor name → file lookup over a single or sharded safetensors checkpoint."""

    def __init__(self, path: pathlib.Path):
        if (path / model_dir.SAVING).exists():
            raise ValueError(
                f"path: {path} holds {model_dir.SAVING}: a save_pretrained was interrupted "
                "there and the folder mixes two saves; save the model again"
            )
        if (path / INDEX).exists() and (path / SINGLE).exists():
            raise ValueError(
                f"path: {path} holds both {SINGLE} and {INDEX} (one is stale); remove one"
            )
        if (path / INDEX).exists():
            weight_map = _weight_map(path)
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


def _weight_map(path: pathlib.Path) -> dict[str, str]:
    """The index's tensor → file map; every file must be a plain name inside ``path``."""
    index = path / INDEX
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{index}: not a safetensors index ({err!r})") from None
    if not isinstance(weight_map, dict):
        raise ValueError(f"{index}: weight_map is not a JSON object")
    for name, file in weight_map.items():
        plain = isinstance(file, str) and pathlib.PurePosixPath(file).name == file
        if not plain or file in ("", ".", "..") or "\\" in file:
            raise ValueError(
                f"{index}: tensor {name!r} names file {file!r} outside the checkpoint folder"
            )
    return weight_map


def _hf_name(name: str, config: DecoderConfig, available: set[str]) -> str:
    """Accept checkpoints saved from the base model, without its prefix (``transformer.`` for
    GPT-2, ``model.`` otherwise; e.g. OPT's ``decoder.layers.0…``)."""
    prefix = base_prefix(config)
    if name not in available and name.startswith(prefix):
        bare = name.removeprefix(prefix)
        return bare if bare in available else name
    return name


def _check_names(mapping, ckpt: _Checkpoint, config: DecoderConfig, ignore=()) -> None:
    available = ckpt.names() - set(ignore)
    wanted = {_hf_name(src.hf, config, available) for src in mapping.values()}
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


def _host_copy(view: np.ndarray, dtype) -> np.ndarray:
    """A private host copy: a device array must never alias the memory-mapped file."""
    return np.array(view, dtype=jnp.dtype(dtype), copy=True)


def _all_finite(host: np.ndarray) -> bool:
    return not jnp.issubdtype(host.dtype, jnp.inexact) or bool(np.isfinite(host).all())


def from_pretrained(
    path,
    *,
    dtype=jnp.float32,
    param_dtype=None,
    remat: str = "none",
    scan_layers: bool = False,
    attention: str = "auto",
    mesh=None,
    rules=LOGICAL_RULES,
    config=None,
    ignore=(),
) -> Decoder:
    """Load a HF model directory (``config.json`` + safetensors) into a :class:`Decoder`.

    Args:
      path: local directory with ``config.json`` and ``model.safetensors`` or a sharded
        checkpoint with ``model.safetensors.index.json`` (and, optionally,
        ``generation_config.json``: the sampling defaults of :func:`~jaxpref.llm.generate`).
      dtype: compute dtype. param_dtype: storage dtype (default ``dtype``); tensors are cast
        to it on the host, one at a time.
      remat, scan_layers, attention: the runtime options of :class:`Decoder`.
      mesh: if given, each tensor is placed directly with its rules-table sharding on it; each
        device's shard is read from the memory-mapped file on its own (so on many hosts every
        process reads only the slices its devices hold; with ``scan_layers``, only the layers
        of its shard).
      config: the :class:`DecoderConfig` to build (default: the directory's ``config.json``);
        e.g. with tied embeddings to read a backbone without its LM head.
      ignore: tensor names of the checkpoint that are not the decoder's (a reward head).
    Raises:
      ValueError: unsupported architecture or config field, missing/unexpected tensor, shape
        mismatch, missing shard, a malformed safetensors file (header longer than the file,
        out-of-range or overlapping ``data_offsets``), an index naming a file outside ``path``,
        a folder left by an interrupted save, or a mesh axis that does not divide the dimension
        it shards. Non-finite weights load with a ``RuntimeWarning`` naming file and tensor.
    """
    path = pathlib.Path(path)
    config = load_config(path) if config is None else config
    generation = load_generation_config(path, config)
    ckpt = _Checkpoint(path)
    mapping = param_map(config)
    _check_names(mapping, ckpt, config, ignore)
    options = dict(
        dtype=dtype,
        param_dtype=param_dtype,
        remat=remat,
        scan_layers=scan_layers,
        attention=attention,
    )
    abstract = nnx.eval_shape(lambda: Decoder(config, rngs=nnx.Rngs(0), **options))
    store = abstract.param_dtype
    graphdef, state = nnx.split(abstract)
    available = ckpt.names()

    def view_of(name, shape):
        """Our parameter ``name`` of ``shape`` as a view of its HF tensor, shape-checked."""
        if name not in mapping:
            raise ValueError(f"{name}: parameter has no HF tensor in the map")
        src = mapping[name]
        hf = _hf_name(src.hf, config, available)
        raw, want = ckpt.get(hf), src.hf_shape(shape)
        if tuple(raw.shape) != want:
            raise ValueError(
                f"checkpoint: tensor {hf!r} has shape {tuple(raw.shape)}, expected "
                f"{want} (for {name} of model_type={config.model_type!r})"
            )
        return src.to_ours(raw), f"{path / ckpt.weight_map[hf]}: tensor {hf!r}"

    warned: set[str] = set()

    def copy(view, where, index):
        host = _host_copy(view[index], store)
        if where not in warned and not _all_finite(host):
            warned.add(where)
            warnings.warn(f"{where} holds non-finite values (NaN or inf)", RuntimeWarning)
        return host

    def load(key, var):
        name, shape = path_name(key), var.get_value().shape
        names = layer_names(name, config.num_layers) if scan_layers else None
        if names is None:
            view = view_of(name, shape)
            read = lambda index: copy(*view, index)  # noqa: E731
        else:  # stacked: index 0 picks layers, each read on its own
            views = [view_of(n, shape[1:]) for n in names]

            def read(index):
                layers = range(config.num_layers)[index[0]]
                return np.stack([copy(*views[i], index[1:]) for i in layers])

        full = tuple(slice(None) for _ in shape)
        if mesh is None:
            return var.replace(jax.device_put(read(full)))
        sharding = jax.sharding.NamedSharding(mesh, variable_spec(name, var, mesh, rules))
        return var.replace(jax.make_array_from_callback(shape, sharding, read))

    model = nnx.merge(graphdef, map_variables(load, state))
    model.generation_config = generation
    return model


class _Export:
    """HF tensor name → our parameter(s), fetched to the host only when asked for."""

    def __init__(self, model: Decoder, extra: dict[str, np.ndarray]):
        state = nnx.state(model, nnx.Not(_lora_filter()))
        values = {path_name(key): var.get_value() for key, var in flat_variables(state)}
        self.parts: dict[str, list] = {}
        for name, src in param_map(model.config).items():
            stacked = stacked_name(name) if model.scan_layers else None
            value = values[name] if stacked is None else (values[stacked[0]], stacked[1])
            self.parts.setdefault(src.hf, []).append((value, src))
        for hf, value in extra.items():
            self.parts[hf] = [(value, Source(hf))]

    @staticmethod
    def _shape_dtype(value):
        array = value[0] if isinstance(value, tuple) else value
        shape = array.shape[1:] if isinstance(value, tuple) else array.shape
        return shape, array.dtype

    def nbytes(self, hf: str) -> int:
        sizes = [self._shape_dtype(v) for v, _ in self.parts[hf]]
        return sum(int(np.prod(s)) * jnp.dtype(d).itemsize for s, d in sizes)

    def fetch(self, hf: str) -> np.ndarray:
        def host(value):
            array = value[0][value[1]] if isinstance(value, tuple) else value
            return np.asarray(jax.device_get(array))

        return assemble([(host(v), src) for v, src in self.parts[hf]])


def _generation_json(model: Decoder) -> dict | None:
    """``generation_config.json`` when the model's sampling defaults are not just
    ``config.json``'s token ids (which is what transformers falls back to without the file)."""
    plain = GenerationConfig.from_model_config(model.config)
    return None if model.generation_config == plain else model.generation_config.to_hf_dict()


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
    overwrite: bool = False,
) -> None:
    """Write ``config.json`` and HF-named safetensors (sharded with an index when larger than
    ``max_shard_bytes``) that transformers' ``from_pretrained`` reads.

    ``extra_tensors`` (HF name → host array) and ``config_updates`` (``config.json`` keys) let a
    wrapper save what is not the decoder's, e.g. a reward model's ``score.weight``.

    The save is atomic (:mod:`jaxpref.llm.model_dir`): it is written into a temporary folder
    beside ``path`` and then made visible at once, so a process killed at any moment leaves the
    old checkpoint or the new one, whole. A folder that already holds a checkpoint is refused
    unless ``overwrite=True``; then the old checkpoint's files (an index, extra shards) are
    removed, and other files in the folder (a tokenizer, a run's checkpoints) are kept.

    Each parameter is gathered to the host one at a time (``jax.device_get``), which needs every
    shard addressable: on several hosts, save training state with Orbax instead and export from
    one process. LoRA adapters must be merged first (:func:`jaxpref.llm.lora.merge_lora`).
    """
    _check_adapters_merged(model)
    hf = model.config.to_hf_dict()  # refuses configs the HF class cannot express, before writing
    hf["dtype"] = str(jnp.dtype(model.param_dtype))
    hf.update(config_updates or {})
    path = pathlib.Path(path).absolute()
    model_dir.check_target(path, overwrite)
    staged = model_dir.staging_dir(path)
    try:
        _write_checkpoint(model, staged, hf, extra_tensors or {}, max_shard_bytes)
        model_dir.commit(staged, path)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def _write_checkpoint(model: Decoder, path: pathlib.Path, hf: dict, extra, max_shard_bytes):
    (path / "config.json").write_text(json.dumps(hf, indent=2, sort_keys=True))
    generation = _generation_json(model)
    if generation is not None:
        (path / "generation_config.json").write_text(json.dumps(generation, indent=2))
    export = _Export(model, extra)
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

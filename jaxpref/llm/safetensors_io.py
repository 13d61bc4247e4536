"""Minimal, dependency-free reader/writer for the safetensors format (never pickle).

The format is an 8-byte little-endian header length, a JSON header mapping tensor names to
``{"dtype", "shape", "data_offsets"}``, then the raw little-endian bytes. Reading memory-maps the
file, so a tensor is touched only when it is asked for; bfloat16 goes through ``ml_dtypes`` (which
the ``safetensors`` numpy backend cannot represent).

Opening a file checks its layout before any tensor is read: the header fits in the file, every
tensor's ``data_offsets`` lie inside the data and match its shape and dtype, and no two tensors
overlap (each error names the file and the tensor), so a truncated or hand-edited file is refused
instead of read as other tensors' bytes.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import struct

import ml_dtypes
import numpy as np

DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


class SafetensorsFile:
    """Lazy view of one ``.safetensors`` file: ``keys()`` and ``get(name) -> np.ndarray``."""

    def __init__(self, path: str | pathlib.Path):
        self.path = pathlib.Path(path)
        if not self.path.is_file():
            raise ValueError(f"checkpoint: missing file {self.path}")
        total = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError(f"{self.path}: {total} bytes is too short for a safetensors file")
            (size,) = struct.unpack("<Q", head)
            if 8 + size > total:
                raise ValueError(
                    f"{self.path}: header length {size} is larger than the file ({total} bytes); "
                    "the file is truncated or not safetensors"
                )
            try:
                header = json.loads(f.read(size))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise ValueError(f"{self.path}: header is not valid JSON ({err})") from None
        if not isinstance(header, dict):
            raise ValueError(f"{self.path}: header is not a JSON object")
        header.pop("__metadata__", None)
        self.header, self.offset = header, 8 + size
        _check_layout(self.path, header, total - self.offset)

    def keys(self):
        return self.header.keys()

    def get(self, name: str) -> np.ndarray:
        info = self.header[name]
        if info["dtype"] not in DTYPES:
            raise ValueError(f"{self.path}: tensor {name!r} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        dtype = np.dtype(DTYPES[info["dtype"]])
        raw = np.memmap(self.path, np.uint8, "r", offset=self.offset + start, shape=(end - start,))
        return raw.view(dtype).reshape(info["shape"])


def _check_layout(path: pathlib.Path, header: dict, data_bytes: int) -> None:
    """Every tensor's bytes inside the data section, sized by its shape, and disjoint."""
    spans = []
    for name, info in header.items():
        where = f"{path}: tensor {name!r}"
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise ValueError(f"{where}: entry needs dtype, shape and data_offsets")
        shape, offsets = info["shape"], info["data_offsets"]
        if not (isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise ValueError(f"{where}: shape {shape!r} is not a list of non-negative ints")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data_bytes
        ):
            raise ValueError(
                f"{where}: data_offsets {offsets!r} out of range (the data section holds "
                f"{data_bytes} bytes)"
            )
        if info["dtype"] in DTYPES:
            want = math.prod(shape) * np.dtype(DTYPES[info["dtype"]]).itemsize
            if offsets[1] - offsets[0] != want:
                raise ValueError(
                    f"{where}: data_offsets {offsets} span {offsets[1] - offsets[0]} bytes, but "
                    f"shape {shape} of {info['dtype']} needs {want}"
                )
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    for (_, end, first), (start, _, second) in zip(spans, spans[1:], strict=False):
        if start < end:
            raise ValueError(f"{path}: tensors {first!r} and {second!r} overlap (data_offsets)")


def save_file(tensors: dict[str, np.ndarray], path: str | pathlib.Path) -> None:
    """Write ``tensors`` (name → host array) as one safetensors file with ``format: pt``.

    The file is written under a temporary name, flushed to disk, and renamed into place, so
    ``path`` never holds a partial file."""
    header, offset, arrays = {"__metadata__": {"format": "pt"}}, 0, []
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        if arr.dtype not in NAMES:
            raise ValueError(f"{name}: dtype {arr.dtype} cannot be written to safetensors")
        header[name] = {
            "dtype": NAMES[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes
        arrays.append(arr)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(blob)) + blob)
            for arr in arrays:
                f.write(arr.tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

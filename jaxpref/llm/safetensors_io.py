"""Minimal, dependency-free reader/writer for the safetensors format (never pickle).

The format is an 8-byte little-endian header length, a JSON header mapping tensor names to
``{"dtype", "shape", "data_offsets"}``, then the raw little-endian bytes. Reading memory-maps the
file, so a tensor is touched only when it is asked for; bfloat16 goes through ``ml_dtypes`` (which
the ``safetensors`` numpy backend cannot represent).
"""

from __future__ import annotations

import json
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
        if not self.path.exists():
            raise ValueError(f"checkpoint: missing file {self.path}")
        with open(self.path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        header.pop("__metadata__", None)
        self.header, self.offset = header, 8 + size

    def keys(self):
        return self.header.keys()

    def get(self, name: str) -> np.ndarray:
        info = self.header[name]
        if info["dtype"] not in DTYPES:
            raise ValueError(f"{name}: unsupported safetensors dtype {info['dtype']}")
        start, end = info["data_offsets"]
        dtype = np.dtype(DTYPES[info["dtype"]])
        raw = np.memmap(self.path, np.uint8, "r", offset=self.offset + start, shape=(end - start,))
        return raw.view(dtype).reshape(info["shape"])


def save_file(tensors: dict[str, np.ndarray], path: str | pathlib.Path) -> None:
    """Write ``tensors`` (name → host array) as one safetensors file with ``format: pt``."""
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
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        for arr in arrays:
            f.write(arr.tobytes())

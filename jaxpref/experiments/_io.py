"""Output folders and files for experiment runs: never overwrite what a user already has."""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def new_output_dir(name: str, out: str | Path | None = None, *, overwrite: bool = False) -> Path:
    """The folder a run writes to.

    With ``out=None``, a fresh ``runs/<name>-<timestamp>`` folder under the working directory.
    A given folder may exist, but if it already holds a ``results.json`` the run refuses
    (``FileExistsError``) unless ``overwrite=True``.
    """
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path("runs") / f"{name}-{stamp}"
        k = 1
        while path.exists():
            path = Path("runs") / f"{name}-{stamp}-{k}"
            k += 1
    else:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise FileExistsError(f"out: {path} exists and is not a folder")
        if (path / "results.json").exists() and not overwrite:
            raise FileExistsError(
                f"out: {path} already holds results.json; choose another folder or pass overwrite"
            )
    path.mkdir(parents=True, exist_ok=True)
    return path


def to_jsonable(obj: Any) -> Any:
    """Arrays → lists, NumPy/JAX scalars → Python numbers, non-finite floats → None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "__array__") and not isinstance(obj, (str, bytes)):
        arr = np.asarray(obj)
        return to_jsonable(arr.tolist()) if arr.ndim else to_jsonable(arr.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return to_jsonable(float(obj))
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    path = Path(path)
    path.write_text(json.dumps(to_jsonable(obj), indent=2) + "\n")
    return path

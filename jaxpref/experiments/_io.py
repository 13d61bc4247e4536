"""Output folders and files for experiment runs: never overwrite what a user already has."""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

MARKER = ".jaxpref_run.lock"


class OutputError(ValueError):
    """The output folder cannot be used as asked (the message names the flag to change)."""


class OutputExistsError(OutputError, FileExistsError):
    """The output folder already holds results (``--overwrite`` replaces them)."""


def choose_output_dir(name: str, out: str | Path | None = None, *, overwrite: bool = False) -> Path:
    """The folder a run writes to (not created yet).

    With ``out=None``, a fresh ``runs/<name>-<timestamp>`` folder under the working directory.
    A given folder may exist, but if it already holds a ``results.json`` the run refuses
    unless ``overwrite=True``; the folder (or the nearest existing parent) must be writable.
    """
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path("runs") / f"{name}-{stamp}"
        k = 1
        while path.exists():
            path = Path("runs") / f"{name}-{stamp}-{k}"
            k += 1
    else:
        path = Path(out).expanduser()
        if path.exists() and not path.is_dir():
            raise OutputError(f"out: {path} exists and is not a folder")
        if (path / "results.json").exists() and not overwrite:
            raise OutputExistsError(
                f"out: {path} already holds results.json; choose another folder or pass --overwrite"
            )
    parent = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"out: {path} is not writable ({parent} is read-only to you)")
    return path


class OutputClaim:
    """Hold an output folder for one run: created if needed and locked with an exclusive marker
    (``fcntl.flock`` on :data:`MARKER`) before any work, so two runs cannot write one folder.

    On an exception (``KeyboardInterrupt`` included) a folder the claim created is removed
    again (the run wrote nothing finished: ``results.json`` comes last); the marker always goes.
    """

    def __init__(self, path: Path, *, overwrite: bool = False):
        self.path, self.overwrite, self.created, self._lock = path, overwrite, False, None

    def __enter__(self) -> OutputClaim:
        try:
            self.path.mkdir(parents=True)
            self.created = True
        except FileExistsError:
            pass
        except PermissionError as err:
            raise OutputError(f"out: {self.path} is not writable ({err.strerror})") from None
        self._lock = open(self.path / MARKER, "a")  # noqa: SIM115 - held for the whole run
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise OutputError(
                f"out: another jaxpref run is writing {self.path}; wait or choose another --out"
            ) from None
        if (self.path / "results.json").exists() and not self.overwrite:  # a run finished since
            self.__exit__(None, None, None)
            raise OutputExistsError(
                f"out: {self.path} already holds results.json; pass --overwrite"
            )
        return self

    def __exit__(self, kind, value, tb) -> None:
        if self._lock is not None:
            (self.path / MARKER).unlink(missing_ok=True)
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None
        if kind is not None and self.created:
            shutil.rmtree(self.path, ignore_errors=True)


def write_figures(plot, results: dict, out_dir: Path) -> list[Path]:
    """``plot(results, folder)`` into a hidden folder inside ``out_dir``, then each figure
    renamed into place: a reader never sees a half-written PNG."""
    staging = Path(tempfile.mkdtemp(prefix=".figures-", dir=out_dir))
    try:
        figures = []
        for f in plot(results, staging):
            final = out_dir / Path(f).relative_to(staging)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, final)
            figures.append(final)
        return figures
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
    """``obj`` as JSON, written under a temporary name and renamed (never a partial file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(to_jsonable(obj), indent=2) + "\n")
    os.replace(tmp, path)
    return path

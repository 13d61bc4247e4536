"""Dataset sources: local files and folders, ``save_to_disk`` folders and hub names, read through HF
``datasets``, with a line-by-line fallback so one bad JSON line never aborts a load.

:func:`load_splits` returns ``{split: rows}`` for

- a local ``.json`` / ``.jsonl`` / ``.parquet`` / ``.csv`` file (optionally ``.gz``): its
  ``train`` split, as ``datasets.load_dataset`` reads a single file;
- a folder of such files: the splits ``datasets.load_dataset`` infers from the file names
  (``train.jsonl``, ``test.jsonl``, ``validation-00000-of-00001.parquet``, …);
- a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``;
- otherwise a hub name (``"Anthropic/hh-rlhf"``), only when the hub answers: a name that looks
  like a path but does not exist fails at once ("no such file"), and with ``HF_HUB_OFFLINE=1`` or
  no network a hub name fails within seconds, saying so.

When ``datasets`` cannot parse a JSON file (a broken line, non-UTF-8 bytes, a value whose type
differs from the rest of its column), the file is read again line by line: every line that does
not parse becomes a :class:`~jaxpref.data.preferences.BadLine` row, which the pair builders report
with its line index, and the rest loads. A truncated ``.gz`` fails with the file name and how many
lines were read.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Sequence

from jaxpref.data.preferences import HH_RLHF_FILE, BadLine, PreferenceData, pairs_from_rows

BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
PATH_HINTS = ("./", "../", "/", "~")
HUB_TIMEOUT_S = 5.0

logger = logging.getLogger(__name__)


def load_splits(
    source: str | os.PathLike, *, config_name: str | None = None, cache_dir: str | None = None
) -> dict[str, Sequence[Any]]:
    """``{split name: rows}`` of a dataset source (see the module docstring).

    Rows are a ``datasets.Dataset`` (iterates as dicts) or, after the line-by-line fallback, a
    list of dicts and :class:`~jaxpref.data.preferences.BadLine` markers.
    """
    path = Path(source).expanduser()
    if path.is_file():
        return {"train": _read_file(path, cache_dir)}
    if path.is_dir():
        return _read_folder(path, cache_dir)
    text = os.fspath(source)
    if text.startswith(PATH_HINTS) or _builder(Path(text)) is not None:
        raise FileNotFoundError(f"dataset_name: no such file or directory: {text!r}")
    return _read_hub(text, config_name, cache_dir)


def _builder(path: Path) -> str | None:
    suffixes = path.suffixes[-2:] if path.suffix == ".gz" else path.suffixes[-1:]
    return BUILDERS.get(suffixes[0]) if suffixes else None


@contextlib.contextmanager
def _quiet():
    """No progress bars or info logs from ``datasets`` (they are not the user's business)."""
    import datasets

    bars, level = not datasets.are_progress_bars_disabled(), datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(logging.CRITICAL)  # a failed parse is reported by us
    try:
        yield datasets
    finally:
        datasets.logging.set_verbosity(level)
        if bars:
            datasets.enable_progress_bars()


def _read_file(path: Path, cache_dir: str | None) -> Sequence[Any]:
    builder = _builder(path)
    if builder is None:
        known = ", ".join(sorted(BUILDERS))
        raise ValueError(f"dataset_name: unsupported file type {path.name!r} (known: {known})")
    with _quiet() as datasets:
        try:
            return datasets.load_dataset(
                builder, data_files=str(path), split="train", cache_dir=cache_dir
            )
        except Exception as err:  # noqa: BLE001 - any parse failure: fall back for JSON
            if builder != "json":
                raise ValueError(f"dataset_name: cannot read {path}: {err}") from err
            logger.warning("datasets could not parse %s (%s); reading it line by line", path, err)
    return read_json_lines(path)


def read_json_lines(path: Path) -> list[Any]:
    """Every line of a JSON-lines file (or a JSON array file) as a dict or a ``BadLine``."""
    opener = gzip.open if path.suffix == ".gz" else open
    rows: list[Any] = []
    try:
        with opener(path, "rb") as f:
            for raw in f:
                rows.append(_parse_line(raw))
    except (EOFError, gzip.BadGzipFile, OSError) as err:
        raise ValueError(
            f"dataset_name: {path} is truncated or corrupt after {len(rows)} lines ({err})"
        ) from err
    if len(rows) == 1 and isinstance(rows[0], list):  # a one-line JSON array file
        rows = [r if isinstance(r, dict) else BadLine("not a JSON object") for r in rows[0]]
    return [r for r in rows if r is not _BLANK]


_BLANK = object()


def _parse_line(raw: bytes) -> Any:
    if not raw.strip():
        return _BLANK
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return BadLine(f"not UTF-8 ({err.reason} at byte {err.start})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        return BadLine(f"not JSON ({err.msg} at column {err.colno})")


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").exists() or (path / "state.json").exists()


def _read_folder(path: Path, cache_dir: str | None) -> dict[str, Sequence[Any]]:
    with _quiet() as datasets:
        if _is_saved_dataset(path):
            loaded = datasets.load_from_disk(str(path))
            return dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
        try:
            return dict(datasets.load_dataset(str(path), cache_dir=cache_dir))
        except Exception as err:  # noqa: BLE001 - fall back to our reader for JSON files
            files = sorted(p for p in path.iterdir() if _builder(p) == "json")
            if not files:
                raise ValueError(f"dataset_name: cannot read the folder {path}: {err}") from err
            logger.warning("datasets could not read %s (%s); reading its JSON files", path, err)
    splits: dict[str, list[Any]] = {}
    for file in files:
        splits.setdefault(_split_name(file), []).extend(read_json_lines(file))
    return splits


def _split_name(file: Path) -> str:
    """``train.jsonl`` / ``test-00000-of-00001.json`` → the split its name starts with."""
    stem = file.name.split(".")[0]
    return stem.split("-")[0]


def _read_hub(name: str, config_name: str | None, cache_dir: str | None):
    check_hub_reachable(name)
    with _quiet() as datasets:
        return dict(datasets.load_dataset(name, config_name, cache_dir=cache_dir))


def check_hub_reachable(name: str, *, timeout: float = HUB_TIMEOUT_S) -> None:
    """Fail fast, naming the reason, when the Hugging Face Hub cannot answer for ``name``."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "false", "no", ""):
        raise ConnectionError(
            f"dataset_name: {name!r} is not a local path, and HF_HUB_OFFLINE is set, so the hub "
            "is not asked; pass a local file or folder"
        )
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    url = f"{endpoint}/api/datasets/{urllib.parse.quote(name, safe='/')}"
    outcome: dict[str, Any] = {}

    def probe():
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, method="HEAD"), timeout=timeout
            ):
                outcome["ok"] = True
        except urllib.error.HTTPError as err:  # the hub answered: let datasets report it
            outcome["ok"] = err.code < 500
        except Exception as err:  # noqa: BLE001 - DNS, refused, timeout
            outcome["error"] = err

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)  # DNS lookups ignore the socket timeout; the join does not
    if not outcome.get("ok"):
        why = outcome.get("error", f"no answer within {timeout:.0f} s")
        raise ConnectionError(
            f"dataset_name: {name!r} is not a local path and the hub at {endpoint} cannot be "
            f"reached ({why}); pass a local file or folder, or go online"
        )


def split_rows(splits: dict[str, Sequence[Any]], split: str, *, source: Any) -> Sequence[Any]:
    """One split of :func:`load_splits`' result, or an error naming the splits there are."""
    if split not in splits:
        have = ", ".join(map(repr, sorted(splits))) or "none"
        raise ValueError(f"split: {source} has no split {split!r} (it has {have})")
    return splits[split]


def load_preference_dataset(
    source: str | os.PathLike,
    *,
    split: str = "train",
    config_name: str | None = None,
    chosen_key: str = "chosen",
    rejected_key: str = "rejected",
    prompt_key: str | None = "prompt",
    drop_duplicates: bool = False,
    cache_dir: str | None = None,
) -> PreferenceData:
    """Preference pairs of one split of a source (file, folder, saved dataset or hub name).

    Args:
      source: see :func:`load_splits` (a single local file is its ``"train"`` split).
      split: the split to read.
      config_name: the hub dataset's configuration, if it has several.
      chosen_key, rejected_key, prompt_key: column names (see
        :func:`jaxpref.data.preferences.pairs_from_rows`).
      drop_duplicates: drop exact duplicate pairs (reported either way).

    Returns:
      :class:`~jaxpref.data.preferences.PreferenceData` with the valid pairs and a report of the
      malformed and duplicate rows.
    """
    splits = load_splits(source, config_name=config_name, cache_dir=cache_dir)
    rows = split_rows(splits, split, source=source)
    return pairs_from_rows(
        rows,
        chosen_key=chosen_key,
        rejected_key=rejected_key,
        prompt_key=prompt_key,
        drop_duplicates=drop_duplicates,
    )


def load_hh_rlhf(*, cache_dir: str | None = None) -> PreferenceData:
    """The HH-RLHF harmless-base test split shipped with jaxpref (2,312 rows, MIT licence)."""
    return load_preference_dataset(HH_RLHF_FILE, cache_dir=cache_dir)

"""Atomic replacement of the model files of a HF directory (used by ``save_pretrained``).

A save is written whole into a temporary folder beside the target and then made visible at once:

- a new or empty target: one ``rename`` of the folder;
- a target holding only files (an earlier checkpoint, a tokenizer, a README): the files that are
  not the old checkpoint's are hard-linked into the new folder, and the two folders are swapped
  with one ``renameat2(RENAME_EXCHANGE)`` (Linux); where that call does not exist, two renames,
  between which the folder is briefly absent (a load fails loudly, never mixes);
- a target that also holds sub-folders (a training run folder with its checkpoints): the files
  are moved in one by one under a marker file (:data:`SAVING`), the old ``config.json`` removed
  first and the new one moved in last; a process killed in between leaves the marker, and
  ``from_pretrained`` refuses the folder instead of reading a mix of two saves.

In every case the old checkpoint's stale files (an index, extra shards) are gone afterwards.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pathlib
import re
import shutil
import tempfile

SAVING = ".jaxpref_saving"
MODEL_FILE = re.compile(
    r"^(config\.json|generation_config\.json|model\.safetensors(\.index\.json)?"
    r"|model-\d+-of-\d+\.safetensors)$"
)
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def model_files(path: pathlib.Path) -> list[str]:
    """Names of the checkpoint files (config, weights, index, generation defaults) in ``path``."""
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.iterdir() if MODEL_FILE.match(p.name) or p.name == SAVING)


def check_target(path: pathlib.Path, overwrite: bool) -> None:
    """Refuse a target that is a file, or that holds a checkpoint unless ``overwrite``."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"path: {path} is a file, not a folder")
    existing = model_files(path)
    if existing and not overwrite:
        raise FileExistsError(
            f"path: {path} already holds a checkpoint ({', '.join(existing[:3])}); pass "
            "overwrite=True to replace it"
        )
    parent = next((p for p in (path, *path.parents) if p.exists()), None)
    if parent is None or not os.access(parent, os.W_OK):
        raise PermissionError(f"path: {path} is not writable")


def staging_dir(path: pathlib.Path) -> pathlib.Path:
    """A fresh hidden folder beside ``path`` (same file system, so renames are atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.saving-", dir=path.parent))


def commit(staged: pathlib.Path, path: pathlib.Path) -> None:
    """Make the checkpoint in ``staged`` the one at ``path`` (see the module docstring)."""
    if not path.exists() or not any(path.iterdir()):
        os.replace(staged, path)  # replaces an empty folder too
        return
    entries = list(path.iterdir())
    if all(p.is_file() and not p.is_symlink() for p in entries):
        for p in entries:
            if not MODEL_FILE.match(p.name) and p.name != SAVING:
                _link(p, staged / p.name)
        if _exchange(staged, path):
            shutil.rmtree(staged)  # now the old folder
            return
        old = staged.with_name(staged.name + "-old")
        os.replace(path, old)
        os.replace(staged, path)
        shutil.rmtree(old)
        return
    _commit_in_place(staged, path)


def _commit_in_place(staged: pathlib.Path, path: pathlib.Path) -> None:
    marker = path / SAVING
    marker.write_text("an interrupted save_pretrained; save the model again\n")
    (path / "config.json").unlink(missing_ok=True)  # the folder stops loading first
    for name in model_files(path):
        if name != SAVING:
            (path / name).unlink()
    new = sorted(p.name for p in staged.iterdir())
    for name in [n for n in new if n != "config.json"] + ["config.json"]:
        os.replace(staged / name, path / name)
    marker.unlink()
    staged.rmdir()


def _link(src: pathlib.Path, dst: pathlib.Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _exchange(a: pathlib.Path, b: pathlib.Path) -> bool:
    """Swap two folders atomically; False where the system has no ``renameat2``."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    fa, fb = os.fsencode(a), os.fsencode(b)
    if renameat2(_AT_FDCWD, fa, _AT_FDCWD, fb, _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))

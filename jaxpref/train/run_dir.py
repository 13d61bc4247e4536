"""The run folder (``--output_dir``): claimed before any work, never silently reused.

A folder is a jaxpref run when it holds ``jaxpref_run.json`` (the resolved config). A new run
needs an empty or absent folder; a folder holding a run is refused unless ``--resume`` (same
config, continue from the last checkpoint) or ``--overwrite`` (remove that run's files — only the
files a run writes — and start again); a non-empty folder that is not a run is always refused. An
exclusive lock (``fcntl.flock`` on ``.jaxpref.lock``) keeps two runs from writing one folder.
If the run fails before its first checkpoint, what it created is removed again.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import shutil
from typing import Any

from jaxpref.train.config import RESUMABLE_CHANGES, TrainConfig

MARKER = "jaxpref_run.json"
LOCK = ".jaxpref.lock"
RUN_FILES = (
    MARKER,
    "metrics.jsonl",
    "data_report.json",
    "checkpoints",
    "tensorboard",
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "generation_config.json",
    "adapters",
    "critic",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)


class RunDirError(ValueError):
    """The output folder cannot be used as asked (the message names the flag to change)."""


class RunDir:
    """Claim ``config.output_dir`` for ``recipe``; use as a context manager."""

    def __init__(self, config: TrainConfig, recipe: str):
        self.path = pathlib.Path(config.output_dir).expanduser()
        self.config, self.recipe = config, recipe
        self.created = False
        self._lock = None

    def __enter__(self) -> RunDir:
        self._check_parent()
        self.created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / LOCK, "a")  # noqa: SIM115 - held for the whole run
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            self._lock.close()
            raise RunDirError(
                f"output_dir: another jaxpref run is using {self.path}; wait or choose another"
            ) from err
        try:
            self._claim()
        except BaseException:
            self._release()
            raise
        return self

    def _check_parent(self) -> None:
        parent = next((p for p in (self.path, *self.path.parents) if p.exists()), None)
        target = self.path if self.path.exists() else parent
        if target is None or not os.access(target, os.W_OK):
            raise RunDirError(f"output_dir: {self.path} is not writable")

    def _claim(self) -> None:
        marker = self.path / MARKER
        others = [p.name for p in self.path.iterdir() if p.name not in (LOCK, MARKER)]
        if not marker.exists():
            if others and not self.config.resume:
                raise RunDirError(
                    f"output_dir: {self.path} holds files that are not a jaxpref run "
                    f"({', '.join(sorted(others)[:3])}…); choose an empty or new folder"
                )
            if self.config.resume:
                raise RunDirError(f"resume: {self.path} holds no jaxpref run to resume")
            self._write_marker()
            return
        previous = json.loads(marker.read_text())
        if self.config.overwrite:
            self._remove_run_files()
            self._write_marker()
        elif self.config.resume:
            self._check_same(previous)
        else:
            raise RunDirError(
                f"output_dir: {self.path} holds another run ({previous.get('recipe')}); "
                "pass --resume to continue it or --overwrite to replace it"
            )

    def _check_same(self, previous: dict[str, Any]) -> None:
        if previous.get("recipe") != self.recipe:
            raise RunDirError(
                f"resume: {self.path} holds a {previous.get('recipe')} run, not {self.recipe}"
            )
        now = self.config.to_dict()
        changed = sorted(
            k
            for k in set(now) | set(previous["config"])
            if k not in RESUMABLE_CHANGES and now.get(k) != previous["config"].get(k)
        )
        if changed:
            listed = ", ".join(
                f"{k}={previous['config'].get(k)!r}→{now.get(k)!r}" for k in changed[:3]
            )
            raise RunDirError(
                f"resume: the command differs from the run's ({listed}); resume with the same "
                "options or use --overwrite"
            )

    def _write_marker(self) -> None:
        import jaxpref

        body = {
            "recipe": self.recipe,
            "jaxpref": jaxpref.__version__,
            "config": self.config.to_dict(),
        }
        write_json_atomic(self.path / MARKER, body)

    def _remove_run_files(self) -> None:
        for name in RUN_FILES:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()

    def discard(self) -> None:
        """Undo a run that stopped before its first checkpoint (later, everything is kept)."""
        if self.config.resume or any((self.path / "checkpoints").glob("[0-9]*")):
            return
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for name in (MARKER, "metrics.jsonl", "data_report.json", "tensorboard", "checkpoints"):
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)

    def _release(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None
            (self.path / LOCK).unlink(missing_ok=True)

    def __exit__(self, kind, value, tb) -> None:
        try:
            if kind is not None:
                self.discard()
        finally:
            self._release()


def write_json_atomic(path: pathlib.Path, body: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


class claim:  # noqa: N801 - used like a function: ``with claim(config, recipe) as run``
    """:class:`RunDir` on process 0; in a multi-host run the other processes wait for its claim
    (a refusal there is raised on every process) and then use the same folder, which must be on
    a filesystem every host shares."""

    def __init__(self, config: TrainConfig, recipe: str):
        self.run = RunDir(config, recipe)

    def __enter__(self) -> RunDir:
        import jax

        from jaxpref.llm import distributed

        self.lead = jax.process_index() == 0
        distributed.everywhere(self.run.__enter__ if self.lead else lambda: None)
        return self.run

    def __exit__(self, kind, value, tb) -> None:
        if self.lead:
            self.run.__exit__(kind, value, tb)

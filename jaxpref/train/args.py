"""Command-line flags from the config dataclasses, a YAML file under them, flags winning.

``--help`` lists every field with its default. Booleans take ``--flag`` (true), ``--flag true`` or
``--flag false``; tuples take comma-separated values; ``None`` is spelled ``none``.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import types
import typing
from typing import Any

from jaxpref.train.config import TrainConfig


def _base_type(annotation) -> tuple[Any, bool]:
    """``(scalar type or tuple marker, optional)`` of a field annotation."""
    hint = annotation
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is tuple:
        return ("tuple", typing.get_args(hint)[0]), optional
    return hint, optional


def _parser_for(kind, optional: bool, name: str):
    def parse(text: str):
        if optional and text.lower() in ("none", "null", ""):
            return None
        if kind is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
        if isinstance(kind, tuple):
            return tuple(kind[1](v.strip()) for v in text.split(",") if v.strip())
        return kind(text)

    parse.__name__ = name  # argparse names the type in "invalid <name> value"
    return parse


def _hints(config_cls) -> dict[str, Any]:
    import jaxpref.train.config as module

    return typing.get_type_hints(config_cls, vars(module) | {"types": types})


def add_config_flags(parser: argparse.ArgumentParser, config_cls: type[TrainConfig]) -> None:
    """One ``--name`` flag per field, defaults suppressed (so given flags are known)."""
    hints = _hints(config_cls)
    parser.add_argument(
        "--config", metavar="FILE.yaml", help="YAML file of options; flags given here win"
    )
    for f in dataclasses.fields(config_cls):
        kind, optional = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        meta = dict(f.metadata)
        help_text = meta.get("help", "")
        if "choices" in meta:
            help_text += f" {{{', '.join(meta['choices'])}}}"
        suffix = " (required)" if meta.get("required") else f" (default: {shown})"
        kwargs: dict[str, Any] = dict(
            type=_parser_for(kind, optional, getattr(kind, "__name__", "list")),
            default=argparse.SUPPRESS,
            help=help_text + suffix,
            metavar=f.name.upper() if kind is not bool else "BOOL",
        )
        if kind is bool:
            kwargs.update(nargs="?", const=True)
        parser.add_argument(f"--{f.name}", **kwargs)


def config_from_args(config_cls: type[TrainConfig], namespace: argparse.Namespace) -> TrainConfig:
    """Defaults < YAML file (``--config``) < flags given on the command line."""
    values = dict(vars(namespace))
    file = values.pop("config", None)
    for key in ("recipe", "command", "func"):
        values.pop(key, None)
    merged = {**(load_yaml(file, config_cls) if file else {}), **values}
    return config_cls(**merged)


def load_yaml(path: str, config_cls: type[TrainConfig]) -> dict[str, Any]:
    """Options of a YAML file, unknown keys refused, lists turned into tuples."""
    import yaml

    file = pathlib.Path(path)
    if not file.is_file():
        raise ValueError(f"config: no such file {path!r}")
    data = yaml.safe_load(file.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config: {path} must hold a mapping of option: value")
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"config: unknown option(s) {', '.join(unknown)} in {path}")
    hints = _hints(config_cls)
    out = {}
    for key, value in data.items():
        kind, _ = _base_type(hints[key])
        if isinstance(kind, tuple) and isinstance(value, str):
            value = _parser_for(kind, True, key)(value)
        elif isinstance(kind, tuple) and isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return out

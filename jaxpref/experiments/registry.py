"""The experiment registry: one typed record per experiment, which the ``jaxpref`` command and
``experiments/*/main.py`` read instead of importing modules by name.

An :class:`Experiment` is cheap to hold (a name, a one-line description and the module path);
:meth:`Experiment.load` imports the runner module on first use and returns a :class:`Runner`,
the typed interface every runner provides, checked when it is built:

- ``config(scale) -> Config``: a frozen dataclass for ``scale`` in :data:`SCALES`;
- ``num_units(cfg) -> int``: how many progress steps ``run`` reports;
- ``run(cfg, *, progress=None[, work_dir=None]) -> dict``: JSON-ready results;
- ``plot(results, out_dir) -> list[Path]`` and ``table(results) -> str``.

Importing this module imports no runner (so ``jaxpref --help`` stays fast).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pathlib
from collections.abc import Callable
from typing import Any

SCALES = ("test", "quickstart", "small", "full")
"""The run sizes every runner's ``config`` accepts: ``"test"`` for the test suite,
``"quickstart"``/``"small"`` for minutes on a CPU, ``"full"`` for the README's figure."""

Progress = Callable[[int], Any]
"""``progress(n_done)``: advances a bar by ``n_done`` units."""


def scale_configs(base, **overrides: dict) -> Callable[[str], Any]:
    """A runner's ``config(scale)``: the frozen dataclass ``base`` with
    ``dataclasses.replace(base, **overrides[scale])`` for each scale of :data:`SCALES` (scales
    without overrides get ``base``); a ``ValueError`` naming ``scale`` for any other."""
    unknown = set(overrides) - set(SCALES)
    if unknown:
        raise ValueError(f"overrides: unknown scales {sorted(unknown)}; scales are {SCALES}")
    configs = {s: dataclasses.replace(base, **overrides.get(s, {})) for s in SCALES}

    def config(scale: str):
        if scale not in configs:
            raise ValueError(f"scale: must be one of {SCALES}, got {scale!r}")
        return configs[scale]

    return config


@dataclasses.dataclass(frozen=True)
class Runner:
    """The interface of one runner module (see the module docstring).

    ``takes_work_dir``: whether ``run`` accepts ``work_dir`` (a folder for intermediate files,
    e.g. the LLM experiments' checkpoints); :meth:`execute` passes it only then.
    """

    config: Callable[[str], Any]
    num_units: Callable[[Any], int]
    run: Callable[..., dict]
    plot: Callable[[dict, pathlib.Path], list[pathlib.Path]]
    table: Callable[[dict], str]
    takes_work_dir: bool = False

    @classmethod
    def from_module(cls, module, name: str = "") -> Runner:
        """The runner of ``module``; a clear error naming the missing or wrong attribute."""
        label = name or getattr(module, "__name__", repr(module))
        fns = {}
        for attr in ("config", "num_units", "run", "plot", "table"):
            fn = getattr(module, attr, None)
            if not callable(fn):
                raise TypeError(f"experiment {label!r}: the runner has no callable {attr!r}")
            fns[attr] = fn
        params = inspect.signature(fns["run"]).parameters
        if "progress" not in params:
            raise TypeError(f"experiment {label!r}: run(cfg, *, progress=...) takes no progress")
        return cls(**fns, takes_work_dir="work_dir" in params)

    def execute(self, cfg, *, progress: Progress | None = None, work_dir=None) -> dict:
        """``run(cfg, progress=progress)``, with ``work_dir`` when the runner takes one."""
        extra = {"work_dir": work_dir} if self.takes_work_dir else {}
        results = self.run(cfg, progress=progress, **extra)
        if not isinstance(results, dict):
            raise TypeError(f"run returned {type(results).__name__}, not a dict of results")
        return results


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One registered experiment: ``name`` (the ``jaxpref run`` argument), a one-line
    ``description`` (``jaxpref list``) and ``module``, the dotted path of its runner, imported
    only by :meth:`load`."""

    name: str
    description: str
    module: str

    def load(self) -> Runner:
        """Import the runner module and return its checked :class:`Runner`."""
        return Runner.from_module(importlib.import_module(self.module), self.name)


def _entry(name: str, description: str) -> Experiment:
    return Experiment(name, description, f"jaxpref.experiments.{name}")


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        _entry(
            "activedpo",
            "ActiveDPO vs ADPO+, APO, APLP, uniform: reward vs labelled pairs (arXiv 2505.19241)",
        ),
        _entry(
            "logit_error",
            "ADPO/ADPO+ vs baselines: max logit error vs budget n (arXiv 2503.01076 §6.1)",
        ),
        _entry(
            "pm_rlhf",
            "KL-RLHF vs (conditional) PM RLHF on an enumerable toy language (arXiv 2405.16455)",
        ),
        _entry(
            "pbpo",
            "PbPO regret vs K, d, H on linear dueling bandits / token MDPs (arXiv 2511.12867)",
        ),
        _entry(
            "robust_sail",
            "robust vs nominal SAIL under a misspecified oracle (arXiv 2602.20457)",
        ),
        _entry(
            "pm_rlhf_llm",
            "KL-RLHF vs PM and conditional PM RLHF with PPO on HH-RLHF (arXiv 2405.16455, Table 2)",
        ),
        _entry(
            "hh_pipeline",
            "SFT -> reward model -> DPO on the shipped HH-RLHF split with a small Llama",
        ),
        _entry(
            "adpo_llm",
            "ADPO/ADPO+ vs baselines on small-Llama features of HH-RLHF pairs "
            "(arXiv 2503.01076 §6.2)",
        ),
        _entry(
            "robust_sail_llm",
            "robust vs nominal online DPO on a small Llama with a noisy reward-model oracle",
        ),
        _entry(
            "pbpo_llm",
            "PbPO vs uniform exploration, greedy and online DPO on a small Llama "
            "(arXiv 2511.12867)",
        ),
    )
}
"""Every experiment, in the order ``jaxpref list`` prints them."""


def get(name: str) -> Experiment:
    """The registered experiment ``name``; a ``KeyError`` naming the known ones otherwise."""
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise KeyError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}") from None

"""Experiment runners: the protocols behind `experiments/*/` and the `jaxpref` command.

Each runner module here provides the typed interface of :class:`registry.Runner` (``config``,
``num_units``, ``run``, ``plot``, ``table``); :data:`registry.EXPERIMENTS` names them, and the CLI
reads only the registry (see :mod:`jaxpref.experiments.registry`).
"""

from jaxpref.experiments.registry import EXPERIMENTS, SCALES, Experiment, Runner

__all__ = ["EXPERIMENTS", "SCALES", "Experiment", "Runner"]

"""Experiment runners: the protocols behind `experiments/*/` and the `jaxpref` command.

Each module here exposes the same small interface, which the CLI drives:

- ``config(scale: str) -> Config``: a frozen dataclass for ``scale`` in ``SCALES``
  (``"test"`` for the test suite, ``"quickstart"``/``"small"`` for minutes on a CPU, ``"full"``
  for the figure in the experiment's README);
- ``num_units(cfg) -> int``: how many progress steps ``run`` reports (for the bar);
- ``run(cfg, *, progress=None) -> dict``: runs the protocol and returns JSON-ready results
  (``progress`` is a callable ``progress(n_done)`` advancing a bar, or ``None``);
- ``plot(results, out_dir) -> list[Path]``: writes PNG figures;
- ``table(results) -> str``: a plain-text summary table.
"""

SCALES = ("test", "quickstart", "small", "full")

"""The ``jaxpref`` command: run an experiment with a progress bar, print a table, write results."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from jaxpref.experiments import SCALES

# name -> (module, one-line description)
EXPERIMENTS = {
    "logit_error": (
        "jaxpref.experiments.logit_error",
        "ADPO/ADPO+ vs baselines: max logit error vs budget n (arXiv 2503.01076 §6.1)",
    ),
    "pm_rlhf": (
        "jaxpref.experiments.pm_rlhf",
        "KL-RLHF vs (conditional) PM RLHF on an enumerable toy language (arXiv 2405.16455)",
    ),
    "pbpo": (
        "jaxpref.experiments.pbpo",
        "PbPO regret vs K, d, H on linear dueling bandits / token MDPs (arXiv 2511.12867)",
    ),
    "robust_sail": (
        "jaxpref.experiments.robust_sail",
        "robust vs nominal SAIL under a misspecified oracle (arXiv 2602.20457)",
    ),
}


def _load(name: str):
    if name not in EXPERIMENTS:
        raise SystemExit(f"jaxpref: unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    try:
        return importlib.import_module(EXPERIMENTS[name][0])
    except ModuleNotFoundError as err:
        raise SystemExit(f"jaxpref: experiment {name!r} is not available ({err})") from err


def run_experiment(name: str, scale: str, out=None, *, overwrite: bool = False, quiet=False):
    """Run one experiment end to end; returns (results, output folder)."""
    from tqdm.auto import tqdm

    from jaxpref.experiments import _io

    module = _load(name)
    cfg = module.config(scale)
    out_dir = _io.new_output_dir(name, out, overwrite=overwrite)
    t0 = time.perf_counter()
    with tqdm(
        total=module.num_units(cfg),
        desc=f"{name} [{scale}]",
        disable=quiet,
        unit="run",
        file=sys.stderr,
    ) as bar:
        results = module.run(cfg, progress=bar.update)
    results.setdefault("meta", {}).update(
        experiment=name, scale=scale, wall_seconds=round(time.perf_counter() - t0, 2)
    )
    _io.write_json(out_dir / "results.json", results)
    figures = module.plot(results, out_dir)
    if not quiet:
        print(module.table(results))
        print(f"\nwrote {out_dir / 'results.json'}")
        for f in figures:
            print(f"wrote {f}")
    return results, out_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="jaxpref", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser(
        "quickstart", help="the logit-error experiment at small scale on CPU (<3 min)"
    )
    q.add_argument("--out", help="output folder (default: a new runs/logit_error-<time> folder)")
    q.add_argument("--overwrite", action="store_true", help="replace results in an existing --out")
    r = sub.add_parser("run", help="run one experiment")
    r.add_argument("name", choices=sorted(EXPERIMENTS))
    r.add_argument("--scale", choices=SCALES, default="small")
    r.add_argument("--out")
    r.add_argument("--overwrite", action="store_true")
    sub.add_parser("list", help="list the experiments")
    args = parser.parse_args(argv)

    if args.command == "list":
        for name, (_, desc) in EXPERIMENTS.items():
            print(f"{name:14s} {desc}")
        return 0
    if args.command == "quickstart":
        run_experiment("logit_error", "quickstart", args.out, overwrite=args.overwrite)
        return 0
    run_experiment(args.name, args.scale, args.out, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``jaxpref`` command: run an experiment with a progress bar, print a table, write results;
train a language model with ``jaxpref train {sft,reward,dpo}`` (TRL's flag names)."""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

from jaxpref.experiments.registry import EXPERIMENTS, SCALES, Runner


def _load(name: str) -> Runner:
    if name not in EXPERIMENTS:
        raise SystemExit(f"jaxpref: unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    try:
        return EXPERIMENTS[name].load()
    except ModuleNotFoundError as err:
        raise SystemExit(f"jaxpref: experiment {name!r} is not available ({err})") from err


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during ``jaxpref run``; the message says how far it got."""


def run_experiment(
    name: str, scale: str, out=None, *, overwrite: bool = False, quiet=False, overrides=None
):
    """Run one experiment end to end; returns (results, output folder). ``overrides``: config
    fields to replace in the scale's config.

    The output folder is chosen, checked writable and claimed before any work; figures and then
    ``results.json`` are written atomically at the end. A Ctrl-C raises :class:`Interrupted`
    ("interrupted after N of M runs; nothing written") and removes a folder the run created.
    """
    from tqdm.auto import tqdm

    from jaxpref.experiments import _io, _meta

    runner = _load(name)
    cfg = runner.config(scale)
    if overrides:
        import dataclasses

        cfg = dataclasses.replace(cfg, **overrides)
    out_dir = _io.choose_output_dir(name, out, overwrite=overwrite)
    t0 = time.perf_counter()
    with _io.OutputClaim(out_dir, overwrite=overwrite):
        bar = tqdm(
            total=runner.num_units(cfg),
            desc=f"{name} [{scale}]",
            disable=quiet,
            unit="run",
            file=sys.stderr,
        )
        try:
            with bar:
                results = runner.execute(cfg, progress=bar.update, work_dir=out_dir)
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted after {bar.n} of {bar.total} runs; nothing written"
            ) from None
        results.setdefault("meta", {}).update(
            _meta.run_metadata(name, scale, cfg), wall_seconds=round(time.perf_counter() - t0, 2)
        )
        figures = _io.write_figures(runner.plot, results, out_dir)
        _io.write_json(out_dir / "results.json", results)
    if not quiet:
        print(runner.table(results))
        print(f"\nwrote {out_dir / 'results.json'}")
        for f in figures:
            print(f"wrote {f}")
    return results, out_dir


SCALE_HELP = (
    "how big a run (default: small): test (seconds; what the test suite runs), quickstart "
    "(about 1-2 min), small (seen on a 2-core CPU: 21 s for pm_rlhf to 8.5 min for pbpo; the "
    "LLM experiments longer), full (the figure of the experiment's README: 3 min and more). "
    "The wall times seen are in experiments/*/README.md"
)


def _add_run_flags(parser) -> None:
    parser.add_argument("--scale", choices=SCALES, default="small", help=SCALE_HELP)
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="output folder for results.json and the figures (default: a new "
        "runs/<experiment>-<time> folder); refused if it already holds results.json",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the results in an existing --out"
    )


def _run(prog: str, name: str, scale: str, out, overwrite: bool) -> int:
    """The run path: one line on stderr for a refused folder (exit 1) or a Ctrl-C (exit 130)."""
    from jaxpref.experiments._io import OutputError

    try:
        run_experiment(name, scale, out, overwrite=overwrite)
    except Interrupted as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 130
    except OutputError as err:
        return _fail(prog, f"--{err}", 1)
    except OSError as err:  # the disk filled or a folder vanished while writing
        return _fail(prog, f"--out: cannot write results ({err})", 1)
    return 0


def experiment_main(name: str, argv=None) -> int:
    """``experiments/<name>/main.py``: the flags of ``jaxpref run <name>`` under the script's
    own name."""
    prog = pathlib.Path(sys.argv[0]).as_posix() if sys.argv[0] else f"{name}/main.py"
    parser = argparse.ArgumentParser(
        prog=f"python {prog}",
        description=f"{EXPERIMENTS[name].description} (the same as `jaxpref run {name}`)",
    )
    _add_run_flags(parser)
    args = parser.parse_args(argv)
    return _run(f"python {prog}", name, args.scale, args.out, args.overwrite)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="jaxpref", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser(
        "quickstart", help="the logit-error experiment at small scale on CPU (<3 min)"
    )
    q.add_argument("--out", help="output folder (default: a new runs/logit_error-<time> folder)")
    q.add_argument("--overwrite", action="store_true", help="replace results in an existing --out")
    r = sub.add_parser(
        "run",
        help="run one experiment",
        description="Run one experiment: a progress bar on stderr, a table on stdout, "
        "results.json and figures in --out.",
    )
    r.add_argument("name", choices=sorted(EXPERIMENTS), help="the experiment (see `jaxpref list`)")
    _add_run_flags(r)
    sub.add_parser("list", help="list the experiments")
    recipe_parsers = _add_train(sub)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if getattr(args, "command", None) == "train":
            _unknown_flags(recipe_parsers[args.recipe], unknown)
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "train":
        return _train(args)

    if args.command == "list":
        width = max(map(len, EXPERIMENTS))
        for name, experiment in EXPERIMENTS.items():
            print(f"{name:{width}s}  {experiment.description}")
        return 0
    if args.command == "quickstart":
        return _run("jaxpref quickstart", "logit_error", "quickstart", args.out, args.overwrite)
    return _run(f"jaxpref run {args.name}", args.name, args.scale, args.out, args.overwrite)


TRAIN_HELP = {
    "sft": "supervised fine-tuning on completions (TRL's `trl sft`)",
    "reward": "a Bradley-Terry reward model with a scalar head (TRL's `trl reward`)",
    "dpo": "offline DPO and its loss family against a frozen reference (TRL's `trl dpo`)",
    "rlhf": "PPO or RLOO against a reward model with the KL, PM or conditional-PM penalty",
    "online-dpo": "online DPO: fresh pairs from the policy each step, labelled by a reward model",
    "active-dpo": "ActiveDPO's rounds: generate, select pairs (--selector), label, DPO-train",
    "pbpo": "PbPO: a confidence set of linear rewards on frozen features, reward-agnostic "
    "exploration and a pessimistic policy step by RLOO (arXiv 2511.12867)",
}


def _add_train(sub) -> dict:
    from jaxpref.train.args import add_config_flags
    from jaxpref.train.config import RECIPE_CONFIGS

    parsers = {}
    t = sub.add_parser(
        "train",
        help="train a language model: sft, reward, dpo, rlhf, online-dpo, active-dpo or pbpo",
    )
    recipes = t.add_subparsers(
        dest="recipe", required=True, metavar="{sft,reward,dpo,rlhf,online-dpo,active-dpo,pbpo}"
    )
    for name, cls in RECIPE_CONFIGS.items():
        p = recipes.add_parser(
            name,
            help=TRAIN_HELP[name],
            description=f"{TRAIN_HELP[name]}. Options may also come from --config FILE.yaml "
            "(keys are the option names); flags given on the command line win.",
            usage=f"jaxpref train {name} --model_name_or_path DIR --dataset_name PATH "
            + (
                "--reward_model_path DIR "
                if name in ("rlhf", "online-dpo", "active-dpo", "pbpo")
                else ""
            )
            + "--output_dir DIR [options]",
        )
        add_config_flags(p, cls)
        _add_launch_flags(p)
        parsers[name] = p
    return parsers


LAUNCH_FLAGS = ("coordinator_address", "num_processes", "process_id")


def _add_launch_flags(p) -> None:
    """Multi-host launch: the same command on every host (see README, "Multi-host training")."""
    g = p.add_argument_group("multi-host launch (default: JAXPREF_* variables or auto-detect)")
    g.add_argument("--coordinator_address", metavar="HOST:PORT", help="process 0's address")
    g.add_argument("--num_processes", type=int, metavar="N", help="processes in the run")
    g.add_argument("--process_id", type=int, metavar="I", help="this process, 0..N-1")


def _unknown_flags(parser, unknown: list[str]) -> None:
    """One line naming the unknown flag and the closest known one (exit 2)."""
    import difflib

    known = [a for action in parser._actions for a in action.option_strings]
    flag = next((u.split("=")[0] for u in unknown if u.startswith("--")), unknown[0])
    close = difflib.get_close_matches(flag, known, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    parser.error(f"unknown option {flag}{hint} (see --help)")


def _train(args) -> int:
    """Build the config (bad options: exit 2) and train (failures: exit 1), one line each."""
    from jaxpref.train.args import config_from_args
    from jaxpref.train.config import RECIPE_CONFIGS

    prog = f"jaxpref train {args.recipe}"
    cls = RECIPE_CONFIGS[args.recipe]
    launch = {k: vars(args).pop(k, None) for k in LAUNCH_FLAGS}
    from jaxpref.llm import distributed

    try:  # before the config, whose checks already compute with JAX
        distributed.initialize(**launch)  # no-op for one process; flags, JAXPREF_* or auto-detect
    except (ValueError, ConnectionError, RuntimeError) as err:
        return _fail(prog, str(err), 1)
    try:
        config = config_from_args(cls, args)
    except (ValueError, TypeError) as err:
        return _fail(prog, _as_flag(str(err), cls), 2)
    from jaxpref.train import NonFiniteError, train

    try:
        result = train(config, log=lambda m: print(m, file=sys.stderr))
    except KeyboardInterrupt as err:
        message = str(err) or "interrupted before training started; nothing written"
        print(f"{prog}: {message}", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, ConnectionError, NonFiniteError) as err:
        return _fail(prog, _as_flag(str(err), cls), 1)
    print(f"wrote {result.output_dir} (model, metrics.jsonl, checkpoints)")
    return 0


def _as_flag(message: str, cls) -> str:
    """``"beta: must be > 0"`` → ``"--beta: must be > 0"`` when the name is an option."""
    import dataclasses

    name = message.split(":", 1)[0]
    names = {f.name for f in dataclasses.fields(cls)}
    return f"--{message}" if name in names else message


def _fail(prog: str, message: str, code: int) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

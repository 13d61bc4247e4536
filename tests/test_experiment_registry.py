"""The experiment registry: every entry resolves to a runner with the typed interface, the CLI
reads only the registry, and importing it imports no runner (``jaxpref --help`` stays fast)."""

import dataclasses
import inspect
import subprocess
import sys
import types

import pytest

from jaxpref import cli
from jaxpref.experiments import EXPERIMENTS, SCALES, Experiment, Runner, registry


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_entry_resolves_to_a_typed_runner(name):
    entry = EXPERIMENTS[name]
    assert isinstance(entry, Experiment) and entry.name == name and entry.description
    runner = entry.load()
    assert isinstance(runner, Runner)
    cfg = runner.config("test")
    assert dataclasses.is_dataclass(cfg) and cfg.__dataclass_params__.frozen, name
    units = runner.num_units(cfg)
    assert isinstance(units, int) and units > 0, (name, units)
    params = inspect.signature(runner.run).parameters
    assert params["progress"].default is None
    assert runner.takes_work_dir == ("work_dir" in params)
    for scale in SCALES:  # every scale builds a config of the same type
        assert type(runner.config(scale)) is type(cfg), (name, scale)


def test_cli_commands_come_from_the_registry(capsys):
    assert cli.EXPERIMENTS is EXPERIMENTS
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(EXPERIMENTS)
    for line, entry in zip(lines, EXPERIMENTS.values(), strict=True):
        assert line.endswith(entry.description)


def test_unknown_names_and_broken_runners_are_refused(monkeypatch):
    with pytest.raises(KeyError, match="unknown experiment 'nope'; known: activedpo"):
        registry.get("nope")
    with pytest.raises(SystemExit, match="unknown experiment 'nope'"):
        cli._load("nope")
    partial = types.SimpleNamespace(config=lambda s: None, num_units=lambda c: 1, run=None)
    monkeypatch.setitem(sys.modules, "partial_runner_for_tests", partial)
    with pytest.raises(TypeError, match="'broken'.*no callable 'run'"):
        Experiment("broken", "x", "partial_runner_for_tests").load()
    partial.run = lambda cfg: {}
    partial.plot = partial.table = lambda *a: None
    with pytest.raises(TypeError, match="takes no progress"):
        Experiment("broken", "x", "partial_runner_for_tests").load()
    partial.run = lambda cfg, *, progress=None: [1]
    with pytest.raises(TypeError, match="not a dict"):
        Experiment("broken", "x", "partial_runner_for_tests").load().execute(None)


def test_work_dir_passed_only_to_runners_that_take_it(tmp_path):
    seen = []
    plain = Runner(
        config=str,
        num_units=len,
        run=lambda cfg, *, progress=None: {"cfg": cfg},
        plot=lambda r, d: [],
        table=str,
    )
    assert plain.execute("a", work_dir=tmp_path) == {"cfg": "a"}

    def run(cfg, *, progress=None, work_dir=None):
        seen.append(work_dir)
        return {}

    module = types.SimpleNamespace(config=str, num_units=len, run=run, plot=list, table=str)
    runner = Runner.from_module(module)
    assert runner.takes_work_dir
    runner.execute("a", work_dir=tmp_path)
    assert seen == [tmp_path]


def test_importing_the_registry_imports_no_runner():
    code = (
        "import sys, jaxpref.cli; "
        "print(sorted(m for m in sys.modules if m.startswith('jaxpref.experiments.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['jaxpref.experiments.registry']", out.stdout


def test_scale_configs_replace_the_base_per_scale():
    @dataclasses.dataclass(frozen=True)
    class Cfg:
        steps: int = 10
        seeds: int = 3

    config = registry.scale_configs(Cfg(), test=dict(steps=2), full=dict(steps=99, seeds=8))
    assert [config(s) for s in registry.SCALES] == [Cfg(2, 3), Cfg(), Cfg(), Cfg(99, 8)]
    with pytest.raises(ValueError, match="scale"):
        config("huge")
    with pytest.raises(ValueError, match="overrides"):
        registry.scale_configs(Cfg(), tiny=dict(steps=1))
    with pytest.raises(TypeError, match="stepz"):
        registry.scale_configs(Cfg(), test=dict(stepz=1))

"""`jaxpref run` under faults and bad input, on a stand-in experiment (fast): the output folder
is checked and claimed before any work, results are written atomically with their metadata,
refusals and Ctrl-C are one line on stderr, and no empty folder is left behind."""

import dataclasses
import datetime
import json
import os
import pathlib
import subprocess
import sys
import types

import pytest

from jaxpref import cli
from jaxpref.experiments import EXPERIMENTS, Experiment, _io

ROOT = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Config:
    seeds: int = 2
    seed: int = 7


def fake_module(interrupt_after=None):
    calls = []

    def run(cfg, progress=None):
        calls.append(cfg)
        for i in range(3):
            if interrupt_after == i:
                raise KeyboardInterrupt
            progress(1)
        return {"value": {"mean": 1.0, "std": 0.5}}

    def plot(results, out_dir):
        path = pathlib.Path(out_dir) / "fake.png"
        path.write_bytes(b"png")
        return [path]

    return types.SimpleNamespace(
        config=lambda scale: Config(),
        num_units=lambda cfg: 3,
        run=run,
        plot=plot,
        table=lambda results: "table",
        calls=calls,
    )


@pytest.fixture
def fake(monkeypatch):
    def install(**kw):
        module = fake_module(**kw)
        monkeypatch.setitem(sys.modules, "fake_experiment_for_tests", module)
        entry = Experiment("fake", "a stand-in", "fake_experiment_for_tests")
        monkeypatch.setitem(EXPERIMENTS, "fake", entry)
        return module

    return install


def run_cli(tmp_path, *extra):
    return cli._run("jaxpref run fake", "fake", "test", str(tmp_path / "out"), *extra)


def test_results_and_figures_with_metadata(fake, tmp_path, capsys):
    fake()
    assert run_cli(tmp_path, False) == 0
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["fake.png", "results.json"]  # no marker
    meta = json.loads((out / "results.json").read_text())["meta"]
    import jaxpref

    assert meta["jaxpref_version"] == jaxpref.__version__
    assert meta["seeds"] == {"seeds": 2, "seed": 7}
    assert meta["experiment"] == "fake" and meta["scale"] == "test" and meta["statistics"]
    when = datetime.datetime.fromisoformat(meta["utc_time"])
    assert when.utcoffset() == datetime.timedelta(0)
    commit = meta["git_commit"]
    assert commit is None or len(commit.removesuffix("+dirty")) == 40


def one_line_error(capsys, *words, after_bar=False):
    """stderr is one line (after the progress bar's own line, when a bar had started)."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    lines = err.split("\n")
    assert len(lines) == (2 if after_bar else 1), err
    for w in words:
        assert w in lines[-1], err


def test_existing_results_refused_naming_the_flag(fake, tmp_path, capsys):
    module = fake()
    assert run_cli(tmp_path, False) == 0
    capsys.readouterr()
    assert run_cli(tmp_path, False) == 1
    one_line_error(capsys, "--out", "--overwrite", "already holds results.json")
    assert len(module.calls) == 1  # refused before any work
    assert run_cli(tmp_path, True) == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_folder_refused_before_work(fake, tmp_path, capsys):
    module = fake()
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code = cli._run("jaxpref run fake", "fake", "test", str(locked / "out"), False)
    finally:
        locked.chmod(0o700)
    assert code == 1
    one_line_error(capsys, "--out", "not writable")
    assert module.calls == []


def test_unwritable_check_runs_before_work(fake, tmp_path, capsys, monkeypatch):
    """The same refusal where the suite runs as root (which may write anywhere)."""
    module = fake()
    monkeypatch.setattr(_io.os, "access", lambda path, mode: False)
    assert run_cli(tmp_path, False) == 1
    one_line_error(capsys, "--out", "not writable")
    assert module.calls == [] and not (tmp_path / "out").exists()


def test_ctrl_c_one_line_and_no_empty_folder(fake, tmp_path, capsys):
    fake(interrupt_after=2)
    assert run_cli(tmp_path, False) == 130
    one_line_error(capsys, "interrupted after 2 of 3 runs; nothing written", after_bar=True)
    assert not (tmp_path / "out").exists()


def test_second_run_on_a_claimed_folder_refused(fake, tmp_path, capsys):
    module = fake()
    with _io.OutputClaim(tmp_path / "out"):
        assert run_cli(tmp_path, False) == 1
    one_line_error(capsys, "another jaxpref run is writing")
    assert module.calls == []


def test_failed_write_keeps_the_old_results(tmp_path):
    path = _io.write_json(tmp_path / "results.json", {"a": 1})
    with pytest.raises(TypeError):
        _io.write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}


def test_run_help_documents_scale_out_overwrite(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for word in ("--scale", "default: small", "quickstart", "full", "--out", "--overwrite"):
        assert word in text, word


def test_experiment_script_help_shows_its_own_name():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = "experiments/pbpo/main.py"
    out = subprocess.run(
        [sys.executable, script, "--help"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: python {script}")
    assert "--scale" in out.stdout and "jaxpref run pbpo" in out.stdout

"""Smoke runs of the speed benchmarks at toy sizes, so the scripts cannot rot.

The figures themselves are recorded in the README's performance section; nothing here is
timed against a target.
"""

import importlib.util
import json
import pathlib

BENCHMARKS = pathlib.Path(__file__).parent.parent / "experiments" / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_doptimal_benchmark_runs_and_agrees(tmp_path):
    out = _load("doptimal").main(
        [
            "--N",
            "300",
            "--d",
            "6",
            "--n",
            "12",
            "--repeats",
            "1",
            "--json",
            str(tmp_path / "b.json"),
        ]
    )
    assert out["same_picks"] == "12/12" and out["same_picks_plain"] == "12/12"
    assert set(out["seconds"]) == {
        "jaxpref_lazy",
        "jaxpref_plain",
        "numpy_recipe",
        "n_matvecs_xla",
        "n_matvecs_blas",
        "one_gemm_xla",
        "one_gemm_blas",
    }
    assert out["lazy"]["refreshes"] >= 1 and out["lazy"]["rescored"] >= 12
    assert out["blas"]  # the NumPy process reported its BLAS
    assert all(t > 0 for t in out["seconds"].values())
    assert json.loads((tmp_path / "b.json").read_text())["n"] == 12


def test_llm_benchmark_runs_without_torch(capsys):
    _load("llm_step").main(
        [
            "--tiny",
            "--batch",
            "2",
            "--length",
            "16",
            "--prompt",
            "4",
            "--new",
            "4",
            "--repeats",
            "1",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    if importlib.util.find_spec("torch") is None:
        assert report["transformers_torch"] is None
    assert report["jaxpref"]["step_tokens_per_s"] > 0
    assert report["jaxpref"]["gen_tokens_per_s"] > 0

"""Smoke runs of the trainers' benchmarks (DPO step, RLHF step) at the tiny size, torch-free."""

import importlib.util
import json
import pathlib

BENCHMARKS = pathlib.Path(__file__).parent.parent / "experiments" / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dpo_step_benchmark_runs_without_torch(capsys):
    _load("dpo_step").main(
        ["--tiny", "--repeats", "1", "--pairs", "2", "--prompt", "8", "--response", "8"]
    )
    report = json.loads(capsys.readouterr().out)
    for setting in ("full", "lora"):
        ours = report[setting]["jaxpref"]
        assert ours["tokens_per_s"] > 0 and ours["compiled_peak_mib"] > 0
        assert report[setting]["trl"] is None  # no --torch-python given
    assert report["lora"]["jaxpref"]["trained_params"] < report["full"]["jaxpref"]["trained_params"]


def test_rlhf_step_benchmark_runs(capsys):
    _load("rlhf_step").main(
        ["--tiny", "--repeats", "1", "--prompts", "2", "--prompt", "8", "--new", "8"]
    )
    report = json.loads(capsys.readouterr().out)
    assert report["rollout_generated_tokens_per_s"] > 0 and report["update_compiled_peak_mib"] > 0

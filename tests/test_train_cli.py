"""`jaxpref train {sft,reward,dpo}` as a user meets it: --help, YAML + flags, and bad input that
fails in one line before any training step."""

import json

import llm_task
import pytest

from jaxpref import cli
from jaxpref.train.args import config_from_args, load_yaml
from jaxpref.train.config import DPOConfig, parse_mesh


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return {
        "root": root,
        "data": llm_task.write_dataset(root / "data", n_train=24, n_test=8),
        "model": llm_task.make_model_dir(root / "model"),
    }


def _run(capsys, *argv):
    try:
        code = cli.main(list(argv))
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _base(task, out, recipe="dpo"):
    return [
        "train",
        recipe,
        "--model_name_or_path",
        str(task["model"]),
        "--dataset_name",
        str(task["data"]),
        "--output_dir",
        str(out),
        "--disable_tqdm",
    ]


@pytest.mark.parametrize("recipe", ["sft", "reward", "dpo"])
def test_help_documents_every_flag_with_its_default(recipe, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", recipe, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--model_name_or_path",
        "--dataset_name",
        "--output_dir",
        "--learning_rate",
        "--lr_scheduler_type",
        "--warmup_ratio",
        "--per_device_train_batch_size",
        "--gradient_accumulation_steps",
        "--max_steps",
        "--num_train_epochs",
        "--max_length",
        "--max_prompt_length",
        "--eval_steps",
        "--save_steps",
        "--logging_steps",
        "--seed",
        "--use_peft",
        "--lora_r",
        "--lora_alpha",
        "--lora_target_modules",
        "--dtype",
        "--param_dtype",
        "--remat",
        "--mesh",
    ):
        assert flag in text, flag
    assert "(default: " in text
    if recipe == "dpo":
        for flag in (
            "--loss_type",
            "--beta",
            "--label_smoothing",
            "--precompute_ref_log_probs",
            "--loss_weights",
        ):
            assert flag in text


def test_yaml_and_flags_combine_flags_win(tmp_path):
    import argparse

    from jaxpref.train.args import add_config_flags

    (tmp_path / "c.yaml").write_text(
        "beta: 0.3\nloss_type: [sigmoid, sft]\nloss_weights: 1,0.5\nmax_steps: 7\nuse_peft: true\n"
    )
    parser = argparse.ArgumentParser()
    add_config_flags(parser, DPOConfig)
    ns = parser.parse_args(
        [
            "--config",
            str(tmp_path / "c.yaml"),
            "--model_name_or_path",
            "m",
            "--dataset_name",
            "d",
            "--output_dir",
            "o",
            "--max_steps",
            "9",
        ]
    )
    config = config_from_args(DPOConfig, ns)
    assert (config.beta, config.loss_type, config.loss_weights) == (
        0.3,
        ("sigmoid", "sft"),
        (1, 0.5),
    )
    assert (config.max_steps, config.use_peft) == (9, True)
    (tmp_path / "bad.yaml").write_text("betta: 0.3\n")
    with pytest.raises(ValueError, match="config: unknown option\\(s\\) betta"):
        load_yaml(str(tmp_path / "bad.yaml"), DPOConfig)


def test_cli_trains_and_writes_its_outputs(task, capsys, tmp_path):
    (tmp_path / "opts.yaml").write_text("max_steps: 2\nlogging_steps: 1\nmax_length: 24\n")
    out = tmp_path / "run"
    code, stdout, err = _run(
        capsys,
        *_base(task, out, "sft"),
        "--config",
        str(tmp_path / "opts.yaml"),
        "--per_device_train_batch_size",
        "1",
        "--save_steps",
        "0",
    )
    assert code == 0, err
    assert f"wrote {out}" in stdout
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]
    assert "eval_loss" in rows[-1]
    assert json.loads((out / "jaxpref_run.json").read_text())["config"]["max_length"] == 24
    code, _, err = _run(capsys, *_base(task, out, "sft"))
    assert code == 1
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith("pass --resume to continue it or --overwrite to replace it")
    )


def _one_line_error(capsys, argv, code, pattern):
    got, _, err = _run(capsys, *argv)
    lines = [line for line in err.strip().splitlines() if "error:" in line]
    assert got == code and len(lines) == 1, err
    assert "Traceback" not in err
    import re

    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def test_bad_options_fail_in_one_line(task, capsys, tmp_path):
    out = tmp_path / "never"
    base = _base(task, out)
    _one_line_error(capsys, [*base, "--loss_type", "kto"], 2, r"--loss_type: unknown 'kto'")
    _one_line_error(
        capsys, [*base, "--betta", "1"], 2, r"unknown option --betta; did you mean --beta"
    )
    _one_line_error(
        capsys,
        [*base, "--loss_type", "hinge", "--label_smoothing", "0.1"],
        2,
        "label_smoothing: must be 0 for loss_type=hinge",
    )
    _one_line_error(capsys, [*base, "--loss_weights", "1,2"], 2, "loss_weights: 2 weights for 1")
    _one_line_error(capsys, [*base, "--mesh", "data=3"], 1, r"mesh: .*= 3 != 8 devices")
    _one_line_error(capsys, [*base, "--max_length", "0"], 2, "--max_length: must be > 0")
    assert not out.exists()


def test_bad_data_fails_in_one_line(task, capsys, tmp_path):
    out = tmp_path / "never"
    bad = tmp_path / "cols.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    argv = _base(task, out)
    argv[argv.index("--dataset_name") + 1] = str(bad)
    _one_line_error(
        capsys, argv, 1, r"lacks column\(s\) 'chosen', 'rejected' \(found 'question', 'answer'"
    )
    chat = tmp_path / "chat.jsonl"
    msgs = lambda c: [{"role": "user", "content": "hi"}, {"role": "assistant", "content": c}]  # noqa: E731
    chat.write_text(json.dumps({"chosen": msgs("good"), "rejected": msgs("bad")}) + "\n")
    argv[argv.index("--dataset_name") + 1] = str(chat)
    _one_line_error(capsys, argv, 1, "tokenizer: has no chat template")
    argv[argv.index("--dataset_name") + 1] = str(tmp_path / "typo.jsonl")
    _one_line_error(capsys, argv, 1, "--dataset_name: no such file or directory")
    assert not out.exists()


def test_truncation_drops_are_reported(task, tmp_path):
    from jaxpref.train import DPOConfig, train

    rows = llm_task.rows(6, seed=3)
    rows[0] = {**rows[0], "prompt": " ".join(["tell"] * 30)}  # the prompt fills max_length
    rows[1] = {**rows[1], "rejected": rows[1]["chosen"][:-2] + " ugh"}  # equal once cut
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = DPOConfig(
        model_name_or_path=str(task["model"]),
        dataset_name=str(tmp_path / "d"),
        output_dir=str(tmp_path / "run"),
        max_length=11,
        max_prompt_length=None,
        max_steps=1,
        per_device_train_batch_size=1,
        disable_tqdm=True,
        save_steps=0,
    )
    result = train(config, log=lambda _: None)
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report == result.data_report
    assert "6 examples -> 4 kept" in report["train"]["truncation"]
    assert "1 dropped as empty and 1 as identical" in report["train"]["truncation"]


def test_parse_mesh():
    assert parse_mesh("data=2,fsdp=4,tensor=1") == {"data": 2, "fsdp": 4, "tensor": 1}
    assert parse_mesh("fsdp=-1") == {"data": 1, "fsdp": -1, "tensor": 1}
    for bad, msg in (
        ("model=2", "expected axis=size"),
        ("data=x", "must be an int"),
        ("data=2,data=2", "given twice"),
        ("", "empty"),
    ):
        with pytest.raises(ValueError, match=msg):
            parse_mesh(bad)

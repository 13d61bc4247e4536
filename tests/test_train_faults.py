"""`jaxpref train` under faults: Ctrl-C mid-training keeps a checkpoint of that step, the CLI
says so in one line (exit 130), and the run folder is claimed before any work (refused when
unwritable, foreign or in use; removed again when a run stops before its first checkpoint)."""

import fcntl
import signal

import llm_task
import pytest

from jaxpref import cli
from jaxpref.train import SFTConfig, train
from jaxpref.train import run_dir as rd

COMMON = dict(
    max_length=24,
    max_prompt_length=12,
    per_device_train_batch_size=1,
    save_steps=0,
    disable_tqdm=True,
    logging_steps=1,
    dataset_test_split="none",
)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    return {
        "data": llm_task.write_dataset(root / "data", n_train=24, n_test=8),
        "model": llm_task.make_model_dir(root / "model"),
    }


def config(task, out, **kw):
    return SFTConfig(
        model_name_or_path=str(task["model"]),
        dataset_name=str(task["data"]),
        output_dir=str(out),
        **{**COMMON, **kw},
    )


def test_ctrl_c_mid_training_keeps_a_checkpoint(task, tmp_path):
    out = tmp_path / "run"

    def ctrl_c(step, _):
        if step == 2:
            signal.raise_signal(signal.SIGINT)  # as the terminal sends it

    with pytest.raises(KeyboardInterrupt, match=r"interrupted at step 2 of 4; the checkpoint of"):
        train(config(task, out, max_steps=4), on_step=ctrl_c, log=lambda _: None)
    assert (out / "checkpoints" / "2").is_dir()  # resuming from it: test_train_recipes.py
    assert not (out / "model.safetensors").exists()  # no export of an unfinished run


def test_cli_reports_an_interrupt_in_one_line(task, tmp_path, capsys, monkeypatch):
    import jaxpref.train as jt

    def interrupted(config, **_):
        raise KeyboardInterrupt("interrupted at step 2 of 4, before any checkpoint; nothing kept")

    monkeypatch.setattr(jt, "train", interrupted)
    argv = ["train", "sft", "--model_name_or_path", str(task["model"]), "--dataset_name"]
    argv += [str(task["data"]), "--output_dir", str(tmp_path / "run")]
    assert cli.main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert (
        err == "jaxpref train sft: interrupted at step 2 of 4, before any checkpoint; nothing kept"
    )


def test_run_folder_refusals(task, tmp_path, monkeypatch):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(rd.RunDirError, match="holds files that are not a jaxpref run"):
        with rd.RunDir(config(task, foreign), "sft"):
            pass
    busy = tmp_path / "busy"
    busy.mkdir()
    with open(busy / rd.LOCK, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another process's run
        with pytest.raises(rd.RunDirError, match="another jaxpref run is using"):
            with rd.RunDir(config(task, busy), "sft"):
                pass
    monkeypatch.setattr(rd.os, "access", lambda path, mode: False)
    with pytest.raises(rd.RunDirError, match="output_dir: .* is not writable"):
        with rd.RunDir(config(task, tmp_path / "ro"), "sft"):
            pass
    assert not (tmp_path / "ro").exists()


def test_run_stopped_before_its_first_checkpoint_leaves_no_folder(task, tmp_path):
    out = tmp_path / "new" / "run"
    with pytest.raises(KeyboardInterrupt):
        with rd.RunDir(config(task, out), "sft"):
            assert (out / rd.MARKER).exists()
            raise KeyboardInterrupt
    assert not out.exists()

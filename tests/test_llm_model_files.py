"""Model files under faults and bad input: atomic ``save_pretrained`` (a kill mid-save leaves the
old checkpoint whole), refusal of an existing checkpoint without ``overwrite`` and removal of the
old save's stale files with it, and ``from_pretrained`` refusing malformed safetensors (each
error names the file and the tensor)."""

import json
import os
import pathlib
import signal
import struct
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from jaxpref import llm
from jaxpref.llm import hf_io, model_dir
from jaxpref.llm.hf_io import from_pretrained, save_pretrained
from jaxpref.llm.safetensors_io import SafetensorsFile, save_file

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = llm.DecoderConfig.tiny()
SHARD = 8_000  # bytes: the tiny model saves as several shards


@pytest.fixture(scope="module")
def two_models():
    return llm.create_model(CONFIG, seed=0), llm.create_model(CONFIG, seed=1)


def embedding(model):
    return np.asarray(model.embed.embedding[...])


def test_existing_checkpoint_refused_then_overwritten_without_stale_files(two_models, tmp_path):
    a, b = two_models
    save_pretrained(a, tmp_path / "m", max_shard_bytes=SHARD)
    (tmp_path / "m" / "tokenizer.json").write_text("{}")  # not the checkpoint's: kept
    shards = sorted(p.name for p in (tmp_path / "m").glob("model-*.safetensors"))
    assert len(shards) > 2
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_pretrained(b, tmp_path / "m")
    np.testing.assert_array_equal(embedding(from_pretrained(tmp_path / "m")), embedding(a))
    save_pretrained(b, tmp_path / "m", overwrite=True)  # unsharded now
    left = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert left == ["config.json", "model.safetensors", "tokenizer.json"]
    np.testing.assert_array_equal(embedding(from_pretrained(tmp_path / "m")), embedding(b))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_overwrite_in_a_folder_with_subfolders_keeps_them(two_models, tmp_path):
    """A training run folder: its checkpoints stay, the old model's shards go."""
    a, b = two_models
    run = tmp_path / "run"
    (run / "checkpoints" / "5").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("{}\n")
    save_pretrained(a, run, max_shard_bytes=SHARD)
    save_pretrained(b, run, overwrite=True)
    names = sorted(p.name for p in run.iterdir())
    assert names == ["checkpoints", "config.json", "metrics.jsonl", "model.safetensors"]
    assert (run / "checkpoints" / "5").is_dir()
    np.testing.assert_array_equal(embedding(from_pretrained(run)), embedding(b))


def test_failed_save_leaves_nothing(two_models, tmp_path, monkeypatch):
    def fail(tensors, path):
        raise OSError("disk full")

    monkeypatch.setattr(hf_io, "save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(two_models[0], tmp_path / "new")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_or_ambiguous_folder_refused(two_models, tmp_path):
    save_pretrained(two_models[0], tmp_path / "m")
    (tmp_path / "m" / model_dir.SAVING).write_text("")
    with pytest.raises(ValueError, match="interrupted"):
        from_pretrained(tmp_path / "m")
    (tmp_path / "m" / model_dir.SAVING).unlink()
    index = {"weight_map": {"model.norm.weight": "model.safetensors"}}
    (tmp_path / "m" / hf_io.INDEX).write_text(json.dumps(index))
    with pytest.raises(ValueError, match="one is stale"):
        from_pretrained(tmp_path / "m")


KILLED_SAVE = """
import sys, time
from jaxpref import llm
from jaxpref.llm import hf_io
out = sys.argv[1]
config = llm.DecoderConfig.tiny()
llm.save_pretrained(llm.create_model(config, seed=0), out, max_shard_bytes={shard})
real = hf_io.save_file
def slow(tensors, path):
    real(tensors, path)
    print("shard", flush=True)
    time.sleep(60)
hf_io.save_file = slow
llm.save_pretrained(llm.create_model(config, seed=1), out, max_shard_bytes={shard}, overwrite=True)
"""


def test_kill_mid_save_leaves_old_checkpoint_whole(two_models, tmp_path):
    out = tmp_path / "m"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    script = KILLED_SAVE.format(shard=SHARD)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(out)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "shard"  # one shard of the second save written
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert same_weights(from_pretrained(out), two_models[0])  # the first save, every tensor


def same_weights(a, b) -> bool:
    equal = jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), nnx.state(a), nnx.state(b))
    return jax.tree.all(equal)


# ---- malformed safetensors ---------------------------------------------------------------------


def write_raw(path, header, data):
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)


F32 = {"dtype": "F32", "shape": [2]}


@pytest.mark.parametrize(
    "header,data,match",
    [
        ({"w": {**F32, "data_offsets": [0, 16]}}, b"\0" * 8, r"'w'.*out of range"),
        ({"w": {**F32, "data_offsets": [0, 8]}, "v": {**F32, "data_offsets": [4, 12]}},
         b"\0" * 12, r"'w' and 'v' overlap"),
        ({"w": {**F32, "data_offsets": [0, 4]}}, b"\0" * 8, r"'w'.*needs 8"),
        ({"w": {**F32, "data_offsets": [-8, 0]}}, b"\0" * 8, r"'w'.*out of range"),
    ],
)  # fmt: skip
def test_bad_data_offsets_name_file_and_tensor(tmp_path, header, data, match):
    write_raw(tmp_path / "x.safetensors", header, data)
    with pytest.raises(ValueError, match=f"x.safetensors: .*{match}"):
        SafetensorsFile(tmp_path / "x.safetensors")


def test_header_longer_than_file(tmp_path):
    save_file({"w": np.ones(4, np.float32)}, tmp_path / "x.safetensors")
    raw = (tmp_path / "x.safetensors").read_bytes()
    (tmp_path / "x.safetensors").write_bytes(struct.pack("<Q", 10**6) + raw[8:])
    with pytest.raises(ValueError, match="x.safetensors: header length 1000000 is larger"):
        SafetensorsFile(tmp_path / "x.safetensors")
    (tmp_path / "x.safetensors").write_bytes(raw[:-3])  # truncated data
    with pytest.raises(ValueError, match="x.safetensors: tensor 'w'.*out of range"):
        SafetensorsFile(tmp_path / "x.safetensors")


@pytest.mark.parametrize("file", ["../outside.safetensors", "/tmp/x.safetensors", "a/../b"])
def test_index_entry_outside_folder(two_models, tmp_path, file):
    save_pretrained(two_models[0], tmp_path / "m", max_shard_bytes=SHARD)
    index_path = tmp_path / "m" / hf_io.INDEX
    index = json.loads(index_path.read_text())
    index["weight_map"]["model.norm.weight"] = file
    index_path.write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"index.json: tensor 'model.norm.weight' names file"):
        from_pretrained(tmp_path / "m")


def test_non_finite_weight_warns_with_file_and_tensor(two_models, tmp_path):
    save_pretrained(two_models[0], tmp_path / "m")
    f = SafetensorsFile(tmp_path / "m" / "model.safetensors")
    tensors = {k: np.array(f.get(k)) for k in f.keys()}
    tensors["model.norm.weight"][3] = np.nan
    del f
    save_file(tensors, tmp_path / "m" / "model.safetensors")
    with pytest.warns(RuntimeWarning, match=r"model.safetensors: tensor 'model.norm.weight'"):
        from_pretrained(tmp_path / "m")

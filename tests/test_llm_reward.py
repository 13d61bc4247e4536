"""Reward models against transformers' *ForSequenceClassification golden files, both directions."""

import json
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file

from jaxpref import llm
from jaxpref.llm.reward import (
    last_token_index,
    reward_model_from_pretrained,
    save_reward_model,
)
from jaxpref.llm.safetensors_io import SafetensorsFile

GOLDEN = pathlib.Path(__file__).parent / "golden"

FAMILIES = ["reward_llama", "reward_gpt2"]


def _expected(name):
    return load_file(str(GOLDEN / name / "expected.safetensors"))


def _left_pad(ids, mask):
    ids_l, mask_l = np.zeros_like(ids), np.zeros_like(mask)
    for i, m in enumerate(mask):
        n = int(m.sum())
        ids_l[i, -n:], mask_l[i, -n:] = ids[i, :n], 1
    return ids_l, mask_l


@pytest.mark.parametrize("name", FAMILIES)
def test_scores_match_transformers_on_padded_batches(name):
    exp = _expected(name)
    model = reward_model_from_pretrained(GOLDEN / name)
    right = model(jnp.asarray(exp["ids"]), jnp.asarray(exp["mask"]))
    assert right.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(right), exp["scores"], atol=2e-5, rtol=1e-5)
    left = model(*map(jnp.asarray, _left_pad(exp["ids"], exp["mask"])))
    np.testing.assert_allclose(np.asarray(left), exp["scores"], atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_save_writes_what_transformers_wrote(name, tmp_path):
    model = reward_model_from_pretrained(GOLDEN / name)
    save_reward_model(model, tmp_path / name)
    ours = set(SafetensorsFile(tmp_path / name / "model.safetensors").keys())
    theirs = set(SafetensorsFile(GOLDEN / name / "model.safetensors").keys())
    assert ours == theirs
    config = json.loads((tmp_path / name / "config.json").read_text())
    golden = json.loads((GOLDEN / name / "config.json").read_text())
    assert config["architectures"] == golden["architectures"]
    assert config["id2label"] == {"0": "LABEL_0"} and config["pad_token_id"] == 0
    again = reward_model_from_pretrained(tmp_path / name)
    exp = _expected(name)
    np.testing.assert_array_equal(
        np.asarray(again(jnp.asarray(exp["ids"]), jnp.asarray(exp["mask"]))),
        np.asarray(model(jnp.asarray(exp["ids"]), jnp.asarray(exp["mask"]))),
    )


def test_reward_model_from_a_causal_lm_skips_the_lm_head(tmp_path):
    config = llm.DecoderConfig.tiny(pad_token_id=0, eos_token_id=1)
    llm.save_pretrained(llm.create_model(config), tmp_path / "lm")
    model = reward_model_from_pretrained(tmp_path / "lm", seed=3)
    assert model.backbone.lm_head is None and not model.tie_word_embeddings
    assert model.score.kernel[...].shape == (32, 1)
    assert 0.005 < float(jnp.std(model.score.kernel[...])) < 0.05  # HF's N(0, 0.02²) init
    save_reward_model(model, tmp_path / "rm")
    assert json.loads((tmp_path / "rm" / "config.json").read_text())["tie_word_embeddings"] is False
    with pytest.raises(ValueError, match="pad_token_id must be set and differ"):
        bad = reward_model_from_pretrained(tmp_path / "lm")
        bad.backbone.config = bad.backbone.config.__class__(
            **{**bad.backbone.config.__dict__, "pad_token_id": 1}
        )
        save_reward_model(bad, tmp_path / "bad")


def test_last_token_index_left_and_right_padding():
    mask = jnp.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1]])
    np.testing.assert_array_equal(last_token_index(mask), [1, 3, 3])

"""Parity of jaxpref.llm models with transformers' PyTorch models (golden files), padding,
HF checkpoint IO and its error messages, and sequence log-probs."""

import dataclasses
import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpref.llm import Decoder, DecoderConfig, load_config
from jaxpref.llm.hf_io import from_pretrained, save_pretrained
from jaxpref.llm.logps import sequence_logps
from jaxpref.llm.safetensors_io import SafetensorsFile, save_file

GOLDEN = pathlib.Path(__file__).parent / "golden"
FAMILIES = (
    "llama2",
    "llama3",
    "qwen2",
    "mistral",
    "llama_bias",
    "gpt2",
    "llama_yarn",
    "llama_dynamic",
    "gemma",
    "gemma2",
    "qwen3",
    "phi3",
    "opt",
    "opt_proj",
)
TOL = 1e-4


@nnx.jit
def forward(model, ids, mask):
    return model(ids, mask)


def golden(family):
    exp = SafetensorsFile(GOLDEN / family / "expected.safetensors")
    n = len([k for k in exp.keys() if k.startswith("ids_")])
    return [(np.asarray(exp.get(f"ids_{i}")), np.asarray(exp.get(f"logits_{i}"))) for i in range(n)]


@pytest.fixture(scope="module")
def models():
    return {f: from_pretrained(GOLDEN / f) for f in FAMILIES}


def pad_batch(examples, side, pad_id=0):
    length = max(len(ids) for ids, _ in examples)
    ids = np.full((len(examples), length), pad_id, np.int32)
    mask = np.zeros((len(examples), length), np.int32)
    for b, (x, _) in enumerate(examples):
        sl = slice(length - len(x), length) if side == "left" else slice(0, len(x))
        ids[b, sl], mask[b, sl] = x, 1
    return jnp.asarray(ids), jnp.asarray(mask)


@pytest.mark.parametrize("family", FAMILIES)
def test_golden_logits_unpadded(models, family):
    """The longest example without a mask (the others are checked in padded batches)."""
    ids, expected = golden(family)[0]
    out = nnx.jit(lambda m, x: m(x))(models[family], jnp.asarray(ids)[None])
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out[0]), expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("family,tol", [("gpt2", 1e-9), ("llama2", 2e-5)])
def test_golden_logits_float64(family, tol):
    """Loaded in float64 our logits match the float64 reference much more tightly (HF computes
    RoPE angles in float32 even in float64 models, hence the looser Llama tolerance)."""
    model = from_pretrained(GOLDEN / family, dtype=jnp.float64)
    ids, expected = golden(family)[0]
    out = model(jnp.asarray(ids)[None])
    assert out.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(out[0]), expected, atol=tol, rtol=0)


def test_saved_config_is_read_by_transformers(models, tmp_path):
    import transformers

    save_pretrained(models["llama3"], tmp_path)
    hf = transformers.AutoConfig.from_pretrained(tmp_path)
    assert (hf.model_type, hf.num_key_value_heads, hf.tie_word_embeddings) == ("llama", 2, True)
    assert hf.rope_parameters["rope_type"] == "llama3"
    assert hf.rope_parameters["original_max_position_embeddings"] == 16


@pytest.mark.parametrize("family", FAMILIES)
def test_padded_batch_equals_each_unpadded_run(models, family):
    """Every example, left-padded and right-padded in one batch, equals its unpadded logits."""
    examples = golden(family)
    left, right = pad_batch(examples, "left", pad_id=7), pad_batch(examples, "right", pad_id=7)
    ids, mask = jnp.concatenate([left[0], right[0]]), jnp.concatenate([left[1], right[1]])
    out = np.asarray(forward(models[family], ids, mask))
    for b, (_, expected) in enumerate(examples + examples):
        real = np.asarray(mask[b]).astype(bool)
        np.testing.assert_allclose(out[b][real], expected, atol=TOL, rtol=0)
    assert np.isfinite(out).all()


def test_each_family_switch_matters(models):
    """The goldens would fail without each implemented switch (so none is a no-op here)."""
    gemma2 = models["gemma2"].config
    for family, change in [
        ("llama3", dict(rope=DecoderConfig.tiny().rope)),
        ("llama_yarn", dict(rope=DecoderConfig.tiny().rope)),
        ("llama_dynamic", dict(rope=DecoderConfig.tiny().rope)),
        ("mistral", dict(sliding_window=None)),
        ("qwen3", dict(layer_types=None)),  # every layer sliding instead of layer 1 only
        ("gemma2", dict(attn_softcap=None)),
        ("gemma2", dict(final_softcap=None)),
        ("gemma2", dict(query_pre_attn_scalar=None)),
        ("gemma2", dict(layer_types=("sliding_attention",) * gemma2.num_layers)),
        ("phi3", dict(partial_rotary_factor=1.0)),
        ("phi3", dict(sliding_window=None)),
    ]:
        model = models[family]
        config = dataclasses.replace(model.config, **change)
        graphdef = nnx.graphdef(nnx.eval_shape(lambda: Decoder(config, rngs=nnx.Rngs(0))))
        other = nnx.merge(graphdef, nnx.state(model))
        ids, expected = golden(family)[0]
        out = forward(other, jnp.asarray(ids)[None], jnp.ones((1, len(ids)), jnp.int32))
        assert np.abs(np.asarray(out[0]) - expected).max() > 1e-2, (family, change)


def test_config_round_trip_and_hf_fields():
    for family in FAMILIES:
        cfg = load_config(GOLDEN / family)
        assert DecoderConfig.from_hf_dict(cfg.to_hf_dict()) == cfg, family
    gemma2 = load_config(GOLDEN / "gemma2")
    assert gemma2.layer_types == ("sliding_attention", "full_attention")
    assert (gemma2.sliding_window, gemma2.attn_softcap, gemma2.final_softcap) == (3, 5.0, 3.0)
    assert gemma2.attention_scale == 24**-0.5 and gemma2.activation == "gelu_pytorch_tanh"
    qwen3 = load_config(GOLDEN / "qwen3")
    assert qwen3.layer_types == ("full_attention", "sliding_attention") and qwen3.qk_norm
    phi3 = load_config(GOLDEN / "phi3")
    assert (phi3.partial_rotary_factor, phi3.rotary_dim, phi3.sliding_window) == (0.5, 4, 5)
    opt = load_config(GOLDEN / "opt_proj")
    assert (opt.embed_width, opt.pre_norm, opt.final_norm, opt.position_offset) == (
        16,
        False,
        False,
        2,
    )
    assert load_config(GOLDEN / "gemma").head_dim == 16
    assert load_config(GOLDEN / "llama_dynamic").rope.rope_type == "dynamic"
    yarn = load_config(GOLDEN / "llama_yarn").rope
    assert (yarn.rope_type, yarn.factor, yarn.original_max_position_embeddings) == ("yarn", 4, 16)
    llama3 = load_config(GOLDEN / "llama3")
    assert (llama3.rope.rope_type, llama3.rope.factor, llama3.num_kv_heads) == ("llama3", 4.0, 2)
    assert load_config(GOLDEN / "qwen2").qkv_bias and not load_config(GOLDEN / "qwen2").o_bias
    assert load_config(GOLDEN / "mistral").sliding_window == 4
    assert load_config(GOLDEN / "gpt2").intermediate_size == 128
    bias = load_config(GOLDEN / "llama_bias")
    assert bias.o_bias and bias.mlp_bias and bias.head_dim == 16 and bias.num_kv_heads == 1
    assert (bias.rope.rope_type, bias.rope.factor) == ("linear", 2.0)


def test_hf_class_defaults_for_absent_keys():
    for family, key, field, value in [
        ("mistral", "sliding_window", "sliding_window", 4096),
        ("qwen2", "tie_word_embeddings", "tie_word_embeddings", False),
    ]:
        hf = load_config(GOLDEN / family).to_hf_dict()
        hf.pop(key)
        assert getattr(DecoderConfig.from_hf_dict(hf), field) == value


def test_legacy_rope_scaling_spelling():
    hf = load_config(GOLDEN / "llama3").to_hf_dict()
    params = hf.pop("rope_parameters")
    hf["rope_theta"] = params.pop("rope_theta")
    hf["rope_scaling"] = params
    assert DecoderConfig.from_hf_dict(hf).rope == load_config(GOLDEN / "llama3").rope


def hf_tensors(path):
    """name → array of every tensor of a (single or sharded) safetensors checkpoint."""
    out = {}
    for file in sorted(path.glob("*.safetensors")):
        if file.name != "expected.safetensors" and file.name != "generate.safetensors":
            f = SafetensorsFile(file)
            out.update({k: np.asarray(f.get(k)) for k in f.keys()})
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_save_pretrained_round_trip_sharded(models, family, tmp_path):
    """Our files hold the HF-written tensors bit for bit (fused Phi-3 / GPT-2 tensors
    re-fused), read back into the same state, sharded or not, scanned or not."""
    model = models[family]
    save_pretrained(model, tmp_path / "one")
    save_pretrained(model, tmp_path / "many", max_shard_bytes=8_000)
    index = json.loads((tmp_path / "many" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2
    original = nnx.state(model)
    for sub in ("one", "many"):
        again = nnx.state(from_pretrained(tmp_path / sub))
        assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), original, again))
    theirs, ours = hf_tensors(GOLDEN / family), hf_tensors(tmp_path / "one")
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    assert set(ours) == set(theirs) - tied
    for k, v in ours.items():
        np.testing.assert_array_equal(v, theirs[k], err_msg=k)
    scanned = from_pretrained(GOLDEN / family, scan_layers=True)
    save_pretrained(scanned, tmp_path / "scanned")
    for k, v in hf_tensors(tmp_path / "scanned").items():
        np.testing.assert_array_equal(v, theirs[k], err_msg=k)


def test_our_files_read_by_safetensors_library(models, tmp_path):
    from safetensors.numpy import load_file

    save_pretrained(models["qwen2"], tmp_path)
    theirs = load_file(str(tmp_path / "model.safetensors"))
    ours = SafetensorsFile(GOLDEN / "qwen2" / "model.safetensors")
    for k, v in theirs.items():
        np.testing.assert_array_equal(v, ours.get(k))


def test_bfloat16_load(tmp_path):
    src = SafetensorsFile(GOLDEN / "qwen2" / "model.safetensors")
    bf16 = {k: src.get(k).astype(jnp.bfloat16) for k in src.keys()}
    save_file(bf16, tmp_path / "model.safetensors")
    shutil.copy(GOLDEN / "qwen2" / "config.json", tmp_path)
    model = from_pretrained(tmp_path, dtype=jnp.bfloat16)
    assert model.embed.embedding[...].dtype == jnp.bfloat16
    ids, expected = golden("qwen2")[0]
    out = forward(model, jnp.asarray(ids)[None], jnp.ones((1, len(ids)), jnp.int32))
    assert np.abs(np.asarray(out[0], np.float32) - expected).max() < 0.5
    ids = jnp.asarray(ids)[None]
    loss = jnp.ones_like(ids).at[:, 0].set(0)
    summed, per_token = sequence_logps(model, ids, jnp.ones_like(ids), loss)
    assert summed.dtype == jnp.float32 and per_token.dtype == jnp.float32


# ---- bad input -------------------------------------------------------------------------------


def copy_golden(family, tmp_path):
    dst = tmp_path / family
    shutil.copytree(GOLDEN / family, dst)
    return dst


def test_unsupported_architecture(tmp_path):
    path = copy_golden("llama2", tmp_path)
    hf = json.loads((path / "config.json").read_text())
    hf["model_type"] = "mamba"
    (path / "config.json").write_text(json.dumps(hf))
    with pytest.raises(ValueError, match="unsupported architecture.*mamba"):
        from_pretrained(path)


def test_missing_shard(tmp_path):
    path = copy_golden("mistral", tmp_path)
    (path / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(ValueError, match="missing shard model-00002-of-00003"):
        from_pretrained(path)


def test_tensor_shape_mismatch(tmp_path):
    path = copy_golden("llama2", tmp_path)
    hf = json.loads((path / "config.json").read_text())
    hf["intermediate_size"] = 48
    (path / "config.json").write_text(json.dumps(hf))
    expected = r"down_proj.weight' has shape \(32, 64\), expected \(32, 48\)"
    with pytest.raises(ValueError, match=expected):
        from_pretrained(path)


def test_tensor_name_mismatch(tmp_path):
    path = copy_golden("llama2", tmp_path)
    src = SafetensorsFile(path / "model.safetensors")
    tensors = {
        k.replace("model.norm", "model.final_norm"): np.array(src.get(k)) for k in src.keys()
    }
    save_file(tensors, path / "model.safetensors")
    with pytest.raises(ValueError, match="missing tensor 'model.norm.weight'"):
        from_pretrained(path)
    hf = json.loads((path / "config.json").read_text())
    hf["num_hidden_layers"] = 1
    (path / "config.json").write_text(json.dumps(hf))
    with pytest.raises(ValueError, match="tensor"):
        from_pretrained(path)


def test_bad_configs():
    with pytest.raises(ValueError, match="num_kv_heads: 3 does not divide num_heads=4"):
        DecoderConfig.tiny(num_kv_heads=3)
    with pytest.raises(ValueError, match="rope_type"):
        DecoderConfig.tiny(rope=dataclasses.replace(DecoderConfig.tiny().rope, rope_type="su"))
    with pytest.raises(ValueError, match="no config.json"):
        load_config("/nonexistent/dir")
    qwen = load_config(GOLDEN / "qwen2").to_hf_dict()
    with pytest.raises(ValueError, match="hidden_act: unsupported activation 'tanh'"):
        DecoderConfig.from_hf_dict({**qwen, "hidden_act": "tanh"})


# ---- sequence log-probs ----------------------------------------------------------------------


def reference_logps(expected_logits, ids, n_prompt):
    """float64 log-softmax of the golden logits, summed over the response tokens."""
    logits = np.asarray(expected_logits, np.float64)
    logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    per = logits[np.arange(len(ids) - 1), ids[1:]] - logz[:-1]
    return per[n_prompt - 1 :].sum()


@pytest.mark.parametrize("side", ["left", "right"])
def test_sequence_logps_padded_equals_golden(models, side):
    examples = golden("llama3")
    ids, mask = pad_batch(examples, side)
    loss = np.zeros(ids.shape, np.int32)
    for b, (x, _) in enumerate(examples):
        start = int(np.argmax(np.asarray(mask[b]))) + 1  # response = all but the first token
        loss[b, start : start + len(x) - 1] = 1
    summed, per_token = jax.jit(lambda m, *a: sequence_logps(m, *a))(
        models["llama3"], ids, mask, jnp.asarray(loss)
    )
    assert summed.dtype == jnp.float32 and per_token.shape == ids.shape
    for b, (x, logits) in enumerate(examples):
        np.testing.assert_allclose(summed[b], reference_logps(logits, x, 1), atol=5e-4, rtol=0)
    np.testing.assert_array_equal(np.asarray(per_token)[loss == 0], 0.0)


def test_sequence_logps_uniform_model_and_shapes():
    """A model with all-zero logits gives −log V per response token (hand computed)."""
    zero = lambda ids, mask: jnp.zeros((*ids.shape, 10), jnp.float64)  # noqa: E731
    ids = jnp.array([[1, 2, 3, 4]])
    summed, _ = sequence_logps(zero, ids, jnp.ones_like(ids), jnp.array([[0, 0, 1, 1]]))
    np.testing.assert_allclose(summed, [-2 * np.log(10.0)], rtol=1e-12)
    assert summed.dtype == jnp.float64
    with pytest.raises(ValueError, match="loss_mask"):
        sequence_logps(zero, ids, jnp.ones_like(ids), jnp.ones((1, 3)))


def test_random_init_forward_float64():
    model = Decoder(
        DecoderConfig.tiny("mistral", sliding_window=3), dtype=jnp.float64, rngs=nnx.Rngs(0)
    )
    out = model(jnp.array([[1, 2, 3, 4, 5]]))
    assert out.shape == (1, 5, 96) and out.dtype == jnp.float64


def test_bad_token_ids_and_too_long_inputs(models):
    with pytest.raises(ValueError, match=r"input_ids: token ids must be in \[0, 96\)"):
        models["llama2"](jnp.array([[3, 96]]))
    with pytest.raises(ValueError, match=r"input_ids: token ids must be in \[0, 96\)"):
        models["llama2"](np.array([[-1, 3]]))  # host ids: refused before any device work
    with pytest.raises(ValueError, match="max_position_embeddings=64"):
        models["gpt2"](jnp.zeros((1, 65), jnp.int32))
    # Under jit the checks are in the graph (they used to be skipped, or to refuse by length).
    forward = jax.jit(lambda ids, mask: models["gpt2"](ids, mask))
    with pytest.raises(jax.errors.JaxRuntimeError, match="token ids must be in"):
        jax.block_until_ready(forward(jnp.array([[3, 96]]), jnp.ones((1, 2), jnp.int32)))
    with pytest.raises(jax.errors.JaxRuntimeError, match="max_position_embeddings=64"):
        jax.block_until_ready(forward(jnp.zeros((1, 65), jnp.int32), jnp.ones((1, 65), jnp.int32)))
    left_padded = jnp.ones((1, 65), jnp.int32).at[0, 0].set(0)  # 64 real tokens: they fit
    assert forward(jnp.zeros((1, 65), jnp.int32), left_padded).shape == (1, 65, 96)
    with pytest.raises(ValueError, match=r"expected shape \(B, L\)"):
        models["gpt2"](jnp.zeros((65,), jnp.int32))

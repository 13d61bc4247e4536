"""HF config.json reading and writing: every accepted combination round-trips through
transformers' config class and builds the model we build (golden ``hf.json`` files written by
``scripts/make_golden.py --configs`` with torch); what the HF classes cannot express is refused
on saving; remote code and unimplemented math fields are refused on loading, naming the file
and the field."""

import dataclasses
import json
import pathlib

import numpy as np
import pytest
import transformers
from flax import nnx

from jaxpref import llm
from jaxpref.llm.hf_config import ARCHITECTURES
from jaxpref.llm.hf_map import param_map
from jaxpref.llm.layers import rope_attention_factor, rope_inv_freq
from jaxpref.llm.sharding import flat_variables, path_name

GOLDEN = pathlib.Path(__file__).parent / "golden"
CONFIGS = GOLDEN / "configs"
COMBOS = json.loads((CONFIGS / "combos.json").read_text())
ACTIVATION_CLASSES = {  # transformers' ACT2FN class for each of our activation names
    "silu": "SiLUActivation",
    "gelu_pytorch_tanh": "GELUTanh",
    "gelu_new": "NewGELUActivation",
    "gelu": "GELUActivation",
    "relu": "ReLU",
}


def build(kwargs):
    kwargs = dict(kwargs)
    if "rope" in kwargs:
        kwargs["rope"] = llm.RopeConfig(**kwargs["rope"])
    return llm.DecoderConfig.tiny(**kwargs)


def hf_shapes(config):
    """HF tensor name → shape of the checkpoint our model of ``config`` writes."""
    model = nnx.eval_shape(lambda: llm.Decoder(config, rngs=nnx.Rngs(0)))
    shapes = {path_name(k): v.get_value().shape for k, v in flat_variables(nnx.state(model))}
    out = {}
    for name, src in param_map(config).items():
        out[src.hf] = list(src.hf_shape(shapes[name]))
    assert len(shapes) == len(param_map(config))  # every parameter is mapped
    return out


@pytest.mark.parametrize("name", sorted(COMBOS))
def test_accepted_config_is_what_transformers_builds(name):
    config = build(COMBOS[name])
    written = config.to_hf_dict()
    stored = json.loads((CONFIGS / name / "config.json").read_text())
    assert written == stored, "golden config.json is stale: rerun make_golden.py --write-configs"
    transformers.AutoConfig.from_pretrained(CONFIGS / name)  # its strict field types accept it
    hf = json.loads((CONFIGS / name / "hf.json").read_text())
    assert hf["architecture"] == ARCHITECTURES[config.model_type]
    assert hf_shapes(config) == hf["params"]
    for i, layer in enumerate(hf["layers"]):
        window = layer["attn_sliding_window"]
        if window == "absent":  # Mistral and Phi-3 read the config's window in every layer
            reads_config = config.model_type in ("mistral", "phi3")
            window = hf["config_sliding_window"] if reads_config else None
        assert config.layer_window(i) == window, i
        if layer["scaling"] is not None:
            assert config.attention_scale == pytest.approx(layer["scaling"], rel=1e-12)
        assert config.attn_softcap == layer["softcap"]
        assert layer["head_dim"] in (None, config.head_dim)
        assert layer["activation"] == ACTIVATION_CLASSES[config.activation]
    assert config.final_softcap == hf["final_logit_softcapping"]
    if config.rope is not None:
        inv = rope_inv_freq(config.rope, config.rotary_dim, config.max_position_embeddings)
        np.testing.assert_allclose(inv, hf["inv_freq"], rtol=1e-6)
        assert rope_attention_factor(config.rope) == pytest.approx(hf["attention_scaling"])
    assert hf["eos_token_id"] == written["eos_token_id"]
    again = llm.DecoderConfig.from_hf_dict(stored)  # reading back is the same model
    assert again.to_hf_dict() == stored
    assert [again.layer_window(i) for i in range(again.num_layers)] == [
        config.layer_window(i) for i in range(config.num_layers)
    ]


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(model_type="mistral", qkv_bias=True), "qkv_bias/o_bias/mlp_bias"),
        (dict(model_type="qwen2", mlp_bias=True), "qkv_bias/o_bias/mlp_bias"),
        (dict(model_type="qwen2", qkv_bias=False), "qkv_bias/o_bias/mlp_bias"),
        (dict(model_type="qwen2", o_bias=True), "qkv_bias/o_bias/mlp_bias"),
        (dict(model_type="llama", qkv_bias=True), "qkv_bias/o_bias/mlp_bias"),
        (dict(model_type="llama", o_bias=True), "qkv_bias/o_bias/mlp_bias"),
        (dict(model_type="qwen3", mlp_bias=True), "qkv_bias/o_bias/mlp_bias"),
        (dict(model_type="gemma", mlp_bias=True), "qkv_bias/o_bias/mlp_bias"),
        (dict(model_type="phi3", qkv_bias=True, o_bias=True), "qkv_bias/o_bias/mlp_bias"),
        (dict(model_type="opt", mlp_bias=False), "qkv_bias/o_bias/mlp_bias"),
        (dict(model_type="gpt2", mlp_bias=False), "qkv_bias/o_bias/mlp_bias"),
        (dict(model_type="llama", sliding_window=4), "sliding_window"),
        (dict(model_type="gemma", sliding_window=4), "sliding_window"),
        (dict(model_type="gpt2", sliding_window=4), "sliding_window"),
        (
            dict(model_type="mistral", sliding_window=4, layer_types=("full_attention",) * 2),
            "layer_types",
        ),
        (dict(model_type="llama", partial_rotary_factor=0.5), "partial_rotary_factor"),
        (dict(model_type="gemma", attn_softcap=30.0), "attn_softcap"),
        (dict(model_type="qwen3", final_softcap=30.0), "final_softcap"),
        (dict(model_type="llama", query_pre_attn_scalar=64.0), "query_pre_attn_scalar"),
        (dict(model_type="gemma2", query_pre_attn_scalar=20.5), "query_pre_attn_scalar"),
        (
            dict(model_type="phi3", rope=llm.RopeConfig(rope_type="linear", factor=2.0)),
            "rope_type",
        ),
        (dict(model_type="gpt2", num_kv_heads=2), "num_kv_heads/head_dim"),
        (dict(model_type="opt", head_dim=16), "num_kv_heads/head_dim"),
        (dict(model_type="opt", pre_norm=False), "final_norm"),
        (dict(model_type="opt", norm_eps=1e-6), "norm_eps"),
    ],
)
def test_configs_the_hf_class_cannot_express_are_refused(kwargs, field, tmp_path):
    config = llm.DecoderConfig.tiny(**kwargs)
    cls = ARCHITECTURES[config.model_type]
    with pytest.raises(ValueError, match=f"{field}: transformers' {cls} cannot express"):
        config.to_hf_dict()
    with pytest.raises(ValueError, match="cannot express"):  # before anything is written
        llm.save_pretrained(llm.create_model(config), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def golden_config(family):
    return json.loads((GOLDEN / family / "config.json").read_text())


@pytest.mark.parametrize(
    "family,change,field",
    [
        ("llama2", {"auto_map": {"AutoModelForCausalLM": "modeling_x.X"}}, "auto_map"),
        ("llama2", {"partial_rotary_factor": 0.5}, "partial_rotary_factor"),
        (
            "llama2",
            {"rope_parameters": {"rope_type": "default", "partial_rotary_factor": 0.5}},
            "rope_parameters.partial_rotary_factor",
        ),
        ("llama2", {"rope_parameters": {"rope_type": "longrope", "factor": 2.0}}, "rope_type"),
        ("gemma", {"attn_logit_softcapping": 30.0}, "attn_logit_softcapping"),
        ("qwen3", {"final_logit_softcapping": 30.0}, "final_logit_softcapping"),
        ("mistral", {"query_pre_attn_scalar": 64}, "query_pre_attn_scalar"),
        ("gemma", {"use_bidirectional_attention": True}, "use_bidirectional_attention"),
        ("qwen2", {"quantization_config": {"quant_method": "gptq"}}, "quantization_config"),
        ("gpt2", {"add_cross_attention": True}, "add_cross_attention"),
        ("gpt2", {"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
        ("gpt2", {"scale_attn_weights": False}, "scale_attn_weights"),
        ("opt", {"layer_norm_elementwise_affine": False}, "layer_norm_elementwise_affine"),
        ("phi3", {"rope_parameters": {"rope_type": "longrope"}}, "rope_parameters.rope_type"),
        ("qwen2", {"hidden_act": "tanh"}, "hidden_act"),
        ("gemma2", {"model_type": "mamba"}, "model_type"),
    ],
)
def test_unimplemented_fields_are_refused_naming_file_and_field(family, change, field, tmp_path):
    file = tmp_path / "config.json"
    file.write_text(json.dumps({**golden_config(family), **change}))
    with pytest.raises(ValueError, match=f"^{file}: {field}"):
        llm.load_config(tmp_path)
    with pytest.raises(ValueError, match=field):
        llm.DecoderConfig.from_hf_dict({**golden_config(family), **change})


def test_no_op_values_of_unimplemented_fields_are_accepted():
    for family, change in [
        ("llama2", {"partial_rotary_factor": 1.0}),
        ("gemma", {"attn_logit_softcapping": None, "final_logit_softcapping": None}),
        ("gpt2", {"add_cross_attention": False, "scale_attn_weights": True}),
        ("qwen2", {"quantization_config": None, "use_sliding_window": False}),
        ("opt", {"layer_norm_elementwise_affine": True, "dropout": 0.1}),
    ]:
        config = llm.DecoderConfig.from_hf_dict({**golden_config(family), **change})
        base = llm.DecoderConfig.from_hf_dict(golden_config(family))
        assert dataclasses.replace(config, hf_extra=()) == dataclasses.replace(base, hf_extra=())


def test_remote_code_is_never_written_back():
    config = llm.load_config(GOLDEN / "llama2")
    sneaky = dataclasses.replace(config, hf_extra=(("auto_map", {"x": "y"}),) + config.hf_extra)
    assert "auto_map" not in sneaky.to_hf_dict()
    assert "auto_map" not in json.dumps(config.to_hf_dict())


def test_eos_lists_and_class_defaults():
    hf = {**golden_config("llama3"), "eos_token_id": [2, 5, 9]}
    config = llm.DecoderConfig.from_hf_dict(hf)
    assert config.eos_token_id == (2, 5, 9) and config.eos_token_ids == (2, 5, 9)
    assert config.to_hf_dict()["eos_token_id"] == [2, 5, 9]
    gemma2 = dict(golden_config("gemma2"))
    for key in ("layer_types", "attn_logit_softcapping", "query_pre_attn_scalar"):
        gemma2.pop(key)
    config = llm.DecoderConfig.from_hf_dict(gemma2)  # Gemma2Config's defaults
    assert config.layer_types == ("sliding_attention", "full_attention")
    assert (config.attn_softcap, config.query_pre_attn_scalar) == (50.0, 256.0)
    qwen = {**golden_config("qwen2"), "use_sliding_window": True, "sliding_window": 8}
    qwen["num_hidden_layers"], qwen["max_window_layers"] = 2, 1
    qwen.pop("layer_types", None)
    assert llm.DecoderConfig.from_hf_dict(qwen).layer_types == (
        "full_attention",
        "sliding_attention",
    )

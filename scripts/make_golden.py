"""Regenerate the golden parity files in ``tests/golden/`` with transformers' PyTorch models.

Three kinds of file; tests only read them (torch is never a jaxpref dependency):

* ``tests/golden/<family>/``: ``config.json`` and HF-written safetensors weights of a tiny random
  model (the Mistral one sharded, with its ``model.safetensors.index.json``); ``expected.
  safetensors`` holding, per example ``i``, ``ids_i`` (its unpadded token ids, int64) and
  ``logits_i`` (its logits from the PyTorch model run in float64 on the float32 weights); and
  ``generate.safetensors``: a left-padded batch of prompts and the tokens transformers'
  ``generate(do_sample=False)`` returns for it in float32, with an EOS list that stops rows
  early (``prompt_ids``, ``prompt_mask``, ``eos``, ``pad``, ``new_tokens``).
* ``tests/golden/configs/<name>/``: for each accepted config combination in
  ``tests/golden/configs/combos.json``, the ``config.json`` that jaxpref's ``save_pretrained``
  writes, and ``hf.json``: what transformers builds from it (parameter names and shapes, each
  layer's sliding window and attention scale, RoPE inverse frequencies and attention factor,
  activation, soft-capping).

Weights are redrawn larger than the HF initialiser (std 0.3, norm weights near 1) so attention is
far from uniform and every tensor's mapping matters; each family draws from its own seed. Run::

    /work/venv-torch/bin/python scripts/make_golden.py            # families (torch, Py 3.11)
    .venv/bin/python scripts/make_golden.py --write-configs       # configs (jaxpref, Py 3.12)
    /work/venv-torch/bin/python scripts/make_golden.py --configs  # their hf.json (torch)

``--only NAME ...`` limits the first step to some families. ``--verify DIR`` checks the other
direction: for each family sub-directory of DIR written by ``jaxpref.llm.save_pretrained``,
transformers must load it and reproduce the golden logits.
"""

import argparse
import json
import pathlib
import zlib

import numpy as np

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "golden"
CONFIGS = OUT / "configs"
LENGTHS = (8, 5, 3)
PROMPT_LENGTHS = (5, 2, 4)  # left-padded batch for greedy generation
NEW_TOKENS = 8
SMALL = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=64,
)
LLAMA_IDS = dict(bos_token_id=1, eos_token_id=2, pad_token_id=0)

FAMILIES = {
    "llama2": ("LlamaConfig", dict(SMALL, num_key_value_heads=4, tie_word_embeddings=False)),
    "llama3": (
        "LlamaConfig",
        dict(
            SMALL,
            num_key_value_heads=2,
            tie_word_embeddings=True,
            rope_parameters=dict(
                rope_type="llama3",
                rope_theta=500000.0,
                factor=4.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=16,
            ),
        ),
    ),
    "qwen2": ("Qwen2Config", dict(SMALL, num_key_value_heads=2, tie_word_embeddings=True)),
    "mistral": (
        "MistralConfig",
        dict(SMALL, num_key_value_heads=2, tie_word_embeddings=False, sliding_window=4),
    ),
    "llama_bias": (
        "LlamaConfig",
        dict(
            SMALL,
            num_key_value_heads=1,
            head_dim=16,
            attention_bias=True,
            mlp_bias=True,
            tie_word_embeddings=False,
            rope_parameters=dict(rope_type="linear", rope_theta=10000.0, factor=2.0),
        ),
    ),
    "gpt2": (
        "GPT2Config",
        dict(
            vocab_size=96,
            n_embd=32,
            n_layer=2,
            n_head=4,
            n_positions=64,
            bos_token_id=0,
            eos_token_id=0,
        ),
    ),
    "llama_yarn": (
        "LlamaConfig",
        dict(
            SMALL,
            num_key_value_heads=2,
            rope_parameters=dict(
                rope_type="yarn",
                rope_theta=10000.0,
                factor=4.0,
                original_max_position_embeddings=16,
            ),
        ),
    ),
    "llama_dynamic": (  # positions beyond max_position_embeddings=6 rescale the base
        "LlamaConfig",
        dict(
            SMALL,
            max_position_embeddings=6,
            num_key_value_heads=2,
            rope_parameters=dict(rope_type="dynamic", rope_theta=10000.0, factor=2.0),
        ),
    ),
    "gemma": (
        "GemmaConfig",
        dict(SMALL, num_key_value_heads=2, head_dim=16, hidden_act="gelu_pytorch_tanh"),
    ),
    "gemma2": (
        "Gemma2Config",
        dict(
            SMALL,
            num_key_value_heads=2,
            head_dim=8,
            sliding_window=3,
            query_pre_attn_scalar=24,
            attn_logit_softcapping=5.0,
            final_logit_softcapping=3.0,
        ),
    ),
    "qwen3": (
        "Qwen3Config",
        dict(
            SMALL,
            num_key_value_heads=2,
            head_dim=16,
            use_sliding_window=True,
            sliding_window=3,
            max_window_layers=1,
        ),
    ),
    "phi3": (
        "Phi3Config",
        dict(
            SMALL,
            num_key_value_heads=2,
            partial_rotary_factor=0.5,
            sliding_window=5,
            **LLAMA_IDS,
        ),
    ),
    "opt": (
        "OPTConfig",
        dict(
            vocab_size=96,
            hidden_size=32,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=64,
            pad_token_id=1,
            bos_token_id=2,
            eos_token_id=2,
        ),
    ),
    "opt_proj": (  # opt-350m's shape: post-norm blocks, narrower embeddings with project_in/out
        "OPTConfig",
        dict(
            vocab_size=96,
            hidden_size=32,
            word_embed_proj_dim=16,
            do_layer_norm_before=False,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=64,
            pad_token_id=1,
            bos_token_id=2,
            eos_token_id=2,
        ),
    ),
}
for _name, (_cls, _kw) in FAMILIES.items():
    if _cls not in ("GPT2Config", "OPTConfig", "Phi3Config"):
        _kw.setdefault("bos_token_id", 1)
        _kw.setdefault("eos_token_id", 2)
SHARDED = {"mistral": "40KB"}
MODEL_CLASS = {
    "LlamaConfig": "LlamaForCausalLM",
    "Qwen2Config": "Qwen2ForCausalLM",
    "Qwen3Config": "Qwen3ForCausalLM",
    "MistralConfig": "MistralForCausalLM",
    "GemmaConfig": "GemmaForCausalLM",
    "Gemma2Config": "Gemma2ForCausalLM",
    "Phi3Config": "Phi3ForCausalLM",
    "OPTConfig": "OPTForCausalLM",
    "GPT2Config": "GPT2LMHeadModel",
}


def _randomize(model, gen):
    """Redraw every parameter: std 0.3 matrices, norm weights 1 ± 0.2, biases ± 0.2."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            normish = "norm" in name or ".ln_" in name or name.endswith("ln_f.weight")
            if normish:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * noise)
            elif name.endswith("bias"):
                p.copy_(0.2 * noise)
            else:
                p.copy_(0.3 * noise)


def _load(out, model_cls):
    import transformers

    model = getattr(transformers, model_cls).from_pretrained(out, attn_implementation="eager")
    return model.eval()


def make_family(name, cfg_cls, kwargs):
    import torch
    import transformers
    from safetensors.numpy import save_file

    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    cfg = getattr(transformers, cfg_cls)(**kwargs)
    cfg._attn_implementation = "eager"
    model_cls = MODEL_CLASS[cfg_cls]
    model = getattr(transformers, model_cls)(cfg).eval()
    _randomize(model, gen)
    out = OUT / name
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*"):
        old.unlink()
    extra = {"max_shard_size": SHARDED[name]} if name in SHARDED else {}
    model.save_pretrained(out, **extra)
    (out / "generation_config.json").unlink(missing_ok=True)
    expected = {}
    for i, n in enumerate(LENGTHS):
        ids = torch.randint(0, cfg.vocab_size, (1, n), generator=gen)
        fresh = _load(out, model_cls).double()  # dynamic RoPE keeps state between calls
        with torch.no_grad():
            logits = fresh(input_ids=ids).logits[0]
        expected[f"ids_{i}"] = ids[0].numpy().astype(np.int64)
        expected[f"logits_{i}"] = logits.numpy().astype(np.float64)
    save_file(expected, str(out / "expected.safetensors"))
    save_file(_greedy_golden(name, out, model_cls, cfg, gen), str(out / "generate.safetensors"))
    print(name, sorted(p.name for p in out.iterdir()))


def _greedy_golden(name, out, model_cls, cfg, gen):
    """A left-padded prompt batch, an EOS list that stops two rows early, and transformers'
    greedy tokens; every step's top-2 logit margin is checked to be far above float32 noise."""
    import torch

    lengths = (4, 4, 4) if name == "llama_dynamic" else PROMPT_LENGTHS
    width = max(lengths)
    pad = 0 if name != "opt" and name != "opt_proj" else 1
    ids = torch.full((len(lengths), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, n in enumerate(lengths):
        ids[b, width - n :] = torch.randint(3, cfg.vocab_size, (n,), generator=gen)
        mask[b, width - n :] = 1

    def run(eos):
        model = _load(out, model_cls)
        with torch.no_grad():
            result = model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=False,
                max_new_tokens=NEW_TOKENS,
                eos_token_id=eos,
                pad_token_id=pad,
                output_scores=True,
                return_dict_in_generate=True,
            )
        return result.sequences[:, width:], torch.stack(result.scores, 1)

    free, _ = run(None)
    eos = [int(free[0, 2]), int(free[1, 4])]  # row 0 stops after 3 tokens, row 1 by 5
    tokens, scores = run(eos)
    top2 = scores.float().topk(2, dim=-1).values
    live = torch.ones(tokens.shape, dtype=torch.bool)
    for t in range(1, tokens.shape[1]):
        live[:, t] = live[:, t - 1] & ~torch.isin(tokens[:, t - 1], torch.tensor(eos))
    margin = float((top2[..., 0] - top2[..., 1])[live].min())
    assert margin > 1e-3, f"{name}: greedy top-2 margin {margin} too small to be a golden"
    return {
        "prompt_ids": ids.numpy().astype(np.int64),
        "prompt_mask": mask.numpy().astype(np.int64),
        "eos": np.array(eos, np.int64),
        "pad": np.array(pad, np.int64),
        "new_tokens": tokens.numpy().astype(np.int64),
    }


def write_configs():
    """(Python 3.12, jaxpref) each accepted combination's config.json as jaxpref writes it."""
    import sys

    sys.path.insert(0, str(OUT.parents[1]))
    from jaxpref.llm import DecoderConfig, RopeConfig

    for name, kwargs in json.loads((CONFIGS / "combos.json").read_text()).items():
        kwargs = dict(kwargs)
        if "rope" in kwargs:
            kwargs["rope"] = RopeConfig(**kwargs["rope"])
        config = DecoderConfig.tiny(**kwargs)
        (CONFIGS / name).mkdir(parents=True, exist_ok=True)
        text = json.dumps(config.to_hf_dict(), indent=2, sort_keys=True)
        (CONFIGS / name / "config.json").write_text(text + "\n")
        print(name)


def _layers(model):
    base = getattr(model, "model", None) or model.transformer
    base = getattr(base, "decoder", base)
    return list(getattr(base, "layers", None) or base.h)


def describe_configs():
    """(torch) what transformers builds from each written config.json."""
    import torch
    import transformers

    for path in sorted(CONFIGS.glob("*/config.json")):
        cfg = transformers.AutoConfig.from_pretrained(path.parent)
        cfg._attn_implementation = "eager"
        model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
        params = {k: list(v.shape) for k, v in model.state_dict().items()}
        if cfg.tie_word_embeddings:
            params.pop("lm_head.weight", None)
        layers = []
        for layer in _layers(model):
            attn = getattr(layer, "self_attn", None) or layer.attn
            mlp = layer.mlp if hasattr(layer, "mlp") else layer
            names = ("act_fn", "act", "activation_fn")  # Llama family, GPT-2, Phi-3 and OPT
            act = next(getattr(m, a) for m in (mlp, layer) for a in names if hasattr(m, a))
            window = getattr(attn, "sliding_window", "absent")
            layers.append(
                dict(
                    attn_sliding_window=window,
                    scaling=getattr(attn, "scaling", None),
                    softcap=getattr(attn, "attn_logit_softcapping", None),
                    head_dim=getattr(attn, "head_dim", None),
                    activation=type(act).__name__,
                )
            )
        rotary = next((m for n, m in model.named_modules() if n.endswith("rotary_emb")), None)
        info = dict(
            architecture=type(model).__name__,
            params=params,
            layers=layers,
            config_sliding_window=getattr(cfg, "sliding_window", None),
            final_logit_softcapping=getattr(cfg, "final_logit_softcapping", None),
            inv_freq=None if rotary is None else rotary.inv_freq.to(torch.float64).tolist(),
            attention_scaling=None if rotary is None else float(rotary.attention_scaling),
            eos_token_id=cfg.eos_token_id,
        )
        (path.parent / "hf.json").write_text(json.dumps(info, sort_keys=True) + "\n")
        print(path.parent.name, info["architecture"])


def verify(root):
    """transformers reads jaxpref-written checkpoints and reproduces the golden logits."""
    import torch
    from safetensors.numpy import load_file

    for name, (cfg_cls, _) in FAMILIES.items():
        expected = load_file(str(OUT / name / "expected.safetensors"))
        worst = 0.0
        for i in range(len(LENGTHS)):
            model = _load(pathlib.Path(root) / name, MODEL_CLASS[cfg_cls]).double()
            with torch.no_grad():
                ids = torch.from_numpy(expected[f"ids_{i}"])[None]
                logits = model(input_ids=ids).logits[0].numpy()
            worst = max(worst, float(np.abs(logits - expected[f"logits_{i}"]).max()))
        print(f"{name}: max |logit difference| {worst:.2e}")
        assert worst < 1e-6, name


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--verify", default=None)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--write-configs", action="store_true")
    parser.add_argument("--configs", action="store_true")
    args = parser.parse_args()
    if args.verify:
        verify(args.verify)
    elif args.write_configs:
        write_configs()
    elif args.configs:
        describe_configs()
    else:
        for name, (cfg_cls, kwargs) in FAMILIES.items():
            if args.only is None or name in args.only:
                make_family(name, cfg_cls, kwargs)


if __name__ == "__main__":
    main()

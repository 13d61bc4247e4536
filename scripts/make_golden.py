"""Regenerate the golden parity files in ``tests/golden/`` with transformers' PyTorch models.

Each family gets a directory with ``config.json``, HF-written safetensors weights (the Mistral one
sharded, with its ``model.safetensors.index.json``) and ``expected.safetensors`` holding, for each
example ``i``, ``ids_i`` (its unpadded token ids, int64) and ``logits_i`` (its logits from the
PyTorch model run in float64 on the float32 weights). Tests only read these files.

Weights are redrawn larger than the HF initialiser (std 0.3, norm weights near 1) so attention is
far from uniform and every tensor's mapping matters.

Run (torch is never a jaxpref dependency; a CPU build exists for Python 3.11)::

    python3 -m venv /work/torchvenv
    /work/torchvenv/bin/pip install torch==2.13.0 transformers safetensors numpy
    /work/torchvenv/bin/python scripts/make_golden.py

``--verify DIR`` checks the other direction: for each family sub-directory of DIR written by
``jaxpref.llm.hf_io.save_pretrained``, transformers must load it and reproduce the golden logits.
"""

import argparse
import json
import pathlib

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file, save_file

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "golden"
LENGTHS = (8, 5, 3)
SMALL = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=64,
)

FAMILIES = {
    "llama2": (
        "LlamaConfig",
        "LlamaForCausalLM",
        dict(SMALL, num_key_value_heads=4, tie_word_embeddings=False),
        None,
    ),
    "llama3": (
        "LlamaConfig",
        "LlamaForCausalLM",
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
        None,
    ),
    "qwen2": (
        "Qwen2Config",
        "Qwen2ForCausalLM",
        dict(SMALL, num_key_value_heads=2, tie_word_embeddings=True),
        None,
    ),
    "mistral": (
        "MistralConfig",
        "MistralForCausalLM",
        dict(SMALL, num_key_value_heads=2, tie_word_embeddings=False, sliding_window=4),
        "40KB",
    ),
    "llama_bias": (
        "LlamaConfig",
        "LlamaForCausalLM",
        dict(
            SMALL,
            num_key_value_heads=1,
            head_dim=16,
            attention_bias=True,
            mlp_bias=True,
            tie_word_embeddings=False,
            rope_parameters=dict(rope_type="linear", rope_theta=10000.0, factor=2.0),
        ),
        None,
    ),
    "gpt2": (
        "GPT2Config",
        "GPT2LMHeadModel",
        dict(
            vocab_size=96,
            n_embd=32,
            n_layer=2,
            n_head=4,
            n_positions=64,
            bos_token_id=0,
            eos_token_id=0,
        ),
        None,
    ),
}


def _randomize(model, gen):
    """Redraw every parameter: std 0.3 matrices, norm weights 1 ± 0.2, biases ± 0.2."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            if "norm" in name or ".ln_" in name or name.endswith("ln_f.weight"):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * noise)
            elif name.endswith("bias"):
                p.copy_(0.2 * noise)
            else:
                p.copy_(0.3 * noise)


def make_family(name, cfg_cls, model_cls, kwargs, shard_size, gen):
    cfg = getattr(transformers, cfg_cls)(**kwargs)
    cfg._attn_implementation = "eager"
    model = getattr(transformers, model_cls)(cfg).eval()
    _randomize(model, gen)
    out = OUT / name
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*"):
        old.unlink()
    extra = {"max_shard_size": shard_size} if shard_size else {}
    model.save_pretrained(out, **extra)
    (out / "generation_config.json").unlink(missing_ok=True)
    model = model.double()
    expected = {}
    for i, n in enumerate(LENGTHS):
        ids = torch.randint(0, cfg.vocab_size, (1, n), generator=gen)
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0]
        expected[f"ids_{i}"] = ids[0].numpy().astype(np.int64)
        expected[f"logits_{i}"] = logits.numpy().astype(np.float64)
    save_file(expected, str(out / "expected.safetensors"))
    files = sorted(p.name for p in out.iterdir())
    print(name, files, json.dumps(LENGTHS))


def verify(root):
    """transformers reads jaxpref-written checkpoints and reproduces the golden logits."""
    for name, (_, model_cls, _, _) in FAMILIES.items():
        model = (
            getattr(transformers, model_cls)
            .from_pretrained(pathlib.Path(root) / name, attn_implementation="eager")
            .double()
            .eval()
        )
        expected = load_file(str(OUT / name / "expected.safetensors"))
        worst = 0.0
        for i in range(len(LENGTHS)):
            with torch.no_grad():
                ids = torch.from_numpy(expected[f"ids_{i}"])[None]
                logits = model(input_ids=ids).logits[0].numpy()
            worst = max(worst, float(np.abs(logits - expected[f"logits_{i}"]).max()))
        print(f"{name}: max |logit difference| {worst:.2e}")
        assert worst < 1e-6, name


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--verify", default=None)
    args = parser.parse_args()
    if args.verify:
        verify(args.verify)
        return
    gen = torch.Generator().manual_seed(0)
    for name, spec in FAMILIES.items():
        make_family(name, *spec, gen)


if __name__ == "__main__":
    main()

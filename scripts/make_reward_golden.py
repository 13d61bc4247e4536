"""Golden files for scalar reward models (``*ForSequenceClassification``, ``num_labels = 1``).

Writes ``tests/golden/reward_<family>/``: a tiny transformers-made checkpoint (random weights,
std 0.3) and ``expected.safetensors`` with a right-padded batch (``ids``, ``mask``) and its
scores from the PyTorch model in float64. ``--verify DIR`` checks the other direction: for each
family sub-directory of DIR written by ``jaxpref.llm.save_reward_model``, transformers loads it
and reproduces the golden scores. Run with torch (never a jaxpref dependency)::

    /work/venv-torch/bin/python scripts/make_reward_golden.py
"""

import argparse
import pathlib
import sys

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file, save_file

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from make_golden import _randomize  # noqa: E402 - the decoders' redraw (std 0.3, norms 1 ± 0.2)

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "golden"
LENGTHS = (7, 4, 2, 7)
FAMILIES = {
    "reward_llama": (
        "LlamaConfig",
        "LlamaForSequenceClassification",
        dict(
            vocab_size=96,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            tie_word_embeddings=False,
        ),
    ),
    "reward_gpt2": (
        "GPT2Config",
        "GPT2ForSequenceClassification",
        dict(vocab_size=96, n_embd=32, n_layer=2, n_head=4, n_positions=64),
    ),
}
PAD, EOS = 0, 1


def _batch(gen, vocab):
    width = max(LENGTHS)
    ids = torch.full((len(LENGTHS), width), PAD)
    mask = torch.zeros((len(LENGTHS), width), dtype=torch.long)
    for i, n in enumerate(LENGTHS):
        ids[i, :n] = torch.randint(2, vocab, (n,), generator=gen)
        ids[i, n - 1] = EOS
        mask[i, :n] = 1
    return ids, mask


def make_family(name, cfg_cls, model_cls, kwargs, gen):
    cfg = getattr(transformers, cfg_cls)(
        **kwargs, num_labels=1, pad_token_id=PAD, eos_token_id=EOS, bos_token_id=2
    )
    cfg._attn_implementation = "eager"
    model = getattr(transformers, model_cls)(cfg).eval()
    _randomize(model, gen)
    out = OUT / name
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*"):
        old.unlink()
    model.save_pretrained(out)
    (out / "generation_config.json").unlink(missing_ok=True)
    ids, mask = _batch(gen, cfg.vocab_size)
    with torch.no_grad():
        scores = model.double()(input_ids=ids, attention_mask=mask).logits[:, 0]
    expected = {"ids": ids.numpy().astype(np.int64), "mask": mask.numpy().astype(np.int64)}
    expected["scores"] = scores.numpy().astype(np.float64)
    save_file(expected, str(out / "expected.safetensors"))
    print(name, sorted(p.name for p in out.iterdir()), expected["scores"])


def verify(root):
    for name, (_, model_cls, _) in FAMILIES.items():
        model = getattr(transformers, model_cls).from_pretrained(
            pathlib.Path(root) / name, attn_implementation="eager"
        )
        expected = load_file(str(OUT / name / "expected.safetensors"))
        with torch.no_grad():
            scores = (
                model.double()
                .eval()(
                    input_ids=torch.from_numpy(expected["ids"]),
                    attention_mask=torch.from_numpy(expected["mask"]),
                )
                .logits[:, 0]
            )
        worst = float(np.abs(scores.numpy() - expected["scores"]).max())
        print(f"{name}: max |score difference| {worst:.2e}")
        assert worst < 1e-5, name


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

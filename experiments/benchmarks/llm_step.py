"""Speed of jaxpref.llm against transformers' PyTorch model on the same checkpoint.

Measures (1) forward+backward tokens/s of a mean token-NLL step and (2) greedy generation
tokens/s (KV cache, fixed new-token count), for a ~32M-parameter Llama
(``DecoderConfig.small()``) written once to a temporary HF directory and loaded by both sides.
The PyTorch side runs in-process when ``torch`` imports, else in a subprocess of
``--torch-python`` (e.g. a Python 3.11 venv with torch; torch is never a jaxpref dependency),
so one run prints both and their ratio. On a GPU it also prints model FLOPs utilisation.

    python experiments/benchmarks/llm_step.py --torch-python /work/torchvenv/bin/python
    python experiments/benchmarks/llm_step.py --tiny        # seconds-long smoke run

The figures we saw, with dates and machine, are in the README's performance section.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12}  # dense bf16


def _timed(fn, repeats):
    fn()  # compile / warm up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def jax_side(path, args):
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxpref.llm.generate import generate
    from jaxpref.llm.hf_io import from_pretrained
    from jaxpref.llm.logps import sequence_logps

    dtype = jnp.bfloat16 if jax.default_backend() == "gpu" else jnp.float32
    model = from_pretrained(path, dtype=dtype)
    ids = jax.random.randint(
        jax.random.key(0), (args.batch, args.length), 0, model.config.vocab_size
    )
    ones = jnp.ones_like(ids)

    @nnx.jit
    def step(model, ids):
        loss = lambda m: -sequence_logps(m, ids, ones, ones.at[:, 0].set(0))[0].mean()  # noqa
        return nnx.value_and_grad(loss)(model)

    def train():
        jax.block_until_ready(step(model, ids))

    prompt = ids[:, : args.prompt]

    def gen():
        out = generate(
            model,
            prompt,
            key=jax.random.key(1),
            max_new_tokens=args.new,
            temperature=0.0,
            bucket=args.prompt,
        )
        jax.block_until_ready(out.tokens)

    t_step, t_gen = _timed(train, args.repeats), _timed(gen, args.repeats)
    n_params = sum(x.size for x in jax.tree.leaves(nnx.state(model)))
    result = dict(
        step_tokens_per_s=args.batch * args.length / t_step,
        gen_tokens_per_s=args.batch * args.new / t_gen,
        params=int(n_params),
        backend=jax.default_backend(),
        device=jax.devices()[0].device_kind,
        dtype=str(jnp.dtype(dtype)),
    )
    result["mfu"] = _mfu(result, model.config, args)
    return result


def _mfu(result, c, args):
    """6·N + 12·layers·L·width FLOPs per trained token (Kaplan et al., arXiv 2001.08361)."""
    peak = next((v for k, v in PEAK_FLOPS.items() if k in result["device"]), None)
    if result["backend"] != "gpu" or peak is None:
        return None
    per_token = 6 * result["params"] + 12 * c.num_layers * args.length * c.hidden_size
    return per_token * result["step_tokens_per_s"] / peak


def torch_side(path, args):
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    cfg = model.config
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.length))

    def train():
        model.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()

    prompt = ids[:, : args.prompt]

    def gen():
        with torch.no_grad():
            model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                do_sample=False,
                max_new_tokens=args.new,
                min_new_tokens=args.new,
                use_cache=True,
                pad_token_id=0,
            )

    t_step, t_gen = _timed(train, args.repeats), _timed(gen, args.repeats)
    return dict(
        step_tokens_per_s=args.batch * args.length / t_step,
        gen_tokens_per_s=args.batch * args.new / t_gen,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
    )


def run_torch(path, args):
    try:
        import torch  # noqa: F401
    except ImportError:
        if not args.torch_python:
            return None
        cmd = [args.torch_python, __file__, "--torch-worker", str(path), *_shape_flags(args)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    return torch_side(path, args)


def _shape_flags(args):
    return [
        "--batch",
        str(args.batch),
        "--length",
        str(args.length),
        "--prompt",
        str(args.prompt),
        "--new",
        str(args.new),
        "--repeats",
        str(args.repeats),
    ]


def make_checkpoint(path, tiny):
    from jaxpref.llm import DecoderConfig
    from jaxpref.llm.hf_io import save_pretrained
    from jaxpref.llm.model import create_model

    config = DecoderConfig.tiny() if tiny else DecoderConfig.small()
    save_pretrained(create_model(config, seed=0), path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--prompt", type=int, default=16)
    p.add_argument("--new", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--tiny", action="store_true", help="tiny model, for a smoke test")
    p.add_argument("--torch-python", default=None)
    p.add_argument("--torch-worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.torch_worker:
        print(json.dumps(torch_side(args.torch_worker, args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        make_checkpoint(tmp, args.tiny)
        ours, theirs = jax_side(tmp, args), run_torch(tmp, args)
    report = {"jaxpref": ours, "transformers_torch": theirs}
    if theirs:
        report["ratio_step"] = ours["step_tokens_per_s"] / theirs["step_tokens_per_s"]
        report["ratio_gen"] = ours["gen_tokens_per_s"] / theirs["gen_tokens_per_s"]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
    main()

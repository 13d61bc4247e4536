"""Speed of jaxpref.llm against transformers' PyTorch model on the same checkpoint.

One command prints every figure and ratio as JSON, with the machine they were measured on (CPU
model, core count, load average, BLAS / dot kernels):

* forward+backward tokens/s of a mean token-NLL step (pure ``jax.jit`` over the split state) for
  the Python-loop and ``scan_layers`` forms, with and without per-block remat that saves dot
  outputs (``dots_with_no_batch_dims_saveable``), in float32 and in bfloat16 compute over float32
  parameters; against torch float32 and torch bfloat16 autocast;
* greedy generation tokens/s (KV cache, fixed new-token count) against transformers'
  ``generate(do_sample=False)``;
* compile time of the scanned step at 2 and 24 layers (and the loop form's, for contrast);
* the machine's measured float32 matmul FLOP/s (XLA, a 2048³ GEMM), the tokens/s it bounds the
  step to (6·N + 12·layers·L·d FLOPs per token, Kaplan et al. 2001.08361) and the fraction of it
  the step reaches; on a GPU, model FLOPs utilisation against the datasheet peak.

The model is a ~32M-parameter Llama (``DecoderConfig.small()``) written once to a temporary HF
directory and loaded by both sides. PyTorch runs in a subprocess of ``--torch-python`` (a
Python 3.11 venv with torch; torch is never a jaxpref dependency) or in-process when ``torch``
imports. Rounds alternate process by process (jaxpref, then a fresh torch process), and each
ratio is reported as the median over rounds with its spread (max/min − 1), so runs on a shared
machine can be judged::

    python experiments/benchmarks/llm_step.py --torch-python /work/venv-torch/bin/python
    python experiments/benchmarks/llm_step.py --tiny        # seconds-long smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12}  # dense bf16
VARIANTS = (  # (name, scan_layers, remat, compute dtype)
    ("loop", False, "none", "float32"),
    ("loop_remat_dots", False, "dots_with_no_batch_dims_saveable", "float32"),
    ("scan", True, "none", "float32"),
    ("scan_remat_dots", True, "dots_with_no_batch_dims_saveable", "float32"),
    ("loop_bf16", False, "none", "bfloat16"),
)


def _timed(fn, repeats):
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def machine():
    cpu = platform.processor() or "unknown"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = dict(cpu=cpu, cores=os.cpu_count(), loadavg_start=list(os.getloadavg()))
    info["xla_flags"] = os.environ.get("XLA_FLAGS", "")
    try:
        import threadpoolctl

        blas = threadpoolctl.threadpool_info()
        info["numpy_blas"] = [f"{b['internal_api']} {b.get('architecture')}" for b in blas]
    except ImportError:
        info["numpy_blas"] = None
    return info


# ---- jaxpref side ---------------------------------------------------------------------------


def _train_step(model, ids):
    """A pure ``jax.jit`` value-and-grad step over the split state (no nnx.jit dispatch)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxpref.llm.logps import sequence_logps

    graphdef, state = nnx.split(model)
    ones = jnp.ones_like(ids)
    loss_mask = ones.at[:, 0].set(0)

    def loss(state, ids):
        summed, _ = sequence_logps(nnx.merge(graphdef, state), ids, ones, loss_mask)
        return -summed.mean()

    step = jax.jit(jax.value_and_grad(loss))
    return lambda: jax.block_until_ready(step(state, ids))


def jax_step_rates(path, args, steps):
    """Tokens/s of each variant's step; ``steps`` caches the compiled steps across rounds."""
    import jax
    import jax.numpy as jnp

    from jaxpref.llm.hf_io import from_pretrained

    gpu = jax.default_backend() == "gpu"
    out = {}
    for name, scan, remat, dtype in VARIANTS:
        if (gpu and dtype == "float32") or (args.tiny and remat != "none"):
            continue
        if name not in steps:
            model = from_pretrained(
                path, dtype=jnp.dtype(dtype), param_dtype=jnp.float32, scan_layers=scan, remat=remat
            )
            key = jax.random.key(0)
            ids = jax.random.randint(key, (args.batch, args.length), 0, model.config.vocab_size)
            steps[name] = _train_step(model, ids)
        steps[name]()  # warm-up (the first call compiles)
        out[name] = args.batch * args.length / _timed(steps[name], args.repeats)
    return out


def jax_generation(path, args):
    import jax
    import jax.numpy as jnp

    from jaxpref.llm.generate import generate
    from jaxpref.llm.hf_io import from_pretrained

    dtype = jnp.bfloat16 if jax.default_backend() == "gpu" else jnp.float32
    model = from_pretrained(path, dtype=dtype)
    prompt = jax.random.randint(
        jax.random.key(1), (args.batch, args.prompt), 0, model.config.vocab_size
    )

    def gen():
        out = generate(
            model,
            prompt,
            key=jax.random.key(1),
            max_new_tokens=args.new,
            temperature=0.0,
            eos_token_id=None,
            bucket=args.prompt,
        )
        jax.block_until_ready(out.tokens)

    gen()
    return args.batch * args.new / _timed(gen, args.repeats)


def compile_seconds(args):
    """Seconds to lower and compile the training step of an abstract small Llama."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxpref.llm import Decoder, DecoderConfig
    from jaxpref.llm.logps import sequence_logps

    base = DecoderConfig.tiny() if args.tiny else DecoderConfig.small()
    ids = jax.ShapeDtypeStruct((args.batch, args.length), jnp.int32)
    out, (few, many) = {}, args.compile_layers
    for layers, scan in ((few, True), (many, True), (few, False), (many, False)):
        config = dataclasses.replace(base, num_layers=layers)
        model = nnx.eval_shape(lambda: Decoder(config, scan_layers=scan, rngs=nnx.Rngs(0)))
        graphdef, state = nnx.split(model)

        def loss(state, ids):
            ones = jnp.ones_like(ids)
            m = nnx.merge(graphdef, state)
            return -sequence_logps(m, ids, ones, ones.at[:, 0].set(0))[0].mean()

        start = time.perf_counter()
        jax.jit(jax.value_and_grad(loss)).lower(state, ids).compile()
        out[f"{'scan' if scan else 'loop'}_{layers}"] = time.perf_counter() - start
    out[f"ratio_scan_{many}_over_{few}"] = out[f"scan_{many}"] / out[f"scan_{few}"]
    out[f"ratio_loop_{many}_over_{few}"] = out[f"loop_{many}"] / out[f"loop_{few}"]
    return out


def matmul_flops(size=2048, repeats=5):
    """Best float32 FLOP/s of an XLA size³ matmul."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    jax.block_until_ready(f(a, a))
    best = min(_timed(lambda: jax.block_until_ready(f(a, a)), 1) for _ in range(repeats))
    return 2 * size**3 / best


def flops_per_token(config, length, params):
    """6·N (N: matmul parameters, embedding lookup excluded) + 12·layers·L·d_attn."""
    lookup = config.vocab_size * config.embed_width if not config.tie_word_embeddings else 0
    d_attn = config.num_heads * config.head_dim
    return 6 * (params - lookup) + 12 * config.num_layers * length * d_attn


# ---- torch side -----------------------------------------------------------------------------


def torch_side(path, args):
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.length))

    def train():
        model.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()

    def train_bf16():
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()

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

    rates = {}
    for name, fn, tokens in (
        ("step_tokens_per_s", train, args.batch * args.length),
        ("step_bf16_autocast_tokens_per_s", train_bf16, args.batch * args.length),
        ("gen_tokens_per_s", gen, args.batch * args.new),
    ):
        fn()  # warm-up
        rates[name] = tokens / _timed(fn, args.repeats)
    config = torch.__config__.show()
    blas = [p.strip() for p in config.replace(",", "\n").splitlines() if "BLAS_INFO" in p]
    return dict(
        rates,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        blas=blas,
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
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
    flags = []
    for name in ("batch", "length", "prompt", "new", "repeats"):
        flags += [f"--{name}", str(getattr(args, name))]
    return flags


def make_checkpoint(path, tiny):
    from jaxpref.llm import DecoderConfig
    from jaxpref.llm.hf_io import save_pretrained
    from jaxpref.llm.model import create_model

    config = DecoderConfig.tiny() if tiny else DecoderConfig.small()
    save_pretrained(create_model(config, seed=0), path)


def _median_spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.median(values), max(values) / min(values) - 1


def benchmark(path, args):
    import jax
    from flax import nnx

    from jaxpref.llm.hf_io import from_pretrained

    compiled, rounds = {}, []
    for _ in range(args.rounds):
        ours = jax_step_rates(path, args, compiled)
        ours["gen"] = jax_generation(path, args)
        theirs = run_torch(path, args)
        rounds.append((ours, theirs))
    model = from_pretrained(path)
    params = sum(x.size for x in jax.tree.leaves(nnx.state(model)))
    report = {"machine": machine(), "rounds": args.rounds}
    names = [name for name, *_ in VARIANTS if name in rounds[0][0]]
    ours = {f"step_{n}_tokens_per_s": _median_spread([r[0][n] for r in rounds])[0] for n in names}
    best = max((n for n in names if not n.endswith("bf16")), key=lambda n: rounds[0][0][n])
    ours["step_tokens_per_s"] = ours[f"step_{best}_tokens_per_s"]  # best float32 form
    ours["step_best_variant"] = best
    ours["gen_tokens_per_s"] = _median_spread([r[0]["gen"] for r in rounds])[0]
    ours.update(
        params=int(params),
        backend=jax.default_backend(),
        device=jax.devices()[0].device_kind,
        jax=jax.__version__,
    )
    report["jaxpref"] = ours
    report["transformers_torch"] = None
    if rounds[0][1] is not None:
        theirs = {
            k: _median_spread([r[1][k] for r in rounds])[0]
            for k in rounds[0][1]
            if k.endswith("per_s")
        }
        theirs.update({k: v for k, v in rounds[0][1].items() if not k.endswith("per_s")})
        report["transformers_torch"] = theirs
        for key, ours_of, theirs_key in (
            ("ratio_step", lambda r: r[best], "step_tokens_per_s"),
            ("ratio_step_vs_torch_bf16", lambda r: r[best], "step_bf16_autocast_tokens_per_s"),
            ("ratio_gen", lambda r: r["gen"], "gen_tokens_per_s"),
        ):
            per_round = [ours_of(o) / t[theirs_key] for o, t in rounds]
            median, spread = _median_spread(per_round)
            report[key] = median
            report[f"{key}_spread"] = spread
            report[f"{key}_per_round"] = per_round
        if "loop_bf16" in names:
            bf16 = [o["loop_bf16"] / t["step_bf16_autocast_tokens_per_s"] for o, t in rounds]
            report["ratio_step_bf16_vs_torch_bf16"] = _median_spread(bf16)[0]
    report["compile_seconds"] = compile_seconds(args)
    if jax.default_backend() == "cpu":
        peak = matmul_flops(512 if args.tiny else 2048)
        per_token = flops_per_token(model.config, args.length, params)
        limit = peak / per_token
        report["matmul"] = dict(
            xla_f32_gemm_flops_per_s=peak,
            flops_per_token=per_token,
            step_limit_tokens_per_s=limit,
            fraction_of_limit=ours["step_tokens_per_s"] / limit,
        )
    else:
        report["mfu"] = _mfu(ours, model.config, args, params)
    report["machine"]["loadavg_end"] = list(os.getloadavg())
    return report


def _mfu(result, config, args, params):
    peak = next((v for k, v in PEAK_FLOPS.items() if k in result["device"]), None)
    if peak is None:
        return None
    best = max(v for k, v in result.items() if k.startswith("step_") and k.endswith("per_s"))
    return flops_per_token(config, args.length, params) * best / peak


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--prompt", type=int, default=16)
    p.add_argument("--new", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=None, help="default 3 (--tiny: 1)")
    p.add_argument("--compile-layers", type=int, nargs=2, default=None, help="default 2 24")
    p.add_argument("--tiny", action="store_true", help="tiny model, no remat, for a smoke test")
    p.add_argument("--torch-python", default=None)
    p.add_argument("--torch-worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.rounds = args.rounds or (1 if args.tiny else 3)
    args.compile_layers = args.compile_layers or ((1, 2) if args.tiny else (2, 24))
    if args.torch_worker:
        print(json.dumps(torch_side(args.torch_worker, args)))
        return None
    with tempfile.TemporaryDirectory() as tmp:
        make_checkpoint(tmp, args.tiny)
        report = benchmark(tmp, args)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
    main()

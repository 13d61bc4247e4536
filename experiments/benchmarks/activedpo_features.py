"""ActiveDPO's features: per-example LoRA gradients of r_θ (+ projection) for a pool of responses.

    python experiments/benchmarks/activedpo_features.py        # pool 64 × 128 tokens, CPU size
    python experiments/benchmarks/activedpo_features.py --preset 1b   # on a GPU

Timed (best of --repeats after a compile), all on the same model and rows:
- ``vmap`` blocks: ``llm.grad_features.lora_reward_grads`` with ``--block`` rows per vmap,
  raw gradients and projected to k (the projection's extra cost);
- one batch gradient: ∇ of Σ_rows β log π over the whole pool (the cost a DPO step pays);
- loop: a Python loop of single-row ``jax.grad`` (compiled once).
Memory: the compiled program's ``memory_analysis()`` temp bytes of the feature program for
several block sizes at a fixed pool, and for several pool sizes at a fixed block: it should grow
with the block, not with the pool.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpref import llm
from jaxpref.llm import grad_features as gf

PRESETS = {
    "cpu": dict(hidden_size=128, num_layers=4, num_heads=4, vocab_size=4096),
    "1b": dict(hidden_size=2048, num_layers=16, num_heads=32, vocab_size=32000),
}


def build(preset: str, rank: int, dtype):
    p = PRESETS[preset]
    cfg = llm.DecoderConfig.tiny(
        vocab_size=p["vocab_size"],
        hidden_size=p["hidden_size"],
        intermediate_size=4 * p["hidden_size"],
        num_layers=p["num_layers"],
        num_heads=p["num_heads"],
        num_kv_heads=p["num_heads"],
        head_dim=p["hidden_size"] // p["num_heads"],
        max_position_embeddings=512,
    )
    model = llm.create_model(cfg, seed=0, dtype=dtype)
    llm.apply_lora(model, llm.LoRAConfig(rank=rank, alpha=2.0 * rank), rngs=nnx.Rngs(0))
    return model, cfg


def rows(cfg, n: int, length: int):
    ids = np.asarray(jax.random.randint(jax.random.key(1), (n, length), 3, cfg.vocab_size))
    mask = np.ones_like(ids)
    loss = mask.copy()
    loss[:, : length // 2] = 0
    return ids, mask, loss


def best(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile / warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


def feature_temp_bytes(model, ids, mask, loss, block: int, dim) -> int:
    graphdef, lora, rest = gf._split_lora(model)
    data = {"ids": jnp.asarray(ids), "mask": jnp.asarray(mask), "loss": jnp.asarray(loss)}
    args = (graphdef, lora, rest, data, jnp.asarray(1.0), jax.random.key(0), block, dim)
    lowered = gf._features.lower(*args, "rademacher", 4096)
    return int(lowered.compile().memory_analysis().temp_size_in_bytes)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--pool", type=int, default=64)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--block", type=int, default=8)
    ap.add_argument("--dim", type=int, default=8192)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loop_rows", type=int, default=16, help="rows timed in the loop (scaled)")
    args = ap.parse_args(argv)
    model, cfg = build(args.preset, args.rank, jnp.float32)
    ids, mask, loss = rows(cfg, args.pool, args.length)
    graphdef, lora, rest = gf._split_lora(model)
    P = sum(int(x.size) for x in jax.tree.leaves(lora))

    def features(dim):
        return lambda: gf.lora_reward_grads(model, ids, mask, loss, block_size=args.block, dim=dim)

    @jax.jit
    def batch_grad(lora, ids, mask, loss):
        def total(lora):
            m = nnx.merge(graphdef, lora, rest)
            return jnp.sum(llm.sequence_logps(m, ids, mask, loss)[0])

        return jax.grad(total)(lora)

    def logp_one(lora, i, m, lo):
        model_ = nnx.merge(graphdef, lora, rest)
        return llm.sequence_logps(model_, i[None], m[None], lo[None])[0][0]

    one = jax.jit(jax.grad(logp_one))

    n_loop = min(args.loop_rows, args.pool)

    def loop():
        return [one(lora, ids[i], mask[i], loss[i]) for i in range(n_loop)]

    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    t_raw = best(features(None), args.repeats)
    say(f"features (raw): {t_raw:.3f} s")
    t_proj = best(features(args.dim), args.repeats)
    say(f"features (projected): {t_proj:.3f} s")
    t_batch = best(lambda: batch_grad(lora, ids, mask, loss), args.repeats)
    say(f"one batch gradient: {t_batch:.3f} s")
    t_loop = best(loop, args.repeats) * args.pool / n_loop
    say(f"loop (extrapolated from {n_loop} rows): {t_loop:.3f} s")
    mem_blocks = {
        b: feature_temp_bytes(model, ids, mask, loss, b, args.dim) for b in (2, args.block)
    }
    mem_pools = {}
    for n in (args.pool // 2, args.pool, 2 * args.pool):
        i, m, lo = rows(cfg, n, args.length)
        mem_pools[n] = feature_temp_bytes(model, i, m, lo, args.block, args.dim)
    out = {
        "machine": f"{platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}",
        "preset": args.preset,
        "pool": args.pool,
        "length": args.length,
        "block": args.block,
        "dim": args.dim,
        "lora_parameters": P,
        "seconds": {
            "features_raw": t_raw,
            "features_projected": t_proj,
            "one_batch_gradient": t_batch,
            "loop_of_single_gradients": t_loop,
        },
        "ratios": {
            "features_projected / batch_gradient": t_proj / t_batch,
            "features_raw / batch_gradient": t_raw / t_batch,
            "projection overhead": t_proj / t_raw - 1.0,
            "loop / features_projected": t_loop / t_proj,
        },
        "temp_bytes_by_block (pool fixed)": mem_blocks,
        "temp_bytes_by_pool (block fixed)": mem_pools,
    }
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()

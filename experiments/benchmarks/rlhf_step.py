"""Speed and memory of one RLHF (PPO) step of ``jaxpref train rlhf`` on CPU or GPU.

A rollout samples ``--new`` tokens for ``--prompts`` prompts of ``--prompt`` tokens with the
KV-cache generator, scores them with the reward model and computes old log-probs, reference
log-probs and critic values (the experience); the PPO update then runs the actor and critic
forward and backward. Printed: rollout tokens/s (generated tokens), update tokens/s (sequence
tokens), and the peak memory of the compiled update step (XLA's analysis: arguments + outputs +
temporaries − aliased; the actor, critic and their optimizer state are arguments, the reference
is passed as a frozen argument, the reward model is used in the rollout only). The models are
the ~32M-parameter Llama of ``DecoderConfig.small()`` (``--tiny``: the 2-layer test size), random
weights, as policy, reference, reward model and critic.

    python experiments/benchmarks/rlhf_step.py            # ~32M Llama
    python experiments/benchmarks/rlhf_step.py --tiny     # seconds-long smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--prompt", type=int, default=64)
    p.add_argument("--new", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tiny", action="store_true")
    args = p.parse_args(argv)

    import jax
    import numpy as np

    from jaxpref import llm
    from jaxpref.data import load_tokenizer
    from jaxpref.train import RLHFConfig, Trainable, Trainer, make_mesh
    from jaxpref.train.models import copy_module, init_model_dir, trainable
    from jaxpref.train.oracle import RewardOracle
    from jaxpref.train.rlhf import RLHF, ActorCritic
    from jaxpref.train.rollout import EncodedPrompt

    tok = load_tokenizer()
    gpu = jax.default_backend() == "gpu"
    size = llm.DecoderConfig.tiny if args.tiny else llm.DecoderConfig.small
    config = size(
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        max_position_embeddings=max(512, args.prompt + args.new),
    )
    tmp = pathlib.Path(tempfile.mkdtemp())
    init_model_dir(tmp / "policy", config, tok)
    rm = llm.reward_model_from_pretrained(tmp / "policy")
    llm.save_reward_model(rm, tmp / "rm")
    tok.save_pretrained(str(tmp / "rm"))
    cfg = RLHFConfig(
        model_name_or_path=str(tmp / "policy"),
        reward_model_path=str(tmp / "rm"),
        dataset_name="-",
        output_dir="-",
        per_device_train_batch_size=args.prompts,
        max_new_tokens=args.new,
        max_prompt_length=args.prompt,
        dtype="bfloat16" if gpu else "float32",
        length_buckets=1,
        top_p=1.0,
    )
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    oracle = RewardOracle(tmp / "rm", policy_tokenizer=tok, mesh=mesh)
    recipe = RLHF(cfg, tok, oracle)
    rng = np.random.default_rng(0)
    prompts = [
        EncodedPrompt(rng.integers(3, len(tok), args.prompt).tolist(), "", i)
        for i in range(args.prompts)
    ]
    recipe.add_split("train", prompts, {})
    actor = llm.from_pretrained(tmp / "policy", mesh=mesh)
    critic = llm.reward_model_from_pretrained(tmp / "rm", mesh=mesh)
    model = ActorCritic(actor, critic)
    parts = Trainable.split(model, trainable(cfg, "score"), {"ref": copy_module(actor)})
    trainer = Trainer(recipe, cfg, parts, mesh, tmp / "run", log=lambda _: None)

    def rollout():
        batch, _ = trainer.source(0)
        jax.block_until_ready(batch)
        return batch

    batch = rollout()
    mem = trainer.memory_analysis(batch)

    def update():
        jax.block_until_ready(trainer.step(batch))

    def timed(fn):
        fn()
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return sorted(times)[len(times) // 2]

    t_roll, t_upd = timed(rollout), timed(update)
    peak = (
        mem.argument_size_in_bytes
        + mem.output_size_in_bytes
        + mem.temp_size_in_bytes
        - mem.alias_size_in_bytes
    )
    report = {
        "device": jax.devices()[0].device_kind,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "params_per_model": sum(int(x.size) for x in jax.tree.leaves(nnx_state(actor))),
        "rollout_generated_tokens_per_s": args.prompts * args.new / t_roll,
        "rollout_s": t_roll,
        "update_tokens_per_s": args.prompts * (args.prompt + args.new) / t_upd,
        "update_s": t_upd,
        "update_compiled_peak_mib": peak / 2**20,
        "update_temp_mib": mem.temp_size_in_bytes / 2**20,
        "dtype": cfg.dtype,
    }
    print(json.dumps(report, indent=2))


def nnx_state(module):
    from flax import nnx

    return nnx.state(module)


if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
    main()

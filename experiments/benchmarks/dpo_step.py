"""DPO training speed of jaxpref's trainer against TRL's ``DPOTrainer``, same checkpoint and batch.

One DPO optimizer step = policy and reference forward passes over the chosen and rejected rows,
the policy's backward pass and an AdamW update; tokens/s counts every real token of both rows
(2 · pairs · length per step). Two settings: full fine-tuning (the reference is a frozen copy of
the initial policy, as TRL keeps it) and LoRA on every linear layer (r = 16; the reference is the
policy with its adapters off, in both). The checkpoint is the ~32M-parameter Llama of
``DecoderConfig.small()`` written once to a temporary HF directory; batches are fixed-length
random token rows (prompt ``--prompt`` + response ``--response`` tokens per row).

jaxpref runs :class:`jaxpref.train.Trainer` (the same jitted step ``jaxpref train dpo`` uses); TRL
runs ``DPOTrainer.training_step`` + ``optimizer.step`` on its own collated batch, in a subprocess
of ``--torch-python`` (a Python 3.11 venv with torch, transformers, trl and peft; torch is never a
jaxpref dependency). Peak memory: jaxpref's is XLA's compiled-program analysis (arguments +
outputs + temporaries − aliased), torch's is the growth of the process's peak RSS during the
steps; the two measure different things and are printed side by side, not divided. On a GPU
the jaxpref side also prints MFU (6·N_trained-flops convention, see ``_mfu``).

    python experiments/benchmarks/dpo_step.py --torch-python /work/venv-torch/bin/python
    python experiments/benchmarks/dpo_step.py --tiny          # seconds-long smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import tempfile
import time

PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12}  # dense bf16


def _cpu() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _rows(args, vocab):
    import numpy as np

    rng = np.random.default_rng(0)
    rows = []
    for _ in range(args.pairs):
        rows.append(
            {
                "prompt_ids": rng.integers(3, vocab, args.prompt).tolist(),
                "chosen_ids": rng.integers(3, vocab, args.response).tolist(),
                "rejected_ids": rng.integers(3, vocab, args.response).tolist(),
            }
        )
    return rows


def _timed(fn, repeats):
    fn()  # compile / warm up
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]  # median


def jax_side(path, args, lora: bool):
    import jax
    import numpy as np

    from jaxpref import llm
    from jaxpref.data import EncodedPair
    from jaxpref.train import DPOConfig, Trainable, Trainer, make_mesh
    from jaxpref.train.dpo import DPO
    from jaxpref.train.models import add_lora, copy_module, trainable

    gpu = jax.default_backend() == "gpu"
    config = DPOConfig(
        model_name_or_path=str(path),
        dataset_name="-",
        output_dir="-",
        per_device_train_batch_size=args.pairs,
        max_length=args.prompt + args.response,
        max_prompt_length=args.prompt,
        use_peft=lora,
        lora_r=16,
        lora_target_modules=("all-linear",),
        dtype="bfloat16" if gpu else "float32",
        length_buckets=1,
    )
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    model = llm.from_pretrained(path, mesh=mesh)
    frozen = {}
    if lora:
        add_lora(model, config, mesh)
    else:
        frozen["ref"] = copy_module(model)

    class Tok:
        pad_token_id, eos_token_id = 0, 2

    recipe = DPO(config, Tok(), reference="adapters_off" if lora else "frozen")
    rows = _rows(args, model.config.vocab_size)
    recipe.add_split(
        "train",
        [EncodedPair(r["prompt_ids"], r["chosen_ids"], r["rejected_ids"]) for r in rows],
        {},
    )
    trainer = Trainer(
        recipe,
        config,
        Trainable.split(model, trainable(config), frozen),
        mesh,
        pathlib.Path(tempfile.mkdtemp()),
        log=lambda _: None,
    )
    batch = trainer.batch("train", np.arange(args.pairs)[None])
    mem = trainer.memory_analysis(batch)

    def step():
        jax.block_until_ready(trainer.step(batch))

    t = _timed(step, args.repeats)
    tokens = 2 * args.pairs * (args.prompt + args.response)
    trained = sum(int(x.size) for x in jax.tree.leaves(trainer.state.params))
    total = trained + sum(int(x.size) for x in jax.tree.leaves(trainer.state.rest))
    peak = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
    peak -= mem.alias_size_in_bytes
    out = dict(
        tokens_per_s=tokens / t,
        step_ms=1e3 * t,
        compiled_peak_mib=peak / 2**20,
        temp_mib=mem.temp_size_in_bytes / 2**20,
        trained_params=trained,
        params=total,
        device=jax.devices()[0].device_kind,
        dtype=config.dtype,
    )
    out["mfu"] = _mfu(out, model.config, args)
    return out


def _mfu(result, c, args):
    """Model FLOPs per step / (time · peak): forward 2N per token for policy and reference,
    backward 4N per token for the policy (N = all weights; attention 12·layers·L·width added)."""
    peak = next((v for k, v in PEAK_FLOPS.items() if k in result["device"]), None)
    if peak is None:
        return None
    attn = 12 * c.num_layers * (args.prompt + args.response) * c.hidden_size
    per_token = 2 * result["params"] + 6 * result["params"] + 3 * attn
    return per_token * result["tokens_per_s"] / peak


def torch_side(path, args, lora: bool):
    import torch
    import transformers
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    torch.manual_seed(0)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    rows = _rows(args, model.config.vocab_size)
    data = Dataset.from_list([{"prompt": "a", "chosen": " b", "rejected": " c"}] * 4)
    cfg = DPOConfig(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=args.pairs,
        report_to=[],
        max_length=None,
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
    )
    peft = None
    if lora:
        from peft import LoraConfig

        peft = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", lora_dropout=0.0)
    trainer = DPOTrainer(
        model=model, args=cfg, train_dataset=data, processing_class=tok, peft_config=peft
    )
    trainer.create_optimizer_and_scheduler(num_training_steps=1000)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train() otherwise
    trainer.model.train()
    batch = trainer._prepare_inputs(trainer.data_collator(rows))
    net = trainer.model

    def step():
        trainer.training_step(net, batch)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = _timed(step, args.repeats)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tokens = 2 * args.pairs * (args.prompt + args.response)
    return dict(
        tokens_per_s=tokens / t,
        step_ms=1e3 * t,
        peak_rss_growth_mib=(after - before) / 1024,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        trl=__import__("trl").__version__,
    )


def run_torch(path, args, lora):
    if not args.torch_python:
        return None
    cmd = [args.torch_python, __file__, "--torch-worker", str(path), *_shape_flags(args)]
    cmd += ["--lora"] if lora else []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENBLAS_", "XLA_"))}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"torch side failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _shape_flags(args):
    flags = []
    for name in ("pairs", "prompt", "response", "repeats"):
        flags += [f"--{name}", str(getattr(args, name))]
    return flags


def make_checkpoint(path, tiny):
    from jaxpref import llm
    from jaxpref.data import load_tokenizer

    tok = load_tokenizer()
    config = (
        llm.DecoderConfig.tiny(vocab_size=len(tok))
        if tiny
        else llm.DecoderConfig.small(vocab_size=len(tok))
    )
    config = config.__class__(**{**config.__dict__, "pad_token_id": 0, "eos_token_id": 2})
    llm.save_pretrained(llm.create_model(config, seed=0), path)
    tok.save_pretrained(str(path))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=4, help="preference pairs per step")
    p.add_argument("--prompt", type=int, default=64)
    p.add_argument("--response", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tiny", action="store_true", help="tiny model, for a smoke test")
    p.add_argument("--torch-python", default=None)
    p.add_argument("--torch-worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--lora", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.torch_worker:
        print(json.dumps(torch_side(args.torch_worker, args, args.lora)))
        return
    report = {"cpu": _cpu(), "cores": os.cpu_count(), "load_average": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        make_checkpoint(tmp, args.tiny)
        for name, lora in (("full", False), ("lora", True)):
            ours, theirs = jax_side(tmp, args, lora), run_torch(tmp, args, lora)
            row = {"jaxpref": ours, "trl": theirs}
            if theirs:
                row["ratio_tokens_per_s"] = ours["tokens_per_s"] / theirs["tokens_per_s"]
            report[name] = row
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
    main()

"""PM RLHF's Table 2 on language models: KL-RLHF against PM and conditional PM RLHF on HH-RLHF.

The pipeline of the paper's official code (a DeepSpeed-Chat fork) at a size a CPU runs: the
shipped HH-RLHF split (2,312 rows) loses a held-out part for evaluation, the rest is cut
20 % / 40 % / 40 % (``--data_split 2,4,4``) into SFT, reward-model and RL data; a small Llama
with the shipped tokenizer is fine-tuned (SFT on prompt + chosen), a reward model is trained
from it, and each method runs PPO from the SFT model with the reward model as oracle and as the
critic's start: KL-RLHF (``penalty=kl``), unconditional PM (``pm``), the official code's
token-gated conditional PM (``cond_pm_token``, α grid) and the paper's sequence-gated one
(``cond_pm_sequence``, Definition 4.1, α grid), for each β and seed; plus the token gate at
α = 1, which must equal KL-RLHF exactly. Every trained policy is evaluated on the held-out
prompts with ``jaxpref.train.alignment_eval`` (the five columns, under both definitions).
"""

from __future__ import annotations

import dataclasses
import itertools
import pathlib
import tempfile

import numpy as np

from jaxpref.data import completions_from_rows, encode_completions
from jaxpref.experiments import _llm_oracle, _report
from jaxpref.experiments.registry import scale_configs

COLUMNS = ("pm_divergence", "pm_squared_gap", "length", "perplexity", "entropy", "kl")
LABELS = {"kl": "KL-RLHF", "pm": "PM", "cond_pm_token": "cPM-token", "cond_pm_sequence": "cPM-seq"}


@dataclasses.dataclass(frozen=True)
class Config:
    num_eval: int = 128  # held-out rows (prompts for the columns, human responses for ppl)
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    max_prompt_length: int = 96
    max_length: int = 160
    max_new_tokens: int = 32
    batch_size: int = 8
    sft_steps: int = 200
    rm_steps: int = 200
    rl_steps: int = 60
    sft_lr: float = 1e-3
    rm_lr: float = 3e-4
    rl_lr: float = 1e-5
    betas: tuple = (0.1, 1.0)
    alphas: tuple = (0.3,)
    methods: tuple = ("kl", "pm", "cond_pm_token", "cond_pm_sequence")
    seeds: tuple = (0,)
    eval_prompts: int = 64
    seed: int = 0


config = scale_configs(
    Config(),
    test=dict(
        num_eval=16,
        hidden_size=32,
        num_layers=2,
        max_prompt_length=24,
        max_length=40,
        max_new_tokens=8,
        batch_size=4,
        sft_steps=30,
        rm_steps=8,
        rl_steps=4,
        betas=(1.0,),
        methods=("kl", "pm"),
        eval_prompts=8,
        sft_lr=3e-3,
        rl_lr=3e-3,
    ),
    quickstart=dict(betas=(1.0,), rl_steps=30, eval_prompts=32),  # what a CPU runs in minutes
    full=dict(
        num_eval=230,
        hidden_size=256,
        num_layers=6,
        num_heads=8,
        max_new_tokens=64,
        sft_steps=600,
        rm_steps=600,
        rl_steps=200,
        betas=(0.1, 0.5, 1.0),
        alphas=(0.1, 0.3, 0.5),
        seeds=(0, 1, 2),
        eval_prompts=128,
    ),
)


def runs(cfg: Config) -> list[dict]:
    """Every (method, α, β, seed) RL run, the α = 1 token gate included."""
    out = []
    for beta, seed in itertools.product(cfg.betas, cfg.seeds):
        for method in cfg.methods:
            alphas = cfg.alphas if method.startswith("cond") else (None,)
            out += [dict(method=method, alpha=a, beta=beta, seed=seed) for a in alphas]
        out.append(dict(method="cond_pm_token", alpha=1.0, beta=beta, seed=seed))
    return out


def num_units(cfg: Config) -> int:
    return 2 + len(runs(cfg))


def run(cfg: Config, *, progress=None, work_dir=None) -> dict:
    from jaxpref.train import RLHFConfig
    from jaxpref.train.alignment_eval import alignment_columns

    tick = progress or (lambda n: None)
    root = pathlib.Path(work_dir) if work_dir else pathlib.Path(tempfile.mkdtemp("pm_rlhf_llm"))
    pipe = _llm_oracle.prepare(cfg, root)  # the paper's 20 / 40 / 40 of what is not held out
    tick(2)  # SFT and the reward model
    held = _llm_oracle.held_out(cfg, pipe, root / "rm")
    human, _ = encode_completions(  # held-out human responses, for the code's perplexity
        pipe.tokenizer,
        completions_from_rows(held.rows).examples,
        max_length=cfg.max_length,
        max_prompt_length=cfg.max_prompt_length,
    )
    results = []
    for spec in runs(cfg):
        name = f"{spec['method']}_a{spec['alpha']}_b{spec['beta']}_s{spec['seed']}"
        rl = pipe.train(
            RLHFConfig(
                model_name_or_path=str(root / "sft"),
                reward_model_path=str(root / "rm"),
                dataset_name=str(root / "data_rl"),
                output_dir=str(root / "rl" / name),
                penalty=spec["method"],
                alpha=spec["alpha"] or 0.1,
                beta=spec["beta"],
                max_steps=cfg.rl_steps,
                learning_rate=cfg.rl_lr,
                max_new_tokens=cfg.max_new_tokens,
                dataset_test_split="none",
                **pipe.common | {"logging_steps": max(1, cfg.rl_steps // 10), "seed": spec["seed"]},
            )
        )
        cols = alignment_columns(
            rl.model,
            held.ref,
            held.oracle,
            held.prompts,
            human,
            beta=spec["beta"],
            sampling=held.sampling,
            tokenizer=pipe.tokenizer,
            mesh=pipe.mesh,
            seed=spec["seed"] + 100,
            batch_rows=cfg.batch_size,
        )
        results.append({**spec, "columns": cols, "last_train_row": rl.history[-1]})
        tick(1)
    return {
        "config": dataclasses.asdict(cfg),
        "data": pipe.sizes,
        "reward_model": pipe.final_eval["rm"],
        "runs": results,
        "work_dir": str(root),
    }


def _label(r: dict) -> str:
    gated = "" if r["alpha"] is None else f" α={r['alpha']}"
    return LABELS[r["method"]] + gated


def table(results: dict) -> str:
    head = f"{'β':>4} {'method':<18}" + "".join(f"{c:>15}" for c in COLUMNS)
    lines = [head]
    for r in results["runs"]:
        cols = r["columns"]
        lines.append(
            f"{r['beta']:>4} {_label(r):<18}" + "".join(f"{cols[c]:>15.4f}" for c in COLUMNS)
        )
    return "\n".join(lines)


def plot(results: dict, out_dir) -> list[pathlib.Path]:
    runs_ = [
        r for r in results["runs"] if not (r["method"] == "cond_pm_token" and r["alpha"] == 1.0)
    ]
    betas = sorted({r["beta"] for r in runs_})
    labels = sorted({_label(r) for r in runs_}, key=lambda s: (s != "KL-RLHF", s))
    fig, (axes,) = _report.figure(1, len(COLUMNS), (3.2 * len(COLUMNS), 3.8))
    width = 0.8 / len(labels)
    for ax, col in zip(axes, COLUMNS):
        for j, label in enumerate(labels):
            vals = [
                np.mean([r["columns"][col] for r in runs_ if r["beta"] == b and _label(r) == label])
                for b in betas
            ]
            ax.bar(np.arange(len(betas)) + j * width, vals, width, label=label)
        ax.set_xticks(np.arange(len(betas)) + 0.4 - width / 2, [f"β={b}" for b in betas])
        ax.set_title(col.replace("_", " "), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("value (mean over seeds)")
    axes[-1].legend(fontsize=7, loc="upper right")
    fig.suptitle(
        "PM RLHF, Table 2's columns on a small Llama and the shipped HH-RLHF split "
        f"({len(results['config']['seeds'])} seed(s))",
        fontsize=11,
    )
    return [_report.save(fig, out_dir, "pm_rlhf_llm_table2.png", dpi=110)]

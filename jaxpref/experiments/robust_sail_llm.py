"""Oracle-robust online DPO (robust SAIL) on a language model with a misspecified oracle.

A small Llama is fine-tuned on the shipped HH-RLHF split (SFT), a reward model is trained from it
(the *true* oracle), and a noisy copy of that reward model (its head perturbed, ``noise``) labels
the online pairs (Bradley–Terry draws). Online DPO then runs from the SFT model for each ρ
(``robust_rho``; ``None`` is nominal online DPO) and seed, and each final policy is judged by the
true oracle on held-out prompts: mean reward, win-rate against the SFT reference, sampled KL.
The fraction of SFT pairs whose true preference lies within ρ of the noisy one (the pointwise
set U_ρ covers P* there) is reported per ρ. ρ = 0 must reproduce the nominal run exactly.

References: Li, Gaur & Aggarwal, "Oracle-Robust Online Alignment for Large Language Models",
arXiv 2602.20457 (theory/robust_sail.md, [Reconstruction]); Guo et al., arXiv 2402.04792.
"""

from __future__ import annotations

import dataclasses
import itertools
import pathlib
import tempfile

import jax
import numpy as np

from jaxpref import robust
from jaxpref.experiments import _llm_oracle, _report
from jaxpref.experiments.registry import scale_configs


@dataclasses.dataclass(frozen=True)
class Config:
    num_eval: int = 128
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    max_prompt_length: int = 96
    max_length: int = 160
    max_new_tokens: int = 32
    batch_size: int = 8
    sft_steps: int = 200
    rm_steps: int = 200
    rl_steps: int = 40
    sft_lr: float = 1e-3
    rm_lr: float = 3e-4
    rl_lr: float = 1e-4
    beta: float = 0.1
    noise: float = 1.0  # the noisy oracle's head: w + noise·‖w‖·ε/√d
    rhos: tuple = (None, 0.0, 0.1, 0.3)
    seeds: tuple = (0, 1)
    eval_prompts: int = 64
    seed: int = 0


config = scale_configs(
    Config(),
    test=dict(num_eval=8, hidden_size=32, num_layers=2, max_prompt_length=24, max_length=40)
    | dict(max_new_tokens=6, batch_size=4, sft_steps=10, rm_steps=6, rl_steps=2, sft_lr=3e-3)
    | dict(rl_lr=3e-3, rhos=(None, 0.0, 0.3), seeds=(0,), eval_prompts=4),
    full=dict(num_eval=230, hidden_size=256, num_layers=6, num_heads=8, max_new_tokens=64)
    | dict(sft_steps=600, rm_steps=600, rl_steps=200, rhos=(None, 0.0, 0.05, 0.1, 0.2, 0.3))
    | dict(seeds=(0, 1, 2), eval_prompts=128),
)


def num_units(cfg: Config) -> int:
    return 2 + len(cfg.rhos) * len(cfg.seeds)


def run(cfg: Config, *, progress=None, work_dir=None) -> dict:
    from jaxpref.train import OnlineDPOConfig

    tick = progress or (lambda n: None)
    root = pathlib.Path(work_dir or tempfile.mkdtemp("robust_sail_llm"))
    pipe = _llm_oracle.prepare(cfg, root)
    tick(1)
    noisy = _llm_oracle.noisy_copy(root / "rm", root / "rm_noisy", cfg.noise, cfg.seed)
    evaluate = _llm_oracle.PolicyEval(cfg, pipe, root / "rm")
    # U_ρ(P°) of the noisy oracle's preference on two SFT responses per held-out prompt
    true, observed = evaluate.reference_pair_scores(noisy, jax.random.key(cfg.seed + 9))
    rhos = [rho for rho in cfg.rhos if rho is not None]
    coverage = dict(zip(map(str, rhos), robust.bt_set_coverage(true, observed, rhos)))
    tick(1)
    results = []
    for seed, rho in itertools.product(cfg.seeds, cfg.rhos):
        options = pipe.online_options(cfg, f"rho{rho}_s{seed}", seed, noisy)
        out = pipe.train(
            OnlineDPOConfig(
                robust_rho=rho, max_steps=cfg.rl_steps, dataset_test_split="none", **options
            )
        )
        history = [r for r in out.history if "loss" in r]
        results.append(
            {
                "rho": rho,
                "seed": seed,
                "true_oracle": evaluate(out.model),
                "excess": [r.get("loss/robust_excess", 0.0) for r in history],
                "loss": [r["loss"] for r in history],
                "labelled_pairs": cfg.rl_steps * cfg.batch_size,
            }
        )
        tick(1)
    return {
        "config": dataclasses.asdict(cfg),
        "data": pipe.sizes,
        "set_coverage": coverage,
        "runs": results,
        "work_dir": str(root),
    }


def _label(rho) -> str:
    return "nominal" if rho is None else f"robust ρ={rho}"


def table(results: dict) -> str:
    lines = [f"{'method':<16}{'seed':>5}{'reward':>10}{'win-rate':>10}{'KL':>10}{'excess':>10}"]
    for r in results["runs"]:
        t = r["true_oracle"]
        lines.append(
            f"{_label(r['rho']):<16}{r['seed']:>5}{t['reward']:>10.4f}{t['win_rate']:>10.3f}"
            f"{t['kl']:>10.3f}{np.mean(r['excess']):>10.4f}"
        )
    cov = ", ".join(f"ρ={k}: {v:.2f}" for k, v in results["set_coverage"].items())
    return "\n".join(lines + [f"U_ρ covers the true preference on: {cov}"])


def plot(results: dict, out_dir) -> list[pathlib.Path]:
    labels = list(dict.fromkeys(_label(r["rho"]) for r in results["runs"]))
    fig, axes = _report.figure(1, 3, (11, 3.6))
    for ax, key in zip(axes[0], ("reward", "win_rate", "kl")):
        for j, label in enumerate(labels):
            vals = [r["true_oracle"][key] for r in results["runs"] if _label(r["rho"]) == label]
            ax.scatter(np.full(len(vals), j), vals)
            ax.bar(j, np.mean(vals), alpha=0.4)
        ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=8)
        ax.set_title(f"true oracle: {key.replace('_', ' ')}", fontsize=10)
    fig.suptitle("Robust vs nominal online DPO, noisy-oracle labels (dots: seeds)", fontsize=11)
    return [_report.save(fig, out_dir, "robust_sail_llm.png", dpi=110)]

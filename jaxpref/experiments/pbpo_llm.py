"""PbPO on a language model (the pessimistic step and its penalised Stackelberg relaxation)
against uniform exploration, greedy (no pessimism) and on-policy online DPO: the true oracle's
reward of the policy against the number of labelled pairs.

A small Llama is fine-tuned on the shipped HH-RLHF split (SFT) and a reward model is trained from
it; that reward model is the oracle (Bradley–Terry labels) and its backbone gives the frozen
features φ, so the linear reward ⟨θ, φ⟩ is well specified (θ* is the oracle's head). Each arm runs
K episodes from the SFT model with LoRA (``jaxpref train pbpo``), evaluated on the held-out
prompts after every episode; online DPO labels ``batch_size`` pairs per step for the same number
of steps. The final policies are judged on held-out prompts (reward, win-rate against the SFT
reference, sampled KL).

References: Jia, "Bootstrapping LLMs via Preference-Based Policy Optimization", arXiv 2511.12867
(theory/pbpo.md, [Reconstruction]); Guo et al., arXiv 2402.04792 (online DPO).
"""

from __future__ import annotations

import dataclasses
import itertools
import pathlib
import tempfile

import numpy as np

from jaxpref.experiments import _llm_oracle, _report
from jaxpref.experiments.registry import scale_configs

ARMS = {  # arm -> PbPO options (online_dpo is the OnlineDPO recipe)
    "pbpo": dict(exploration="enhancer", policy_objective="pessimistic"),
    "pbpo_local": dict(exploration="enhancer", policy_objective="pessimistic", radius_rule="local"),
    "uniform": dict(exploration="uniform", policy_objective="pessimistic"),
    "greedy": dict(exploration="enhancer", policy_objective="greedy"),
    "stackelberg": dict(exploration="enhancer", policy_objective="stackelberg"),
    "online_dpo": None,
}


@dataclasses.dataclass(frozen=True)
class Config:
    num_eval: int = 64
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    max_prompt_length: int = 96
    max_length: int = 160
    max_new_tokens: int = 32
    batch_size: int = 8
    sft_steps: int = 200
    rm_steps: int = 200
    sft_lr: float = 1e-3
    rm_lr: float = 3e-4
    rl_lr: float = 1e-4
    beta: float = 0.1
    num_episodes: int = 6
    episode_steps: int = 4
    pairs_per_episode: int = 16
    num_candidates: int = 4
    rloo_k: int = 2
    bound_theta: float | None = None  # B ≥ ‖θ*‖ (None: the oracle head's norm, known here)
    arms: tuple = ("pbpo", "pbpo_local", "uniform", "greedy", "stackelberg", "online_dpo")
    seeds: tuple = (0,)
    eval_prompts: int = 64
    seed: int = 0


config = scale_configs(
    Config(),
    test=dict(num_eval=4, hidden_size=32, num_layers=2, max_prompt_length=24, max_length=40)
    | dict(max_new_tokens=6, batch_size=4, sft_steps=10, rm_steps=6, sft_lr=3e-3, rl_lr=3e-3)
    | dict(num_episodes=2, episode_steps=1, pairs_per_episode=4, num_candidates=2)
    | dict(arms=("pbpo", "uniform", "greedy", "online_dpo"), eval_prompts=4),
    full=dict(num_eval=128, hidden_size=256, num_layers=6, num_heads=8, max_new_tokens=64)
    | dict(sft_steps=600, rm_steps=600, num_episodes=12, seeds=(0, 1, 2), eval_prompts=128),
)


def num_units(cfg: Config) -> int:
    return 1 + len(cfg.arms) * len(cfg.seeds)


def run(cfg: Config, *, progress=None, work_dir=None) -> dict:
    tick = progress or (lambda n: None)
    root = pathlib.Path(work_dir or tempfile.mkdtemp("pbpo_llm"))
    pipe = _llm_oracle.prepare(cfg, root)
    bound = cfg.bound_theta or float(np.linalg.norm(_llm_oracle.oracle_head(root / "rm")))
    evaluate = _llm_oracle.PolicyEval(cfg, pipe, root / "rm")
    tick(1)
    results = []
    for seed, arm in itertools.product(cfg.seeds, cfg.arms):
        out = pipe.train(_arm_config(cfg, pipe, arm, seed, bound))
        results.append(
            {
                "arm": arm,
                "seed": seed,
                "curve": _curve(cfg, arm, out.history),
                "true_oracle": evaluate(out.model),
                "train": [r for r in out.history if "loss" in r],
            }
        )
        tick(1)
    return {
        "config": dataclasses.asdict(cfg),
        "data": pipe.sizes,
        "bound_theta": bound,
        "runs": results,
        "work_dir": str(root),
    }


def _curve(cfg, arm, history) -> list[dict]:
    """The held-out oracle score after each evaluation against the labelled pairs so far:
    ``batch_size`` a step for online DPO, ``pairs_per_episode`` an episode for PbPO."""
    if arm == "online_dpo":
        key, steps, pairs = "eval_score", 1, cfg.batch_size
    else:
        key, steps, pairs = "eval_oracle_score", cfg.episode_steps, cfg.pairs_per_episode
    evals = _report.eval_points(history, key)  # the last step may come twice: kept once
    return [{"pairs": s // steps * pairs, "oracle_score": v} for s, v in evals]


def _arm_config(cfg, pipe, arm, seed, bound):
    from jaxpref.train import OnlineDPOConfig, PbPOConfig

    options = pipe.online_options(cfg, f"{arm}_s{seed}", seed, pipe.root / "rm")
    options["eval_steps"] = cfg.episode_steps
    if arm == "online_dpo":
        return OnlineDPOConfig(max_steps=cfg.num_episodes * cfg.episode_steps, **options)
    same = ("num_episodes", "episode_steps", "pairs_per_episode", "num_candidates", "rloo_k")
    kept = {name: getattr(cfg, name) for name in same}  # the PbPO fields of cfg, as they are
    return PbPOConfig(bound_theta=bound, **kept, **ARMS[arm], **options)


def table(results: dict) -> str:
    lines = [f"{'arm':<17}{'seed':>5}{'pairs':>7}{'reward':>10}{'win-rate':>10}{'KL':>9}"]
    for r in results["runs"]:
        t, pairs = r["true_oracle"], r["curve"][-1]["pairs"] if r["curve"] else 0
        lines.append(
            f"{r['arm']:<17}{r['seed']:>5}{pairs:>7}{t['reward']:>10.4f}{t['win_rate']:>10.3f}"
            f"{t['kl']:>9.3f}"
        )
    return "\n".join(lines)


def plot(results: dict, out_dir) -> list[pathlib.Path]:
    points = lambda r: [(p["pairs"], p["oracle_score"]) for p in r["curve"]]  # noqa: E731
    curves = _report.seed_curves(results["runs"], "arm", points)  # mean over seeds
    fig, ((ax,),) = _report.figure(1, 1, (5.5, 3.8))
    ylabel = "oracle reward of the policy (held-out prompts)"
    _report.curve_lines(ax, curves, ylabel=ylabel, errorbars=False)
    return [_report.save(fig, out_dir, "pbpo_llm.png", dpi=110)]

"""ActiveDPO's Figure 1 at a size a CPU runs: mean oracle reward of generated responses on held-out
prompts against the number of labelled pairs, for every selector on the same loop.

The shipped HH-RLHF split (2,312 rows) is cut into held-out prompts, SFT rows, reward-model rows
and the prompt pool; a small Llama with the shipped tokenizer is SFT'd on prompt + chosen, a
reward model is trained from it on the human labels (the oracle), and each selector runs
``jaxpref train active-dpo`` from the SFT model (π_ref = SFT, LoRA) for every seed, evaluated on
the held-out prompts before the first round and after each round.

Before the runs, the machinery is checked on the real model's features: per-example LoRA
gradients of r_θ on HH pairs, projected blockwise, against the materialised projection; the
low-rank greedy picks against brute-force log-det greedy, and its scores against the direct V⁻¹.
"""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpref import data, design, llm
from jaxpref.experiments import _llm_oracle, _report
from jaxpref.experiments.registry import scale_configs
from jaxpref.llm.grad_features import lora_projection_error, lora_reward_grads

SELECTORS = ("activedpo", "adpo_plus", "apo", "aplp", "uniform")


@dataclasses.dataclass(frozen=True)
class Config:
    num_eval: int = 64  # held-out prompts (evaluated after every round)
    num_sft: int = 600
    num_rm: int = 800
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    max_prompt_length: int = 64
    max_length: int = 128
    max_new_tokens: int = 24
    batch_size: int = 8
    sft_steps: int = 150
    rm_steps: int = 150
    sft_lr: float = 1e-3
    rm_lr: float = 3e-4
    dpo_lr: float = 1e-4
    beta: float = 0.1
    rounds: int = 4
    budget: int = 16
    prompts_per_round: int = 32
    epochs_per_round: int = 2
    projection_dim: int = 1024
    lora_r: int = 8
    selectors: tuple = SELECTORS
    seeds: tuple = (0, 1)
    check_pairs: int = 12
    seed: int = 0


config = scale_configs(
    Config(),
    test=dict(num_eval=4, num_sft=48, num_rm=48, hidden_size=32, max_prompt_length=24)
    | dict(max_length=40, max_new_tokens=4, sft_steps=4, rm_steps=4, rounds=2, budget=4)
    | dict(prompts_per_round=4, epochs_per_round=1, projection_dim=32, lora_r=2)
    | dict(selectors=("activedpo", "uniform"), seeds=(0,), check_pairs=6),
    quickstart=dict(num_eval=16, num_sft=300, num_rm=400, hidden_size=32, max_prompt_length=48)
    | dict(max_length=96, max_new_tokens=12, sft_steps=60, rm_steps=60, rounds=3, budget=8)
    | dict(prompts_per_round=12, epochs_per_round=4, dpo_lr=2e-3, projection_dim=256)
    | dict(lora_r=4, seeds=(0,)),
    full=dict(hidden_size=128, num_layers=4, sft_steps=400, rm_steps=400, rounds=6, budget=32)
    | dict(prompts_per_round=64, projection_dim=8192, seeds=(0, 1, 2)),
)


def num_units(cfg: Config) -> int:
    return 2 + len(cfg.selectors) * len(cfg.seeds)


def run(cfg: Config, *, progress=None, work_dir=None) -> dict:
    from jaxpref.train import ActiveDPOConfig
    from jaxpref.train.active_dpo import steps_per_round

    tick = progress or (lambda n: None)
    root = pathlib.Path(work_dir) if work_dir else pathlib.Path(tempfile.mkdtemp("activedpo"))
    parts = {"test": cfg.num_eval, "sft": cfg.num_sft, "rm": cfg.num_rm, "pool": -1}
    pipe = _llm_oracle.prepare(cfg, root, parts=parts, max_positions=256)
    tick(1)
    checks = machinery_checks(cfg, root / "sft", root / "data_all", pipe.tokenizer)
    tick(1)
    same = ("rounds", "budget", "prompts_per_round", "epochs_per_round", "projection_dim")
    same += ("lora_r", "beta", "max_new_tokens")
    curves = []
    for selector in cfg.selectors:
        for seed in cfg.seeds:
            active = ActiveDPOConfig(
                model_name_or_path=str(root / "sft"),
                reward_model_path=str(root / "rm"),
                dataset_name=str(root / "data_pool"),
                output_dir=str(root / "active" / f"{selector}_s{seed}"),
                selector=selector,
                lora_alpha=2.0 * cfg.lora_r,
                learning_rate=cfg.dpo_lr,
                eval_on_start=True,
                logging_steps=1,
                **{name: getattr(cfg, name) for name in same},
                **{**pipe.common, "seed": seed},
            )
            per_round = steps_per_round(active, cfg.batch_size)
            result = pipe.train(active.replace(eval_steps=per_round))
            evals = _report.eval_points(result.history, "eval_score")
            points = [(step // per_round * cfg.budget, y) for step, y in evals]
            curves.append({"selector": selector, "seed": seed, "points": points})
            tick(1)
    return {
        "config": dataclasses.asdict(cfg),
        "data": pipe.sizes,
        "reward_model": pipe.final_eval["rm"],
        "checks": checks,
        "curves": curves,
        "work_dir": str(root),
    }


def machinery_checks(cfg: Config, sft_dir, pairs_dir, tok) -> dict:
    """The math-layer checks of ``tests/test_activedpo.py`` on the real SFT model's features
    (LoRA on q/v, B ≠ 0, of the first ``check_pairs`` held-out pairs in ``pairs_dir``): the
    blockwise projection against the materialised matrix (``lora_projection_error``), the
    low-rank picks and scores against brute force and the direct V⁻¹
    (``design.gradient_selection_check``, λ = 0.5, two of the pairs as past rows)."""
    model = llm.from_pretrained(sft_dir, dtype=jnp.float32)
    lora = llm.LoRAConfig(rank=cfg.lora_r, alpha=2.0 * cfg.lora_r, target=r"(q|v)_proj")
    llm.apply_lora(model, lora, rngs=nnx.Rngs(cfg.seed))
    llm.perturb_adapters(model, jax.random.key(cfg.seed), scale=0.05)  # B ≠ 0: all factors move
    pairs = data.pairs_from_rows(data.load_splits(pairs_dir)["test"]).pairs[: cfg.check_pairs]
    encoded, _ = data.encode_preferences(
        tok, pairs, max_length=cfg.max_length, max_prompt_length=cfg.max_prompt_length
    )
    batch = data.collate_preferences(encoded, pad_id=data.pad_id(tok))
    rows = [np.concatenate(sides) for sides in zip(batch.chosen, batch.rejected)]  # y_w then y_l
    opts = dict(beta=cfg.beta, block_size=4, key=jax.random.key(0))
    proj = lora_reward_grads(model, *rows, dim=cfg.projection_dim, **opts)
    n = len(encoded)
    phi = np.asarray(design.pair_features(proj, np.arange(n), np.arange(n) + n), np.float64)
    checks = lora_projection_error(model, *rows, proj, **opts)
    return checks | design.gradient_selection_check(phi, max(1, n // 2), lam=0.5, past=phi[:2])


def _mean_curves(results: dict) -> dict:
    """selector -> (labelled pairs, mean reward, std over seeds) of the per-round evaluations."""
    return _report.seed_curves(results["curves"], "selector", lambda c: c["points"])


def table(results: dict) -> str:
    curves = _mean_curves(results)
    xs = next(iter(curves.values()))[0]
    lines = [f"{'selector':<10}" + "".join(f"{'n=' + str(x):>14}" for x in xs)]
    for s, (_, ys, sd) in curves.items():
        lines.append(f"{s:<10}" + "".join(f"{y:>8.4f}±{e:<5.3f}" for y, e in zip(ys, sd)))
    return "\n".join(lines)


def plot(results: dict, out_dir) -> list[pathlib.Path]:
    fig, ((ax,),) = _report.figure(1, 1, (5.5, 3.8))
    _report.curve_lines(ax, _mean_curves(results), ylabel="mean oracle reward (held-out prompts)")
    ax.set_title(f"ActiveDPO vs rivals, {len(results['config']['seeds'])} seed(s)", fontsize=10)
    return [_report.save(fig, out_dir, "activedpo_reward_vs_labels.png", dpi=110)]

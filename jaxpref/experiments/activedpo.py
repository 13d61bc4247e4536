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

from jaxpref import design, llm
from jaxpref.data import (
    collate_preferences,
    encode_preferences,
    load_tokenizer,
    pad_id,
    pairs_from_rows,
    shipped_hh_rows,
)
from jaxpref.experiments._report import figure, save, seed_stats
from jaxpref.experiments._stages import base_model, stage_folders
from jaxpref.experiments.registry import scale_configs
from jaxpref.llm.grad_features import lora_reward_grads
from jaxpref.train.mesh import data_parallel_mesh

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
    return 3 + len(cfg.selectors) * len(cfg.seeds)


def run(cfg: Config, *, progress=None, work_dir=None) -> dict:
    from jaxpref.train import ActiveDPOConfig, RewardConfig, SFTConfig, train

    tick = progress or (lambda n: None)
    root = pathlib.Path(work_dir) if work_dir else pathlib.Path(tempfile.mkdtemp("activedpo"))
    parts = {"test": cfg.num_eval, "sft": cfg.num_sft, "rm": cfg.num_rm, "pool": -1}
    sizes = stage_folders(shipped_hh_rows(), root, parts, ("sft", "rm", "pool"), seed=cfg.seed)
    tok = load_tokenizer()
    base_model(root, tok, cfg, max_positions=256, seed=cfg.seed)
    mesh, per_device = data_parallel_mesh(cfg.batch_size)
    common = dict(
        max_length=cfg.max_length,
        max_prompt_length=cfg.max_prompt_length,
        per_device_train_batch_size=per_device,
        save_steps=0,
        disable_tqdm=True,
        overwrite=True,
        report_to="none",
        seed=cfg.seed,
    )
    quiet = dict(log=lambda _: None, mesh=mesh)
    stage = lambda name, **kw: dict(  # noqa: E731
        dataset_name=str(root / f"data_{name}"), output_dir=str(root / name), **common, **kw
    )
    stages = {}
    for name, cls, src, steps, lr in (
        ("sft", SFTConfig, "base", cfg.sft_steps, cfg.sft_lr),
        ("rm", RewardConfig, "sft", cfg.rm_steps, cfg.rm_lr),
    ):
        source = dict(model_name_or_path=str(root / src), max_steps=steps, learning_rate=lr)
        stages[name] = train(cls(**source, **stage(name)), **quiet)
        tick(1)
    checks = machinery_checks(cfg, root / "sft", root / "data_all" / "test.jsonl", tok)
    tick(1)
    from jaxpref.train.active_dpo import steps_per_round

    curves = []
    for selector in cfg.selectors:
        for seed in cfg.seeds:
            name = f"{selector}_s{seed}"
            active = ActiveDPOConfig(
                model_name_or_path=str(root / "sft"),
                reward_model_path=str(root / "rm"),
                selector=selector,
                rounds=cfg.rounds,
                budget=cfg.budget,
                prompts_per_round=cfg.prompts_per_round,
                epochs_per_round=cfg.epochs_per_round,
                projection_dim=cfg.projection_dim,
                lora_r=cfg.lora_r,
                lora_alpha=2.0 * cfg.lora_r,
                beta=cfg.beta,
                learning_rate=cfg.dpo_lr,
                max_new_tokens=cfg.max_new_tokens,
                eval_on_start=True,
                logging_steps=1,
                **{**stage("pool"), "output_dir": str(root / "active" / name), "seed": seed},
            )
            per_round = steps_per_round(active, cfg.batch_size)
            result = train(active.replace(eval_steps=per_round), **quiet)
            points = [
                (int(h["step"]) // per_round * cfg.budget, h["eval_score"])
                for h in result.history
                if "eval_score" in h
            ]
            curves.append({"selector": selector, "seed": seed, "points": points})
            tick(1)
    return {
        "config": dataclasses.asdict(cfg),
        "data": sizes,
        "reward_model": stages["rm"].final_eval,
        "checks": checks,
        "curves": curves,
        "work_dir": str(root),
    }


def machinery_checks(cfg: Config, sft_dir, pairs_file, tok) -> dict:
    """The math-layer checks of ``tests/test_activedpo.py`` on the real SFT model's features."""
    from jaxpref.data import load_splits

    model = llm.from_pretrained(sft_dir, dtype=jnp.float32)
    lora = llm.LoRAConfig(rank=cfg.lora_r, alpha=2.0 * cfg.lora_r, target=r"(q|v)_proj")
    llm.apply_lora(model, lora, rngs=nnx.Rngs(cfg.seed))
    _, adapters, _ = nnx.split(model, llm.LoRAParam, ...)
    keys = iter(jax.random.split(jax.random.key(cfg.seed), 64))  # B ≠ 0: every factor moves
    nnx.update(
        model, jax.tree.map(lambda x: x + 0.05 * jax.random.normal(next(keys), x.shape), adapters)
    )
    rows = load_splits(pathlib.Path(pairs_file).parent)["test"]
    pairs = pairs_from_rows(rows).pairs[: cfg.check_pairs]
    encoded, _ = encode_preferences(
        tok, pairs, max_length=cfg.max_length, max_prompt_length=cfg.max_prompt_length
    )
    batch = collate_preferences(encoded, pad_id=pad_id(tok))
    ids = np.concatenate([batch.chosen.input_ids, batch.rejected.input_ids])
    mask = np.concatenate([batch.chosen.attention_mask, batch.rejected.attention_mask])
    loss = np.concatenate([batch.chosen.loss_mask, batch.rejected.loss_mask])
    key, k = jax.random.key(0), cfg.projection_dim
    raw = lora_reward_grads(model, ids, mask, loss, beta=cfg.beta, block_size=4)
    proj = lora_reward_grads(model, ids, mask, loss, beta=cfg.beta, block_size=4, dim=k, key=key)
    flat = np.concatenate([np.asarray(x).reshape(len(ids), -1) for x in jax.tree.leaves(raw)], 1)
    R = np.asarray(design.projection_matrix(raw, key, k))
    n = len(encoded)
    phi = np.asarray(design.pair_features(proj, np.arange(n), np.arange(n) + n), np.float64)
    lam, picks_n = 0.5, max(1, n // 2)
    sel = design.gradient_uncertainty_batch(phi, picks_n, lam=lam, past=phi[:2])
    brute, _ = design.brute_force_greedy_logdet(phi, picks_n, lam=lam, past=phi[:2])
    V = lam * np.eye(k) + phi[:2].T @ phi[:2]
    direct = np.sum(phi * np.linalg.solve(V, phi.T).T, axis=1)  # φᵀV⁻¹φ, V formed (k × k)
    state = design.gradient_design_init(phi, phi[:2], lam=lam, capacity=2)
    return {
        "lora_parameters": int(flat.shape[1]),
        "projection_max_abs_error": float(np.max(np.abs(np.asarray(proj) - flat @ R.T))),
        "projection_scale": float(np.max(np.abs(flat @ R.T))),
        "picks": np.asarray(sel.indices).tolist(),
        "brute_force_picks": brute,
        "scores_max_rel_error": float(
            np.max(np.abs(np.asarray(state.scores) - direct) / np.maximum(direct, 1e-12))
        ),
    }


def _mean_curves(results: dict) -> dict:
    """selector -> (labelled pairs, mean reward, std over seeds) of the per-round evaluations."""
    out = {}
    for selector in results["config"]["selectors"]:
        runs = [c["points"] for c in results["curves"] if c["selector"] == selector]
        stats = seed_stats([[p[1] for p in r] for r in runs])
        out[selector] = ([p[0] for p in runs[0]], stats["mean"].tolist(), stats["std"].tolist())
    return out


def table(results: dict) -> str:
    curves = _mean_curves(results)
    xs = next(iter(curves.values()))[0]
    lines = [f"{'selector':<10}" + "".join(f"{'n=' + str(x):>14}" for x in xs)]
    for s, (_, ys, sd) in curves.items():
        lines.append(f"{s:<10}" + "".join(f"{y:>8.4f}±{e:<5.3f}" for y, e in zip(ys, sd)))
    return "\n".join(lines)


def plot(results: dict, out_dir) -> list[pathlib.Path]:
    fig, axes = figure(1, 1, (5.5, 3.8))
    ax = axes[0, 0]
    for s, (xs, ys, sd) in _mean_curves(results).items():
        ax.errorbar(xs, ys, yerr=sd, marker="o", capsize=3, label=s)
    ax.set_xlabel("labelled pairs")
    ax.set_ylabel("mean oracle reward (held-out prompts)")
    ax.set_title(f"ActiveDPO vs rivals, {len(results['config']['seeds'])} seed(s)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return [save(fig, out_dir, "activedpo_reward_vs_labels.png", dpi=110)]

"""SFT → reward model → DPO on the shipped HH-RLHF split with a small Llama (issue: the trainers).

The pipeline a TRL user runs, in JAX: the shipped Anthropic HH-RLHF harmless-base split (2,312
rows, 9 malformed and reported) is cut once into a train part and a held-out part; the shipped
byte-level BPE tokenizer (4,096 tokens, no chat template: HH text is tokenised as it is) and a
randomly initialised Llama of the scale's size are written as a Hugging Face directory; then

1. ``jaxpref train sft`` on the prompts and chosen responses (completion-only loss),
2. ``jaxpref train reward`` from the SFT model (Bradley–Terry, scalar head),
3. ``jaxpref train dpo`` from the SFT model (sigmoid loss, the SFT model as the frozen
   reference),

each through :func:`jaxpref.train.train` with the same held-out split as its eval set. Last, the
SFT and DPO policies answer held-out prompts (greedy, ``gen_tokens`` new tokens) and the reward
model scores both answers: the DPO policy's win-rate over SFT under the learned reward.
"""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile

from jaxpref.data import load_splits, load_tokenizer, shipped_hh_rows, write_splits
from jaxpref.experiments import _report
from jaxpref.experiments._stages import base_model
from jaxpref.experiments.registry import scale_configs
from jaxpref.train.mesh import data_parallel_mesh


@dataclasses.dataclass(frozen=True)
class Config:
    num_train: int | None = None  # rows of the shipped split to train on (None: all but eval)
    num_eval: int = 230  # held-out rows
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    max_length: int = 192
    max_prompt_length: int = 128
    batch_size: int = 16
    sft_epochs: float = 1.0
    rm_epochs: float = 1.0
    dpo_epochs: float = 1.0
    max_steps: int = -1  # cap every stage (-1: the epochs decide)
    sft_lr: float = 1e-3
    rm_lr: float = 3e-4
    dpo_lr: float = 3e-5
    beta: float = 0.1
    gen_prompts: int = 64
    gen_tokens: int = 48
    eval_steps: int = 50
    seed: int = 0


config = scale_configs(
    Config(),
    test=dict(
        num_train=96,
        num_eval=32,
        hidden_size=32,
        num_layers=2,
        max_length=64,
        max_prompt_length=48,
        batch_size=8,
        max_steps=12,
        gen_prompts=8,
        gen_tokens=8,
        eval_steps=6,
    ),
    quickstart=dict(num_train=512, num_eval=128, max_steps=64, gen_prompts=32, gen_tokens=32),
    full=dict(
        hidden_size=256,
        num_layers=6,
        num_heads=8,
        max_length=384,
        max_prompt_length=256,
        sft_epochs=2.0,
        rm_epochs=2.0,
        dpo_epochs=2.0,
        eval_steps=100,
    ),
)


def num_units(cfg: Config) -> int:
    return 4  # sft, reward, dpo, generation


def run(cfg: Config, *, progress=None, work_dir=None) -> dict:
    from jaxpref.train import DPOConfig, RewardConfig, SFTConfig, train

    tick = progress or (lambda n: None)
    root = pathlib.Path(work_dir) if work_dir else pathlib.Path(tempfile.mkdtemp("hh_pipeline"))
    data = root / "data"
    train_size = -1 if cfg.num_train is None else cfg.num_train
    sizes = write_splits(
        shipped_hh_rows(), data, {"test": cfg.num_eval, "train": train_size}, seed=cfg.seed
    )
    sizes = {"train_rows": sizes["train"], "eval_rows": sizes["test"]}
    tok = load_tokenizer()
    positions = max(512, cfg.max_length + cfg.gen_tokens)
    base = base_model(root, tok, cfg, max_positions=positions, seed=cfg.seed)
    mesh, per_device = data_parallel_mesh(cfg.batch_size)
    common = dict(
        dataset_name=str(data),
        max_length=cfg.max_length,
        max_prompt_length=cfg.max_prompt_length,
        per_device_train_batch_size=per_device,
        per_device_eval_batch_size=2 * per_device,
        max_steps=cfg.max_steps,
        eval_steps=cfg.eval_steps,
        eval_on_start=True,
        logging_steps=max(1, cfg.eval_steps // 5),
        save_steps=0,
        seed=cfg.seed,
        disable_tqdm=True,
        overwrite=True,  # the experiment owns its folder (the CLI refuses a finished one)
        warmup_ratio=0.05,
    )
    stages, models = {}, {}
    for name, cls, source, lr, epochs, extra in (
        ("sft", SFTConfig, base, cfg.sft_lr, cfg.sft_epochs, {}),
        ("reward", RewardConfig, root / "sft", cfg.rm_lr, cfg.rm_epochs, {}),
        ("dpo", DPOConfig, root / "sft", cfg.dpo_lr, cfg.dpo_epochs, dict(beta=cfg.beta)),
    ):
        result = train(
            cls(
                model_name_or_path=str(source),
                output_dir=str(root / name),
                learning_rate=lr,
                num_train_epochs=epochs,
                **extra,
                **common,
            ),
            log=lambda _: None,
            mesh=mesh,
        )
        stages[name], models[name] = result.summary(), result.model
        tick(1)
    generation = _generation(cfg, data, tok, models)
    tick(1)
    return {
        "config": dataclasses.asdict(cfg),
        "data": sizes | {"report": {k: s["data_report"] for k, s in stages.items()}},
        "stages": stages,
        "generation": generation,
        "work_dir": str(root),
    }


def _generation(cfg, data, tok, models) -> dict:
    """Greedy answers of the SFT and DPO policies to held-out prompts (their last
    ``max_prompt_length`` tokens), scored by the reward model: DPO's win-rate over SFT (a tie
    counts one half; its standard error is NaN, null in JSON, from a single prompt)."""
    from jaxpref.train.alignment_eval import greedy_comparison
    from jaxpref.train.rollout import encode_prompts

    rows = load_splits(data)["test"]
    prompts, _ = encode_prompts(rows, tok, max_prompt_length=cfg.max_prompt_length)
    return greedy_comparison(
        models["dpo"],
        models["sft"],
        models["reward"],
        prompts[: cfg.gen_prompts],
        tokenizer=tok,
        max_new_tokens=cfg.gen_tokens,
        seed=cfg.seed,
    ).summary("dpo", "sft")


def table(results: dict) -> str:
    s, g = results["stages"], results["generation"]
    lines = [
        f"HH pipeline: {results['data']['train_rows']} train rows, "
        f"{results['data']['eval_rows']} held out",
        f"  SFT    eval loss   {s['sft']['first_eval']['eval_loss']:.3f} -> "
        f"{s['sft']['final_eval']['eval_loss']:.3f}",
        f"  reward eval acc    {s['reward']['first_eval']['eval_accuracy']:.3f} -> "
        f"{s['reward']['final_eval']['eval_accuracy']:.3f}",
        f"  DPO    eval acc    {s['dpo']['first_eval']['eval_rewards/accuracies']:.3f} -> "
        f"{s['dpo']['final_eval']['eval_rewards/accuracies']:.3f} (margin "
        f"{s['dpo']['final_eval']['eval_rewards/margins']:+.4f}; 0 at the start: policy = "
        "reference)",
        f"  generation: DPO beats SFT under the reward model in {g['dpo_win_rate']:.2f} "
        f"± {g['win_rate_se']:.2f} of {g['num_prompts']} held-out prompts (mean reward SFT "
        f"{g['mean_reward']['sft']:+.3f}, DPO {g['mean_reward']['dpo']:+.3f}; identical answers "
        f"{g['identical_answers']:.2f})",
    ]
    return "\n".join(lines)


def plot(results: dict, out_dir) -> list[pathlib.Path]:
    s = results["stages"]
    panels = [
        ("sft", "loss", "eval_loss", "SFT: token NLL"),
        ("reward", "accuracy", "eval_accuracy", "reward model: accuracy (r_w > r_l)"),
        ("dpo", "rewards/accuracies", "eval_rewards/accuracies", "DPO: implicit-reward accuracy"),
        ("dpo", "rewards/margins", "eval_rewards/margins", "DPO: implicit-reward margin"),
    ]
    fig, (axes,) = _report.figure(1, 4, (17, 3.8))
    for ax, (stage, train_key, eval_key, title) in zip(axes, panels):
        hist = s[stage]["history"]
        tr = [(r["step"], r[train_key]) for r in hist if train_key in r]
        ev = [(r["step"], r[eval_key]) for r in hist if eval_key in r]
        if tr:
            ax.plot(*zip(*tr), label="train (mean over logging window)", color="C0", alpha=0.7)
        if ev:
            ax.plot(*zip(*ev), "o-", label="held-out eval", color="C1")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("value")
    axes[0].legend(fontsize=8)
    d = results["data"]
    fig.suptitle(
        f"SFT → reward model → DPO on HH-RLHF harmless-base ({d['train_rows']} train / "
        f"{d['eval_rows']} held-out rows), Llama {results['config']['num_layers']}×"
        f"{results['config']['hidden_size']}",
        fontsize=11,
    )
    return [_report.save(fig, out_dir, "hh_pipeline_curves.png", dpi=110)]

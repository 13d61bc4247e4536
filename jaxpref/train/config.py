"""Typed, frozen configs of the LLM trainers; the same objects drive the CLI and the Python API.

Field names are TRL's (``trl sft`` / ``trl reward`` / ``trl dpo`` and Hugging Face
``TrainingArguments``) wherever TRL has the option, so flags carry over. Every field's help text
lives in its ``metadata``; :mod:`jaxpref.train.args` builds ``argparse`` flags from them. Checks run
in ``__post_init__``: a bad value fails at once with a message naming the field.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

LR_SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
DTYPES = ("float32", "bfloat16", "float16")
REPORT_TO = ("tensorboard", "none")
REMAT = ("none", "block", "dots_saveable", "dots_with_no_batch_dims_saveable")  # llm.REMAT_POLICIES
DPO_EXTRA_LOSSES = ("sft",)  # combinable with any dpo_loss type through --loss_weights


def field(default: Any, help: str, **kw) -> Any:  # noqa: A002 - argparse's word
    factory = kw.pop("factory", None)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": help, **kw})
    return dataclasses.field(default=default, metadata={"help": help, **kw})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Options shared by every trainer (model, data, optimisation, outputs, mesh)."""

    # model
    model_name_or_path: str | None = field(
        None, "local Hugging Face model directory (config.json + safetensors)", required=True
    )
    tokenizer_name_or_path: str | None = field(
        None, "tokenizer directory (default: the model directory)"
    )
    dtype: str = field(
        "float32", "compute dtype of the forward and backward passes", choices=DTYPES
    )
    param_dtype: str = field(
        "float32", "storage dtype of the weights and optimizer state", choices=DTYPES
    )
    remat: str = field(
        "none", "activation rematerialisation of each decoder layer (jaxpref.llm)", choices=REMAT
    )
    scan_layers: bool = field(
        False, "run the layers as one scanned, stacked block (compile time flat in depth)"
    )
    # data
    dataset_name: str | None = field(
        None,
        "a local .json/.jsonl/.parquet/.csv file, a folder of them (split = file name), a "
        "save_to_disk folder, or a hub name (online only)",
        required=True,
    )
    dataset_config: str | None = field(None, "the hub dataset's configuration name")
    dataset_train_split: str = field("train", "split to train on")
    dataset_test_split: str = field("test", "split to evaluate on (if the source has it)")
    eval_fraction: float = field(
        0.0, "hold out this fraction of the train split for eval when there is no test split"
    )
    max_length: int | None = field(1024, "maximum prompt + response tokens (TRL semantics)")
    max_prompt_length: int | None = field(
        512, "prompts longer than this keep their last tokens (TRL semantics)"
    )
    drop_duplicates: bool = field(False, "drop exact duplicate examples (always reported)")
    length_buckets: int = field(
        4, "number of padded lengths batches are bucketed to (one compiled program each)"
    )
    # optimisation
    learning_rate: float = field(5e-5, "peak learning rate of AdamW")
    lr_scheduler_type: str = field("linear", "learning-rate schedule", choices=LR_SCHEDULERS)
    warmup_ratio: float = field(0.0, "fraction of the steps with a linear warm-up from 0")
    warmup_steps: int = field(0, "warm-up steps (overrides --warmup_ratio when > 0)")
    weight_decay: float = field(0.0, "AdamW decoupled weight decay (matrices only)")
    adam_beta1: float = field(0.9, "AdamW β₁")
    adam_beta2: float = field(0.999, "AdamW β₂")
    adam_epsilon: float = field(1e-8, "AdamW ε")
    max_grad_norm: float = field(1.0, "clip the global gradient norm to this (0: no clipping)")
    per_device_train_batch_size: int = field(8, "examples per batch device per micro-batch")
    per_device_eval_batch_size: int = field(8, "examples per batch device in eval")
    gradient_accumulation_steps: int = field(1, "micro-batches per optimizer step")
    num_train_epochs: float = field(3.0, "epochs (ignored when --max_steps > 0)")
    max_steps: int = field(-1, "optimizer steps (overrides --num_train_epochs when > 0)")
    seed: int = field(42, "seed of the data order, the LoRA/head initialisation and the RNG")
    max_nonfinite_steps: int = field(
        5, "stop after this many consecutive steps with a non-finite gradient (each is skipped)"
    )
    # LoRA
    use_peft: bool = field(False, "train LoRA adapters instead of all weights")
    lora_r: int = field(16, "LoRA rank")
    lora_alpha: float = field(32.0, "LoRA scale numerator α (the update is α/r · A B)")
    lora_target_modules: tuple[str, ...] = field(
        ("q_proj", "v_proj"),
        "linear layers that get adapters (comma-separated names, or all-linear)",
        factory=lambda: ("q_proj", "v_proj"),
    )
    save_adapters: bool = field(
        False, "also write the LoRA adapters (PEFT layout) beside the merged model"
    )
    # outputs
    output_dir: str | None = field(
        None, "run folder (created; see --resume / --overwrite)", required=True
    )
    logging_steps: int = field(10, "log the training metrics every N steps")
    eval_steps: int | None = field(None, "evaluate every N steps (default: at the end only)")
    eval_on_start: bool = field(False, "also evaluate before the first step (a baseline)")
    save_steps: int = field(500, "checkpoint every N steps (0: only at the end)")
    save_total_limit: int | None = field(3, "checkpoints to keep (None: all)")
    report_to: str = field(
        "tensorboard", "where metrics go besides metrics.jsonl", choices=REPORT_TO
    )
    disable_tqdm: bool = field(False, "no progress bar")
    resume: bool = field(False, "continue the run in --output_dir from its last checkpoint")
    overwrite: bool = field(False, "replace the run in --output_dir")
    # sharding
    mesh: str = field("data=-1", "device mesh, e.g. data=2,fsdp=4,tensor=1 (-1: the rest)")

    def __post_init__(self):
        for name in ("model_name_or_path", "dataset_name", "output_dir"):
            if not getattr(self, name):
                raise ValueError(f"{name}: required")
        for name in _fields(self):
            spec = _metadata(self, name)
            value = getattr(self, name)
            if "choices" in spec and value not in spec["choices"]:
                raise ValueError(
                    f"{name}: must be one of {', '.join(spec['choices'])}; got {value!r}"
                )
        _positive(
            self, "learning_rate", "per_device_train_batch_size", "per_device_eval_batch_size"
        )
        _positive(self, "gradient_accumulation_steps", "logging_steps", "length_buckets", "lora_r")
        _positive(self, "lora_alpha", "max_nonfinite_steps", "adam_epsilon")
        for name in ("max_length", "max_prompt_length", "eval_steps", "save_total_limit"):
            if getattr(self, name) is not None:
                _positive(self, name)
        _non_negative(self, "warmup_steps", "weight_decay", "max_grad_norm", "save_steps")
        _in_range(self, "warmup_ratio", 0.0, 1.0)
        _in_range(self, "eval_fraction", 0.0, 0.9)
        _in_range(self, "adam_beta1", 0.0, 1.0 - 1e-12)
        _in_range(self, "adam_beta2", 0.0, 1.0 - 1e-12)
        if self.max_steps <= 0 and not self.num_train_epochs > 0:
            raise ValueError("num_train_epochs: must be > 0 when max_steps is not set")
        if self.resume and self.overwrite:
            raise ValueError("resume: cannot be combined with overwrite")
        if not self.lora_target_modules:
            raise ValueError("lora_target_modules: name at least one module (or all-linear)")
        parse_mesh(self.mesh)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


@dataclasses.dataclass(frozen=True)
class SFTConfig(TrainConfig):
    """``jaxpref train sft``: next-token NLL on completions (prompt–completion, messages, text or
    the chosen side of preference rows)."""

    learning_rate: float = field(2e-5, "peak learning rate of AdamW")
    max_prompt_length: int | None = field(
        None,
        "prompts longer than this keep their last tokens (None: TRL's SFT, cut the whole "
        "sequence from its start)",
    )
    completion_only_loss: bool = field(
        True, "count only completion tokens in the loss (False: every token)"
    )
    packing: bool = field(
        False,
        "pack examples into rows of max_length, each attending only to itself (positions restart)",
    )


@dataclasses.dataclass(frozen=True)
class RewardConfig(TrainConfig):
    """``jaxpref train reward``: Bradley–Terry reward model with a scalar head."""

    learning_rate: float = field(1e-4, "peak learning rate of AdamW")
    center_rewards_coefficient: float | None = field(
        None, "add coef · mean((r_chosen + r_rejected)²) to centre the rewards (TRL)"
    )

    def __post_init__(self):
        super().__post_init__()
        if self.center_rewards_coefficient is not None:
            _non_negative(self, "center_rewards_coefficient")


@dataclasses.dataclass(frozen=True)
class DPOConfig(TrainConfig):
    """``jaxpref train dpo``: offline DPO and its loss family against a frozen reference."""

    learning_rate: float = field(1e-6, "peak learning rate of AdamW")
    beta: float = field(0.1, "β, the KL-regularisation strength")
    loss_type: tuple[str, ...] = field(
        ("sigmoid",),
        "comma-separated loss types (jaxpref.losses.LOSS_TYPES, plus sft)",
        factory=lambda: ("sigmoid",),
    )
    loss_weights: tuple[float, ...] | None = field(
        None, "comma-separated weights of the loss types (default: all 1)"
    )
    label_smoothing: float = field(0.0, "ε: cDPO / rDPO / EXO label smoothing")
    discopop_tau: float = field(0.05, "τ of the discopop loss")
    ipo_length_normalized: bool = field(
        False, "ipo on per-token log-ratios, as TRL computes it (the paper's IPO is unnormalised)"
    )
    ref_model_name_or_path: str | None = field(
        None, "a separate frozen reference model directory (default: the initial policy)"
    )
    precompute_ref_log_probs: bool = field(
        False, "compute the reference log-probs once before training and keep them with the data"
    )

    def __post_init__(self):
        super().__post_init__()
        from jaxpref.losses import LOSS_TYPES

        known = LOSS_TYPES + DPO_EXTRA_LOSSES
        for lt in self.loss_type:
            if lt not in known:
                raise ValueError(f"loss_type: unknown {lt!r}; known: {', '.join(known)}")
        if len(set(self.loss_type)) != len(self.loss_type):
            raise ValueError(f"loss_type: listed twice in {','.join(self.loss_type)}")
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError(
                f"loss_weights: {len(self.loss_weights)} weights for "
                f"{len(self.loss_type)} loss types ({','.join(self.loss_type)})"
            )
        _positive(self, "beta", "discopop_tau")
        from jaxpref.losses.preference import SMOOTHED

        takers = [lt for lt in self.loss_type if lt in SMOOTHED or lt == "exo_pair"]
        if self.label_smoothing and not takers:
            raise ValueError(
                f"label_smoothing: must be 0 for loss_type={','.join(self.loss_type)} "
                f"(it applies to {', '.join(SMOOTHED)}, exo_pair)"
            )
        from jaxpref.train.dpo import check_loss_options

        check_loss_options(self)

    @property
    def weights(self) -> tuple[float, ...]:
        return self.loss_weights or tuple(1.0 for _ in self.loss_type)


ALGORITHMS = ("ppo", "rloo")
PENALTIES = ("kl", "pm", "cond_pm_token", "cond_pm_sequence")


@dataclasses.dataclass(frozen=True)
class SamplingOptions:
    """What online trainers (RLHF, online DPO) add: the reward-model oracle and sampling."""

    reward_model_path: str | None = field(
        None, "the oracle: a *ForSequenceClassification directory (num_labels = 1)", required=True
    )
    reward_tokenizer_path: str | None = field(
        None, "the oracle's tokenizer, if it differs from the policy's (default: its directory)"
    )
    max_new_tokens: int = field(64, "tokens sampled per response")
    temperature: float = field(1.0, "sampling temperature (> 0)")
    top_p: float = field(0.9, "nucleus sampling mass (DeepSpeed-Chat's 0.9)")
    top_k: int = field(0, "top-k sampling (0: off)")

    def check_sampling(self):
        if not self.reward_model_path:
            raise ValueError("reward_model_path: required")
        _positive(self, "max_new_tokens", "temperature")
        _non_negative(self, "top_k")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p: must lie in (0, 1], got {self.top_p!r}")


@dataclasses.dataclass(frozen=True)
class RLHFConfig(SamplingOptions, TrainConfig):
    """``jaxpref train rlhf``: PPO or RLOO against a reward-model oracle, with the KL, PM or
    conditional-PM penalty (Xiao et al., arXiv 2405.16455; DeepSpeed-Chat's PPO)."""

    learning_rate: float = field(1e-6, "peak learning rate of AdamW (actor and critic)")
    lr_scheduler_type: str = field("cosine", "learning-rate schedule", choices=LR_SCHEDULERS)
    weight_decay: float = field(0.1, "AdamW decoupled weight decay (matrices only)")
    critic_model_path: str | None = field(
        None, "where the PPO critic starts (default: the reward model, as DeepSpeed-Chat)"
    )
    algorithm: str = field("ppo", "policy-gradient estimator", choices=ALGORITHMS)
    penalty: str = field(
        "kl",
        "kl: log π − log π_ref per token; pm: log π (PM RLHF); cond_pm_token: the official "
        "code's per-token gate at α; cond_pm_sequence: the paper's Definition 4.1",
        choices=PENALTIES,
    )
    beta: float = field(0.1, "β, the penalty coefficient (the code's --kl_ctl)")
    alpha: float = field(0.1, "α ∈ (0, 1] of the conditional-PM gates (1: KL-RLHF)")
    clip_reward_value: float = field(5.0, "clip the oracle's score to ± this")
    cliprange: float = field(0.2, "PPO ratio clip ε")
    cliprange_value: float = field(0.2, "PPO value clip")
    gamma: float = field(1.0, "GAE discount γ")
    lam: float = field(0.95, "GAE λ")
    rloo_k: int = field(2, "RLOO: samples per prompt (K >= 2)")

    def __post_init__(self):
        super().__post_init__()
        self.check_sampling()
        _positive(self, "beta", "clip_reward_value", "cliprange", "cliprange_value")
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha: must lie in (0, 1], got {self.alpha!r}")
        _in_range(self, "gamma", 0.0, 1.0)
        _in_range(self, "lam", 0.0, 1.0)
        if self.rloo_k < 2:
            raise ValueError(f"rloo_k: needs at least 2 samples per prompt, got {self.rloo_k}")


LABELLERS = ("argmax", "bradley_terry")


@dataclasses.dataclass(frozen=True)
class OnlineDPOConfig(SamplingOptions, DPOConfig):
    """``jaxpref train online-dpo``: each step samples two responses per prompt with the current
    policy, the oracle labels the pair, and the pair takes a DPO step (Guo et al., "Direct
    Language Model Alignment from Online AI Feedback", arXiv 2402.04792; TRL's OnlineDPO)."""

    learning_rate: float = field(5e-7, "peak learning rate of AdamW")
    labeller: str = field(
        "argmax",
        "how two oracle scores become a label: the higher, or a Bradley-Terry draw",
        choices=LABELLERS,
    )
    ref_update_steps: int = field(
        0, "refresh the reference to the current policy every N steps (0: the initial policy)"
    )
    robust_rho: float | None = field(
        None,
        "oracle-robust online DPO (robust SAIL): each pair's preference is known only within "
        "+- rho of the oracle's probability and the pair loss is its worst case, rho in "
        "[0, 0.5] (none: nominal online DPO)",
    )

    def __post_init__(self):
        super().__post_init__()
        self.check_sampling()
        _non_negative(self, "ref_update_steps")
        if self.robust_rho is not None:
            if not 0.0 <= self.robust_rho <= 0.5:
                raise ValueError(f"robust_rho: must lie in [0, 0.5], got {self.robust_rho!r}")
            if self.loss_type != ("sigmoid",) or self.label_smoothing:
                raise ValueError(
                    "robust_rho: the worst-case pair loss is the logistic (sigmoid) DPO loss; "
                    f"got loss_type={','.join(self.loss_type)}, "
                    f"label_smoothing={self.label_smoothing}"
                )
        if self.precompute_ref_log_probs:
            raise ValueError("precompute_ref_log_probs: online pairs are new every step")
        if self.ref_model_name_or_path:
            raise ValueError("ref_model_name_or_path: online DPO's reference is the policy")


SELECTORS = ("activedpo", "adpo_plus", "apo", "aplp", "uniform")
PAST_FEATURES = ("recompute", "stored")


@dataclasses.dataclass(frozen=True)
class ActiveDPOConfig(OnlineDPOConfig):
    """``jaxpref train active-dpo``: Algorithm 1 of ActiveDPO (Lin et al., arXiv 2505.19241).
    Each of ``rounds`` rounds samples ``prompts_per_round`` prompts, generates
    ``responses_per_prompt`` responses each with the current policy (all pairs are candidates),
    selects ``budget`` pairs with ``selector``, labels them with the reward-model oracle and
    DPO-trains the policy for ``epochs_per_round`` epochs on them (π_ref = the initial model).
    Steps: rounds × ⌈epochs · budget / rows per step⌉ (``--max_steps`` is set from it)."""

    learning_rate: float = field(1e-4, "peak learning rate of AdamW (the paper's LoRA 1e-4)")
    lr_scheduler_type: str = field("constant", "learning-rate schedule", choices=LR_SCHEDULERS)
    use_peft: bool = field(True, "train LoRA adapters (ActiveDPO's features are LoRA gradients)")
    selector: str = field(
        "activedpo",
        "activedpo: LoRA-gradient uncertainty; adpo_plus: D-optimal on last-layer features with "
        "MLE refits; apo: D-optimal on a fixed pool; aplp: entropy + certainty; uniform",
        choices=SELECTORS,
    )
    rounds: int = field(4, "T, selection rounds")
    budget: int = field(50, "B, pairs selected and labelled per round")
    prompts_per_round: int = field(64, "prompts sampled per round (the paper: 1000)")
    responses_per_prompt: int = field(3, "responses per prompt; every pair is a candidate")
    epochs_per_round: int = field(4, "E, DPO epochs on each round's labelled pairs")
    projection_dim: int = field(8192, "k, the random-projection dimension of the gradients")
    projection: str = field(
        "rademacher", "random-projection entries", choices=("rademacher", "gaussian")
    )
    projection_seed: int = field(0, "key of the projection (fixed across rounds)")
    grad_normalization: str = field(
        "response",
        "normalise each response's projected gradient, each difference, or none",
        choices=("response", "difference", "none"),
    )
    design_lambda: float = field(1.0, "λ > 0 of V = λI + Σ φφᵀ (and γ of the rivals)")
    past_features: str = field(
        "recompute",
        "past pairs' features recomputed at the current policy (Prop. 1) or stored",
        choices=PAST_FEATURES,
    )
    grad_block_size: int = field(8, "rows per vmap of per-example gradients (memory ∝ it)")

    def __post_init__(self):
        super().__post_init__()
        _positive(self, "rounds", "budget", "prompts_per_round", "epochs_per_round")
        _positive(self, "projection_dim", "design_lambda", "grad_block_size")
        if self.responses_per_prompt < 2:
            raise ValueError(
                "responses_per_prompt: needs at least 2 to form a pair, "
                f"got {self.responses_per_prompt}"
            )
        k = self.responses_per_prompt
        pool = self.prompts_per_round * k * (k - 1) // 2
        if self.selector == "apo":
            pool *= self.rounds  # one fixed pool for every round
        needed = self.budget * (self.rounds if self.selector == "apo" else 1)
        if needed > pool:
            raise ValueError(
                f"budget: {needed} pairs exceed the pool of {pool} candidate pairs "
                f"({self.prompts_per_round} prompts × C({k}, 2))"
            )
        if self.ref_update_steps:
            raise ValueError("ref_update_steps: ActiveDPO's reference is the initial model")
        if self.robust_rho is not None:
            raise ValueError("robust_rho: not supported by active-dpo (use online-dpo)")
        if self.resume:
            raise ValueError(
                "resume: active-dpo rounds (their sampled pools and labels) are not checkpointed; "
                "start the run again"
            )
        if self.selector == "activedpo" and not self.use_peft:
            raise ValueError("use_peft: the activedpo selector takes gradients of LoRA adapters")


EXPLORATIONS = ("enhancer", "uniform")
POLICY_OBJECTIVES = ("pessimistic", "greedy", "stackelberg")
RADIUS_RULES = ("certified", "local", "heuristic")  # pbpo.RADII
REF_REFRESH = ("episode", "fixed")


@dataclasses.dataclass(frozen=True)
class PbPOConfig(RLHFConfig):
    """``jaxpref train pbpo``: PbPO on a language model (Jia, arXiv 2511.12867): a linear reward
    ⟨θ, φ(τ)⟩ on frozen features (a reward backbone's last hidden state at the last real token),
    the BTL MLE θ̂ and Gram matrix of the pairs labelled so far, reward-agnostic exploration by
    best-of-N on the bonus ‖φ(τ¹) − φ(τ⁰)‖²_{Σ̂⁻¹}, and a pessimistic policy step by RLOO."""

    algorithm: str = field("rloo", "policy-gradient estimator (pbpo: rloo only)", choices=("rloo",))
    learning_rate: float = field(1e-5, "peak learning rate of AdamW")
    lr_scheduler_type: str = field("constant", "learning-rate schedule", choices=LR_SCHEDULERS)
    weight_decay: float = field(0.0, "AdamW decoupled weight decay (matrices only)")
    clip_reward_value: float = field(1e6, "clip the per-response value to +- this")
    feature_model_path: str | None = field(
        None, "the reward backbone of φ: a *ForSequenceClassification dir (default: the oracle)"
    )
    feature_dim: int | None = field(
        None, "expected dimension d of φ (checked against the backbone's hidden size)"
    )
    num_episodes: int = field(4, "K: episodes of (explore, label, refit, policy steps)")
    episode_steps: int = field(4, "policy (RLOO) steps per episode")
    pairs_per_episode: int = field(8, "prompts explored and labelled per episode")
    num_candidates: int = field(4, "N of the best-of-N enhancer (policy samples per prompt)")
    exploration: str = field(
        "enhancer",
        "enhancer: the best of N samples on the bonus; uniform: the first sample",
        choices=EXPLORATIONS,
    )
    policy_objective: str = field(
        "pessimistic",
        "pessimistic: θ̂ᵀΔφ − radius·‖Δφ‖_{Σ̂⁻¹} per response vs π_ref's; greedy: θ̂ᵀΔφ; "
        "stackelberg: θ_fᵀΔφ, θ_f the follower of the penalised game (η·BTL NLL)",
        choices=POLICY_OBJECTIVES,
    )
    penalty_weight: float = field(
        1.0, "η of stackelberg: the follower minimises mean θᵀΔφ + η·(BTL NLL of the pairs)"
    )
    reward_steps: int = field(10, "stackelberg: follower gradient steps per policy step")
    reward_lr: float | None = field(
        None, "stackelberg: the follower's step size (default 1/L, L its smoothness constant)"
    )
    delta: float = field(0.05, "δ: the confidence set covers θ* with probability >= 1 − δ")
    radius_rule: str = field(
        "certified",
        "κ in β_k(δ) (pbpo.RADII): certified = kappa_btl(B, L), carries the coverage; local: "
        "κ = 4; heuristic: κ = 1 (neither is a certificate)",
        choices=RADIUS_RULES,
    )
    radius: float | None = field(None, "a fixed confidence radius instead of the rule (> 0)")
    ridge: float = field(1.0, "λ, the ridge of the BTL MLE and of Σ̂ = λI + Σ ΔφΔφᵀ")
    bound_theta: float = field(1.0, "B >= ‖θ*‖ in the radius")
    bound_delta_phi: float | None = field(
        None, "L >= ‖Δφ‖ in the radius (default: the largest ‖Δφ‖ of the pairs so far)"
    )
    labeller: str = field(
        "bradley_terry",
        "how two oracle scores become a label: a Bradley-Terry draw (PbPO's BTL model) or "
        "the higher",
        choices=LABELLERS,
    )
    ref_refresh: str = field(
        "episode",
        "episode: π_ref^k is the policy at the start of episode k; fixed: the initial policy",
        choices=REF_REFRESH,
    )

    def __post_init__(self):
        if self.max_steps <= 0:  # the episodes set the length of the run
            object.__setattr__(self, "max_steps", self.num_episodes * self.episode_steps)
        super().__post_init__()
        _positive(self, "num_episodes", "episode_steps", "pairs_per_episode", "num_candidates")
        if self.max_steps != self.num_episodes * self.episode_steps:
            raise ValueError(
                f"max_steps: must equal num_episodes * episode_steps = "
                f"{self.num_episodes * self.episode_steps} (or be unset), got {self.max_steps}"
            )
        if not 0.0 < self.delta < 1.0:
            raise ValueError(f"delta: the confidence level must lie in (0, 1), got {self.delta!r}")
        _positive(self, "ridge", "bound_theta", "penalty_weight", "reward_steps")
        for name in ("radius", "bound_delta_phi", "feature_dim", "reward_lr"):
            if getattr(self, name) is not None:
                _positive(self, name)


RECIPE_CONFIGS = {
    "sft": SFTConfig,
    "reward": RewardConfig,
    "dpo": DPOConfig,
    "rlhf": RLHFConfig,
    "online-dpo": OnlineDPOConfig,
    "active-dpo": ActiveDPOConfig,
    "pbpo": PbPOConfig,
}

# Fields a resumed run may change: they do not alter what is computed.
RESUMABLE_CHANGES = frozenset(
    {
        "resume",
        "overwrite",
        "logging_steps",
        "eval_steps",
        "eval_on_start",
        "save_steps",
        "save_total_limit",
        "report_to",
        "disable_tqdm",
    }
)


def parse_mesh(text: str) -> dict[str, int]:
    """``"data=2,fsdp=4"`` → ``{"data": 2, "fsdp": 4, "tensor": 1}`` (checked)."""
    sizes = {"data": 1, "fsdp": 1, "tensor": 1}
    given = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name not in sizes:
            raise ValueError(
                f"mesh: expected axis=size entries over data, fsdp, tensor; got {part!r}"
            )
        if name in given:
            raise ValueError(f"mesh: axis {name!r} given twice")
        try:
            sizes[name] = int(value)
        except ValueError as err:
            raise ValueError(f"mesh: size of {name!r} must be an int, got {value!r}") from err
        given.add(name)
        if sizes[name] < 1 and sizes[name] != -1:
            raise ValueError(f"mesh: size of {name!r} must be >= 1 or -1, got {sizes[name]}")
    if not given:
        raise ValueError("mesh: empty; e.g. data=-1 or data=2,fsdp=4,tensor=1")
    return sizes


def total_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    if config.max_steps > 0:
        return config.max_steps
    return max(1, math.ceil(config.num_train_epochs * steps_per_epoch))


def _fields(config) -> list[str]:
    return [f.name for f in dataclasses.fields(config)]


def _metadata(config, name) -> dict:
    return next(f.metadata for f in dataclasses.fields(config) if f.name == name)


def _positive(config, *names):
    for name in names:
        value = getattr(config, name)
        if not value > 0:
            raise ValueError(f"{name}: must be > 0, got {value!r}")


def _non_negative(config, *names):
    for name in names:
        value = getattr(config, name)
        if not value >= 0:
            raise ValueError(f"{name}: must be >= 0, got {value!r}")


def _in_range(config, name, lo, hi):
    value = getattr(config, name)
    if not lo <= value <= hi:
        raise ValueError(f"{name}: must lie in [{lo}, {hi}], got {value!r}")

"""``train(config)``: the Python API behind ``jaxpref train {sft,reward,dpo}``.

One call claims the output folder, builds the mesh, reads and tokenises the data (reporting
what it drops), loads the model(s) sharded on the mesh, runs the orchestrator and writes the
final model as a Hugging Face directory (config.json + safetensors + tokenizer files) that
``transformers`` loads: a causal LM for SFT and DPO (LoRA merged; adapters in ``adapters/`` on
request), a ``*ForSequenceClassification`` for the reward model.

Example::

    from jaxpref.train import DPOConfig, train
    result = train(DPOConfig(model_name_or_path="sft_model", dataset_name="prefs.jsonl",
                             output_dir="runs/dpo", use_peft=True, max_steps=100))
    print(result.final_eval["eval_rewards/accuracies"])

Multi-host: every process (after ``jaxpref.llm.distributed.initialize()``) calls ``train`` with
the same config; the mesh spans every process's devices. Process 0 claims the output folder and
writes the metrics, the data report and the exported model; checkpoints are written by all.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any, Callable

import jax
import numpy as np
from flax import nnx

from jaxpref import llm
from jaxpref.data import check_columns, load_splits, load_tokenizer, split_rows
from jaxpref.llm import distributed
from jaxpref.train.active_dpo import ActiveDPO, steps_per_round
from jaxpref.train.config import (
    ActiveDPOConfig,
    DPOConfig,
    OnlineDPOConfig,
    PbPOConfig,
    RewardConfig,
    RLHFConfig,
    SamplingOptions,
    SFTConfig,
    TrainConfig,
    parse_mesh,
)
from jaxpref.train.dpo import DPO
from jaxpref.train.fit import FitResult, MetricsWriter, Trainable, Trainer
from jaxpref.train.mesh import BATCH_AXES, make_mesh
from jaxpref.train.models import (
    add_lora,
    check_model_dir,
    copy_module,
    save_adapters,
    tokenizer_for,
    trainable,
)
from jaxpref.train.online_dpo import OnlineDPO
from jaxpref.train.oracle import RewardOracle
from jaxpref.train.pbpo import FeatureOracle, PbPO, check_feature_dim
from jaxpref.train.reward import Reward
from jaxpref.train.rlhf import RLHF, ActorCritic
from jaxpref.train.run_dir import claim, write_json_atomic
from jaxpref.train.sft import SFT

NEEDED = {
    "sft": (("completion",), ("chosen",), ("messages",), ("text",)),  # any one of these
    "reward": (("chosen", "rejected"),),
    "dpo": (("chosen", "rejected"),),
    "rlhf": (("prompt",), ("chosen",), ("messages",)),
    "online-dpo": (("prompt",), ("chosen",), ("messages",)),
    "active-dpo": (("prompt",), ("chosen",), ("messages",)),
    "pbpo": (("prompt",), ("chosen",), ("messages",)),
}


@dataclasses.dataclass
class TrainResult:
    output_dir: pathlib.Path
    model: Any  # the trained model (LoRA merged), as exported
    fit: FitResult
    data_report: dict

    @property
    def final_eval(self) -> dict | None:
        return self.fit.final_eval

    @property
    def history(self) -> list[dict]:
        return self.fit.history

    @property
    def first_eval(self) -> dict | None:
        """The row logged at step 0 (the eval before any update, with ``eval_on_start``), or
        None when there is none."""
        return next((r for r in self.history if r["step"] == 0), None)

    def summary(self) -> dict:
        """The JSON-ready record of the run: ``history``, ``final_eval``, ``first_eval`` and
        ``data_report`` (the model and the optimizer state left out)."""
        return {
            "history": self.history,
            "final_eval": self.final_eval,
            "first_eval": self.first_eval,
            "data_report": self.data_report,
        }


def recipe_name(config: TrainConfig) -> str:
    for name, cls in (
        ("active-dpo", ActiveDPOConfig),
        ("online-dpo", OnlineDPOConfig),
        ("dpo", DPOConfig),
        ("reward", RewardConfig),
        ("pbpo", PbPOConfig),
        ("rlhf", RLHFConfig),
        ("sft", SFTConfig),
    ):
        if isinstance(config, cls):
            return name
    raise TypeError(
        f"config: expected SFTConfig, RewardConfig, DPOConfig or RLHFConfig, got {type(config)}"
    )


def train(
    config: TrainConfig,
    *,
    mesh=None,
    on_step: Callable[[int, dict], None] | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Run one training recipe end to end (see the module docstring).

    Args:
      config: an :class:`SFTConfig`, :class:`RewardConfig` or :class:`DPOConfig`.
      mesh: a device mesh to use instead of the one ``config.mesh`` describes over all devices.
      on_step: called with ``(step, metrics)`` after every optimizer step.
      log: where progress lines go (the CLI sends them to stderr).
    """
    name = recipe_name(config)
    mesh = distributed.everywhere(lambda: _check_inputs(name, config, mesh))
    lead = distributed.is_coordinator()
    if name == "active-dpo":  # the step count follows from rounds, budget and epochs
        rows = config.per_device_train_batch_size * config.gradient_accumulation_steps
        rows *= math.prod(mesh.shape[a] for a in BATCH_AXES)
        config = config.replace(max_steps=config.rounds * steps_per_round(config, rows))
    with claim(config, name) as run:
        tokenizer = tokenizer_for(config)
        recipe = _recipe(name, config, tokenizer, mesh)
        report = distributed.everywhere(
            lambda: _load_data(recipe, config, tokenizer, name, log if lead else _quiet)
        )
        if lead:
            write_json_atomic(run.path / "data_report.json", report)
        model, frozen = _models(name, config, mesh)
        if isinstance(config, SamplingOptions):
            _check_positions(config, recipe, model)
        parts = Trainable.split(model, _wrt(name, config), frozen)
        trainer = distributed.everywhere(
            lambda: Trainer(recipe, config, parts, mesh, run.path, log=log if lead else _quiet)
        )
        if isinstance(recipe, DPO) and recipe.reference == "precomputed":
            _precompute_reference(trainer, recipe)
        if lead:
            log(_summary(name, config, trainer, model))
        writer = MetricsWriter(
            run.path, tensorboard=config.report_to == "tensorboard", enabled=lead
        )
        try:
            fit = trainer.fit(
                metrics_writer=writer, progress=not config.disable_tqdm, on_step=on_step
            )
        finally:
            writer.close()
        final = _export(name, config, trainer, tokenizer, run.path)
    return TrainResult(run.path, final, fit, report)


def _quiet(_: str) -> None:
    pass


def _check_inputs(name: str, config: TrainConfig, mesh):
    """The model folders exist and the mesh spans every process's devices; returns the mesh."""
    if jax.process_count() > 1 and name in ("rlhf", "online-dpo", "active-dpo", "pbpo"):
        raise ValueError(
            f"{name}: sampling recipes do not run on several processes yet (sft, reward and dpo "
            f"do); this run has {jax.process_count()}"
        )
    check_model_dir("model_name_or_path", config.model_name_or_path)
    if isinstance(config, DPOConfig) and config.ref_model_name_or_path:
        check_model_dir("ref_model_name_or_path", config.ref_model_name_or_path)
    for flag in ("reward_model_path", "critic_model_path", "feature_model_path"):
        if getattr(config, flag, None):
            check_model_dir(flag, getattr(config, flag))
    if name == "pbpo":
        check_feature_dim(config)
    mesh = make_mesh(**parse_mesh(config.mesh)) if mesh is None else mesh
    if jax.process_count() > 1 and mesh.devices.size != jax.device_count():
        shape = " x ".join(f"{k}={v}" for k, v in mesh.shape.items())
        raise ValueError(
            f"mesh: {shape} has {mesh.devices.size} devices but the {jax.process_count()} "
            f"processes have {jax.device_count()} in all; a multi-host mesh spans every device"
        )
    return mesh


def _recipe(name, config, tokenizer, mesh):
    if name == "sft":
        return SFT(config, tokenizer)
    if name == "reward":
        return Reward(config, tokenizer)
    if name in ("rlhf", "online-dpo", "active-dpo", "pbpo"):
        reward_tok = None
        if config.reward_tokenizer_path:
            reward_tok = load_tokenizer(config.reward_tokenizer_path)
        oracle_kw = dict(
            policy_tokenizer=tokenizer,
            tokenizer=reward_tok,
            mesh=mesh,
            max_length=(config.max_prompt_length or 1024) + config.max_new_tokens,
        )
        oracle = RewardOracle(config.reward_model_path, **oracle_kw)
        if name == "pbpo":
            if config.feature_model_path:
                oracle_kw["tokenizer"] = None  # the feature model's own tokenizer
            features = FeatureOracle(
                config.feature_model_path or config.reward_model_path, **oracle_kw
            )
            return PbPO(config, tokenizer, oracle, features)
        if name == "rlhf":
            return RLHF(config, tokenizer, oracle)
        if name == "active-dpo":
            return ActiveDPO(config, tokenizer, oracle, reference=reference_mode(config))
        return OnlineDPO(config, tokenizer, oracle, reference=reference_mode(config))
    return DPO(config, tokenizer, reference=reference_mode(config))


def reference_mode(config: DPOConfig) -> str:
    """(c) precomputed, (b) a frozen model argument, (a) adapters off — see ``train.dpo``."""
    if config.precompute_ref_log_probs:
        return "precomputed"
    refreshed = getattr(config, "ref_update_steps", 0) > 0  # online DPO refreshes a copy
    if config.ref_model_name_or_path or not config.use_peft or refreshed:
        return "frozen"
    return "adapters_off"


def _load_data(recipe, config, tokenizer, name, log) -> dict:
    splits = load_splits(config.dataset_name, config_name=config.dataset_config)
    train_rows = split_rows(splits, config.dataset_train_split, source=config.dataset_name)
    _check_columns(train_rows, name, config.dataset_name)
    eval_rows = splits.get(config.dataset_test_split)
    if eval_rows is None and config.eval_fraction > 0:
        train_rows, eval_rows = _hold_out(train_rows, config.eval_fraction, config.seed)
    report = {}
    for split, rows in (("train", train_rows), ("eval", eval_rows)):
        if rows is None:
            continue
        encoded, rep = recipe.encode(rows, tokenizer)
        if not encoded:
            raise ValueError(
                f"dataset_name: no usable {split} examples in {config.dataset_name} "
                f"({rep['rows']}; {rep['truncation']})"
            )
        recipe.add_split(split, encoded, rep)
        report[split] = recipe.reports[split]
        log(f"{split}: " + "; ".join(report[split].values()))
    if "eval" not in report:
        log(
            f"eval: no {config.dataset_test_split!r} split in {config.dataset_name} and "
            "--eval_fraction is 0: no evaluation"
        )
    return report


def _check_columns(rows, name, source) -> None:
    """The columns the recipe needs are there (one line naming found and expected)."""
    columns = getattr(rows, "column_names", None)
    if columns is None:  # rows read line by line: the keys of the first rows
        columns = sorted({k for r in list(rows)[:100] if isinstance(r, dict) for k in r})
    options = NEEDED[name]
    if len(options) == 1:
        check_columns(columns, options[0], source=source)
    elif not any(all(c in columns for c in option) for option in options):
        found = ", ".join(map(repr, columns)) or "none"
        raise ValueError(
            f"dataset: {source} has none of the columns this trainer reads (found {found}; "
            "expected " + " or ".join("+".join(o) for o in options) + ")"
        )


def _hold_out(rows, fraction: float, seed: int):
    n = len(rows)
    order = np.random.default_rng([seed, 7]).permutation(n)
    cut = max(1, int(round(fraction * n)))
    held, kept = sorted(order[:cut]), sorted(order[cut:])
    return [rows[int(i)] for i in kept], [rows[int(i)] for i in held]


def _check_positions(config, recipe, model) -> None:
    """Prompt + sampled tokens fit the policy's positions (before any rollout)."""
    policy = model.actor if isinstance(model, ActorCritic) else model
    limit = policy.config.max_position_embeddings
    longest = max(int(recipe.lengths(split).max()) for split in recipe.data)
    if longest + config.max_new_tokens > limit:
        raise ValueError(
            f"max_new_tokens: prompts of up to {longest} tokens + {config.max_new_tokens} new "
            f"tokens exceed the model's max_position_embeddings={limit}; lower --max_new_tokens "
            "or --max_prompt_length"
        )


def model_options(config: TrainConfig) -> dict:
    """How every model of a run is built: storage dtype (the compute dtype is applied by the
    trainer's cast), remat policy, scanned layers."""
    dtype = jax.numpy.dtype(config.param_dtype)
    return dict(dtype=dtype, remat=config.remat, scan_layers=config.scan_layers)


def _models(name, config, mesh):
    opts = model_options(config)
    path = config.model_name_or_path
    if name == "reward":
        model = llm.reward_model_from_pretrained(path, mesh=mesh, seed=config.seed, **opts)
    else:
        model = llm.from_pretrained(path, mesh=mesh, **opts)
    if name == "rlhf":
        return _actor_critic(config, model, mesh, opts)
    if name == "pbpo":
        return _pbpo_policy(config, model, mesh)
    if config.use_peft:
        add_lora(model, config, mesh)
    frozen = {}
    if name in ("dpo", "online-dpo", "active-dpo") and reference_mode(config) != "adapters_off":
        if config.ref_model_name_or_path:
            frozen["ref"] = llm.from_pretrained(config.ref_model_name_or_path, mesh=mesh, **opts)
        elif config.use_peft and reference_mode(config) == "precomputed":
            frozen = {}  # precomputed with the adapters off
        else:
            frozen["ref"] = copy_module(model)  # TRL's default reference: the initial policy
    return model, frozen


def _actor_critic(config: RLHFConfig, actor, mesh, opts):
    """PPO's actor and critic (the critic from the reward model); RLOO has no critic. The
    reference: the actor with its adapters off under LoRA, else a frozen copy."""
    critic = None
    if config.algorithm == "ppo":
        path = config.critic_model_path or config.reward_model_path
        critic = llm.reward_model_from_pretrained(path, mesh=mesh, seed=config.seed, **opts)
    frozen = {} if config.use_peft else {"ref": copy_module(actor)}
    model = ActorCritic(actor, critic)
    if config.use_peft:
        add_lora(model, config, mesh)
    return model, frozen


def _pbpo_policy(config: PbPOConfig, actor, mesh):
    """PbPO's policy (RLOO, no critic) and its reference: a frozen copy when it is refreshed
    per episode or without LoRA, else the policy with its adapters off."""
    model = ActorCritic(actor, None)
    if config.use_peft:
        add_lora(model, config, mesh)
    refreshed = config.ref_refresh == "episode"
    return model, ({"ref": copy_module(actor)} if refreshed or not config.use_peft else {})


def _wrt(name, config):
    return trainable(config, "score") if name in ("reward", "rlhf") else trainable(config)


def _precompute_reference(trainer: Trainer, recipe: DPO) -> None:
    """Mode (c): the reference's log-probs of every pair, once, then no reference at all."""
    has_ref = "ref" in trainer.trainable.frozen

    def ref_logps(model, frozen, micro):
        ref = frozen["ref"] if has_ref else llm.without_adapters(model)
        from jaxpref.train.recipe import pair_rows

        summed, _ = llm.sequence_logps(ref, *pair_rows(micro))
        return jax.numpy.stack(jax.numpy.split(summed, 2), axis=-1)

    for split in list(recipe.data):
        recipe.ref_logps[split] = trainer.forward(split, ref_logps)
    trainer.trainable.frozen, trainer.frozen = {}, {}


def _summary(name, config, trainer: Trainer, model) -> str:
    t = trainer.trainable
    count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))  # noqa: E731
    trained, total = count(t.params), count(t.params) + count(t.rest)
    mesh = ", ".join(f"{k}={v}" for k, v in trainer.mesh.shape.items())
    ref = f", reference: {trainer.recipe.reference}" if name == "dpo" else ""
    return (
        f"{name}: {trainer.total} steps of {trainer.schedule.rows_per_step} examples "
        f"({trainer.schedule.steps_per_epoch} per epoch), buckets {list(trainer.buckets)}, "
        f"mesh {mesh}; training {trained:,} of {total:,} parameters{ref}"
    )


def _export(name, config, trainer: Trainer, tokenizer, out: pathlib.Path):
    """The trained model as a HF directory in the run folder (which the run owns: a resumed run
    replaces its earlier export, atomically, keeping the run's other files). Multi-host: every
    process gathers the weights, process 0 writes them."""
    t, state = trainer.trainable, trainer.state
    params, rest = state.params, state.rest
    if jax.process_count() > 1:
        params, rest = distributed.to_host((params, rest))
    model = nnx.merge(t.graphdef, params, rest)
    if not distributed.is_coordinator():
        return model
    if name in ("rlhf", "pbpo"):
        if config.use_peft:
            llm.merge_lora(model)
        llm.save_pretrained(model.actor, out, overwrite=True)
        if model.critic is not None:
            llm.save_reward_model(model.critic, out / "critic", overwrite=True)
        tokenizer.save_pretrained(str(out))
        return model.actor
    if name == "reward":
        if config.use_peft:
            llm.merge_lora(model)
        llm.save_reward_model(model, out, overwrite=True)
    else:
        if config.use_peft:
            if config.save_adapters:
                save_adapters(model, config, out / "adapters")
            llm.merge_lora(model)
        llm.save_pretrained(model, out, overwrite=True)
    tokenizer.save_pretrained(str(out))
    return model

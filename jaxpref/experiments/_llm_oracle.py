"""What the oracle-based LLM experiments (robust_sail_llm, pbpo_llm, pm_rlhf_llm; activedpo's
SFT and reward-model stages through ``prepare``) share: the
shipped HH-RLHF split cut into SFT / reward-model / RL data with a held-out test part, a small
Llama fine-tuned on it, its reward model as the true oracle, and the evaluation of a policy
against the SFT reference under that oracle (mean reward, win-rate, sampled KL)."""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from jaxpref import llm
from jaxpref.data import load_splits, load_tokenizer, shipped_hh_rows
from jaxpref.experiments._stages import base_model, stage_folders
from jaxpref.metrics.alignment import win_rate
from jaxpref.train.mesh import data_parallel_mesh


@dataclasses.dataclass
class Pipeline:
    root: pathlib.Path
    tokenizer: object
    mesh: object
    common: dict  # train() options every stage shares
    sizes: dict  # rows per split
    final_eval: dict = dataclasses.field(default_factory=dict)  # stage -> its last eval metrics

    def online_options(self, cfg, name: str, seed: int, oracle_dir) -> dict:
        """The options of an online run (``OnlineDPOConfig`` / ``PbPOConfig``) these experiments
        share: LoRA from ``root/sft`` on the RL split into ``root/rl/<name>``, Bradley–Terry labels
        from ``oracle_dir``'s scores, ``cfg``'s β, constant learning rate ``rl_lr`` and
        ``max_new_tokens``, a log row per step, and the stages' common options with ``seed``."""
        return dict(
            model_name_or_path=str(self.root / "sft"),
            reward_model_path=str(oracle_dir),
            dataset_name=str(self.root / "data_rl"),
            output_dir=str(self.root / "rl" / name),
            labeller="bradley_terry",
            beta=cfg.beta,
            learning_rate=cfg.rl_lr,
            lr_scheduler_type="constant",
            max_new_tokens=cfg.max_new_tokens,
            logging_steps=1,
            use_peft=True,
            **{**self.common, "seed": seed},
        )

    def train(self, config):
        """``jaxpref.train.train(config)`` on the pipeline's mesh, without log lines."""
        from jaxpref.train import train

        return train(config, log=lambda _: None, mesh=self.mesh)


def prepare(
    cfg, root: pathlib.Path, log=lambda _: None, *, parts=None, max_positions: int = 512
) -> Pipeline:
    """Data folders, the base model, SFT and the reward model (``root/sft``, ``root/rm``).

    ``parts``: the split of the shipped rows (``stage_folders``), one ``root/data_<part>``
    folder for each part but ``"test"``; by default ``cfg.num_eval`` rows held out, then 20 %
    SFT, 40 % reward model and the rest RL. ``max_positions``: the base model's."""
    from jaxpref.train import RewardConfig, SFTConfig, train

    rows = shipped_hh_rows()
    rest = len(rows) - cfg.num_eval
    default = {"test": cfg.num_eval, "sft": round(0.2 * rest), "rm": round(0.4 * rest), "rl": -1}
    parts = parts or default
    stages = [p for p in parts if p != "test"]
    sizes = stage_folders(rows, root, parts, stages, seed=cfg.seed)
    tok = load_tokenizer()
    base_model(root, tok, cfg, max_positions=max_positions, seed=cfg.seed)
    mesh, per_device = data_parallel_mesh(cfg.batch_size)
    common = dict(
        max_length=cfg.max_length,
        max_prompt_length=cfg.max_prompt_length,
        per_device_train_batch_size=per_device,
        per_device_eval_batch_size=per_device,
        save_steps=0,
        disable_tqdm=True,
        overwrite=True,
        report_to="none",
        seed=cfg.seed,
    )
    quiet, final_eval = dict(log=log, mesh=mesh), {}
    for stage, cls, steps, lr, src in (
        ("sft", SFTConfig, cfg.sft_steps, cfg.sft_lr, "base"),
        ("rm", RewardConfig, cfg.rm_steps, cfg.rm_lr, "sft"),
    ):
        final_eval[stage] = train(
            cls(
                model_name_or_path=str(root / src),
                dataset_name=str(root / f"data_{stage}"),
                output_dir=str(root / stage),
                max_steps=steps,
                learning_rate=lr,
                logging_steps=max(1, steps // 5),
                **common,
            ),
            **quiet,
        ).final_eval
    return Pipeline(root, tok, mesh, common, sizes, final_eval)


def oracle_head(rm_dir: pathlib.Path) -> np.ndarray:
    """The reward model's head w (d,): the oracle's score is ⟨w, φ⟩ on its backbone's
    features φ, so w is θ* of a linear reward model on those features."""
    return np.asarray(llm.reward_model_from_pretrained(rm_dir).score.kernel[...])[:, 0]


def noisy_copy(rm_dir: pathlib.Path, out: pathlib.Path, noise: float, seed: int) -> pathlib.Path:
    """A misspecified oracle: the reward model with its head w replaced by w + noise·‖w‖·ε/√d,
    ε ~ N(0, I) (the backbone kept)."""
    model = llm.reward_model_from_pretrained(rm_dir)
    w = np.asarray(model.score.kernel[...])
    eps = np.random.default_rng([seed, 5]).normal(size=w.shape)
    noisy = w + noise * np.linalg.norm(w) * eps / np.sqrt(w.size)
    model.score.kernel[...] = jnp.asarray(noisy, w.dtype)
    llm.save_reward_model(model, out, overwrite=True)
    load_tokenizer(rm_dir).save_pretrained(str(out))
    return out


@dataclasses.dataclass
class HeldOut:
    rows: list  # the held-out rows of the RL data (its test split)
    prompts: list  # their first ``cfg.eval_prompts`` encoded prompts
    ref: object  # the SFT reference policy
    oracle: object  # the reward-model oracle, on the policies' mesh
    sampling: object  # SamplingOptions: ``cfg.max_new_tokens`` new tokens scored by the oracle


def held_out(cfg, pipe: Pipeline, oracle_dir: pathlib.Path) -> HeldOut:
    """What an evaluation against the SFT reference under the oracle in ``oracle_dir`` needs:
    the held-out prompts (cut to ``cfg.max_prompt_length``), the reference and the oracle."""
    from jaxpref.train.config import SamplingOptions
    from jaxpref.train.oracle import RewardOracle
    from jaxpref.train.rollout import encode_prompts

    rows = load_splits(pipe.root / "data_rl")["test"]
    prompts, _ = encode_prompts(rows, pipe.tokenizer, max_prompt_length=cfg.max_prompt_length)
    oracle = RewardOracle(
        oracle_dir,
        policy_tokenizer=pipe.tokenizer,
        mesh=pipe.mesh,
        max_length=cfg.max_prompt_length + cfg.max_new_tokens,
    )
    return HeldOut(
        rows,
        prompts[: cfg.eval_prompts],
        llm.from_pretrained(pipe.root / "sft", mesh=pipe.mesh),
        oracle,
        SamplingOptions(reward_model_path=str(oracle_dir), max_new_tokens=cfg.max_new_tokens),
    )


class PolicyEval:
    """One response per held-out prompt from a policy and from the SFT reference (fixed keys),
    scored by the true oracle: mean reward, win-rate against the reference (ties ½), and the
    sampled sequence KL Σ_t log π/π_ref of the policy's responses."""

    def __init__(self, cfg, pipe: Pipeline, oracle_dir: pathlib.Path):
        held = held_out(cfg, pipe, oracle_dir)
        self.prompts, self.ref, self.oracle = held.prompts, held.ref, held.oracle
        self.sampling, self.pipe, self.rows = held.sampling, pipe, cfg.batch_size
        self.ref_scores = np.concatenate([s for s, _ in self._scored(self.ref, with_kl=False)])

    def _sample(self, policy, idx, key):
        """``sample_and_score`` of the held-out prompts ``idx`` (−1: padding) by the oracle."""
        from jaxpref.train.rollout import sample_and_score

        return sample_and_score(
            policy,
            self.prompts,
            idx,
            key,
            config=self.sampling,
            tokenizer=self.pipe.tokenizer,
            oracle=self.oracle,
            mesh=self.pipe.mesh,
        )

    def _scored(self, policy, *, with_kl: bool):
        from jaxpref.train.rollout import response_logps

        n = len(self.prompts)
        for start in range(0, n, self.rows):
            idx = np.arange(start, start + self.rows)
            idx = np.where(idx < n, idx, -1)
            key = jax.random.fold_in(jax.random.key(123), start)
            samples, scores, weight = self._sample(policy, idx, key)
            real = np.asarray(weight) > 0
            kl = np.zeros(real.sum())
            if with_kl:
                args = (samples.tokens, samples.mask, samples.response_mask)
                with jax.set_mesh(self.pipe.mesh):
                    gap = response_logps(policy, *args) - response_logps(self.ref, *args)
                kl = np.asarray(gap.sum(-1))[real]
            yield np.asarray(scores)[real], kl

    def reference_pair_scores(self, other_dir: pathlib.Path, key) -> tuple:
        """Two SFT responses per held-out prompt (``key``), scored by the true oracle and by
        the reward model in ``other_dir``: ``(true, other)``, each (prompts, 2)."""
        from jaxpref.train.oracle import RewardOracle

        other = RewardOracle(
            other_dir,
            policy_tokenizer=self.pipe.tokenizer,
            mesh=self.pipe.mesh,
            max_length=self.oracle.max_length,
        )
        samples, true, _ = self._sample(self.ref, np.repeat(np.arange(len(self.prompts)), 2), key)
        scores = other.score(samples.tokens, samples.mask, samples.prompt_lengths)
        return np.asarray(true).reshape(-1, 2), np.asarray(scores).reshape(-1, 2)

    def __call__(self, policy) -> dict:
        parts = list(self._scored(policy, with_kl=True))
        scores = np.concatenate([s for s, _ in parts])
        kl = np.concatenate([k for _, k in parts])
        return {
            "reward": float(scores.mean()),
            "reference_reward": float(self.ref_scores.mean()),
            "win_rate": float(win_rate(scores, self.ref_scores).rate),  # ties count ½
            "kl": float(kl.mean()),
        }

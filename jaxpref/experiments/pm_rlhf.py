"""PM RLHF (Xiao et al., arXiv 2405.16455): Figures 2 and 9, and a miniature of Table 2.

Figures 2 / 9 from the closed forms (eq. (5.2)); Table 2 in miniature on the enumerable toy
language of :mod:`jaxpref.policies.autoregressive`: a tabular autoregressive policy, started at a
random peaked reference, is trained with optax Adam on KL-RLHF, PM RLHF, sequence-level
conditional PM (Definition 4.1) and the official code's token-gated variant, each an objective
E_π[r̃ − log π] (exact, or REINFORCE-LOO from sampled sequences) whose optimum softmax(r̃) the run
compares against; the five columns of Table 2 by enumeration and by sampling. Protocol and the
numbers seen: ``experiments/pm_rlhf/README.md``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpref.experiments import _report
from jaxpref.experiments.registry import scale_configs
from jaxpref.metrics.alignment import (
    exact_alignment_metrics,
    preference_collapse,
    reference_pair_preferences,
    reference_perplexity,
    sampled_alignment_metrics,
)
from jaxpref.policies.autoregressive import (
    ToyProblem,
    optimise_table,
    rlhf_shaped_rewards,
    sequence_logps,
    toy_problem,
)
from jaxpref.regularizers import gibbs_policy, kl_rlhf_pairwise_preference, tempered_preference

COLUMNS = ("pm_divergence", "length", "perplexity", "entropy", "kl")


@dataclasses.dataclass(frozen=True)
class Config:
    vocab_size: int = 3  # content tokens (the end token is extra)
    max_len: int = 4  # maximum number of content tokens
    betas: tuple[float, ...] = (0.1, 0.5, 1.0)
    seq_alphas: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05)  # gate π_ref(y) ≥ α
    token_alphas: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)  # gate π_ref(T|prefix) > α
    ref_temperature: float = 1.0  # reference table logits N(0, 1)/temperature
    reward_scale: float = 0.1  # standard deviation of r_θ over sequences
    num_steps: int = 600  # Adam steps on the tabular policy
    estimator: str = "exact"  # "exact" expectation or sampled "reinforce"
    learning_rate: float = 0.1
    num_samples: int = 4000  # pairs for the sampled metrics
    seed: int = 0
    fig_p_refs: tuple[float, ...] = (0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99)
    fig_betas: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0)


config = scale_configs(
    Config(),
    test=dict(vocab_size=2, max_len=3, num_steps=300, num_samples=2000),
    quickstart=dict(num_steps=400),
    full=dict(vocab_size=4, max_len=5, num_steps=1500, num_samples=20000),
)


def num_units(cfg: Config) -> int:
    return 1 + len(cfg.betas)


# ---------------------------------------------------------------- problem and methods
def _optimise(shaped, prob: ToyProblem, cfg: Config, key):
    """Adam from π_ref's table: exact, or REINFORCE-LOO from 64 sequences with a cosine decay."""
    sampled = cfg.estimator == "reinforce"
    lr = optax.cosine_decay_schedule(cfg.learning_rate, cfg.num_steps, alpha=0.05)
    opt = optax.adam(lr if sampled else cfg.learning_rate)
    return optimise_table(
        shaped,
        prob.ref_table,
        prob.lang,
        opt,
        num_steps=cfg.num_steps,
        key=key,
        num_samples=64 if sampled else None,
    )


def _floats(metrics) -> dict:
    return {k: float(v) for k, v in metrics._asdict().items()}


def _run_beta(prob, cfg: Config, beta: float, key) -> list[dict]:
    shaped = rlhf_shaped_rewards(
        prob, beta, seq_alphas=cfg.seq_alphas, token_alphas=cfg.token_alphas
    )
    stacked = jnp.stack(list(shaped.values()))
    tables = _optimise(stacked, prob, cfg, jax.random.fold_in(key, 10**6))
    ref_logps, lengths = prob.ref_logps, jnp.asarray(prob.lang.lengths)
    extra = (ref_logps, prob.reward / beta, lengths)
    rows = []
    for i, name in enumerate(shaped):
        closed = gibbs_policy(stacked[i])
        logp = sequence_logps(tables[i], prob.lang)
        exact = _floats(exact_alignment_metrics(logp, *extra))
        sampled = _floats(
            sampled_alignment_metrics(jax.random.fold_in(key, i), logp, *extra, cfg.num_samples)
        )
        closed_exact = _floats(exact_alignment_metrics(closed, *extra))
        ref_ppl = float(reference_perplexity(logp, ref_logps, lengths))
        gap = float(jnp.max(jnp.abs(jnp.exp(logp) - jnp.exp(closed))))
        rows.append(dict(beta=beta, method=name, exact=exact, sampled=sampled))
        rows[-1].update(closed_form=closed_exact, ref_perplexity=ref_ppl)
        rows[-1].update(max_abs_prob_gap_to_closed_form=gap)
    return rows


# ---------------------------------------------------------------- figures 2 / 9
def _figures(cfg: Config) -> dict:
    p = np.linspace(0.005, 0.995, 199)
    fig2 = {f"{q:g}": np.asarray(kl_rlhf_pairwise_preference(q, p)) for q in cfg.fig_p_refs}
    fig9 = {f"{b:g}": np.asarray(tempered_preference(p, b)) for b in cfg.fig_betas}
    bias = {k: float(np.max(np.abs(v - p))) for k, v in fig2.items()}
    at07 = float(tempered_preference(0.7, 0.1))
    return dict(
        p_reward=p, figure2=fig2, figure9=fig9, figure2_max_bias=bias, p_rlhf_beta01_at_p07=at07
    )


def _collapse(prob, key, n=20000) -> dict:
    """Pairwise preferences of pairs drawn from π_ref: reference vs reward (Figures 3–4)."""
    c = preference_collapse(reference_pair_preferences(key, prob.ref_logps, prob.reward, n))
    return dict(
        p_ref=np.asarray(c.reference[:2000]),
        p_reward=np.asarray(c.reward[:2000]),
        frac_extreme_ref=float(c.reference_fraction),
        frac_extreme_reward=float(c.reward_fraction),
    )


def run(cfg: Config, *, progress=None) -> dict:
    tick = progress or (lambda n: None)
    figs = _figures(cfg)
    tick(1)
    prob = toy_problem(
        cfg.vocab_size,
        cfg.max_len,
        seed=cfg.seed,
        ref_temperature=cfg.ref_temperature,
        reward_scale=cfg.reward_scale,
    )
    key = jax.random.key(cfg.seed)
    rows = []
    for j, beta in enumerate(cfg.betas):
        rows += _run_beta(prob, cfg, beta, jax.random.fold_in(key, j))
        tick(1)
    toy = dict(
        num_sequences=int(prob.reward.shape[0]),
        collapse=_collapse(prob, jax.random.fold_in(key, 999)),
    )
    return dict(config=dataclasses.asdict(cfg), figures=figs, toy=toy, table=rows)


# ---------------------------------------------------------------- output
def table(results: dict) -> str:
    head = f"{'beta':>5} {'method':<18}" + "".join(f"{c:>14}" for c in COLUMNS)
    lines = [
        "Exact (enumeration) metrics of the optimised tabular policy; "
        "[sampled] in brackets for PM divergence",
        head,
    ]
    for row in results["table"]:
        e, s = row["exact"], row["sampled"]
        cells = f"{e['pm_divergence']:8.4f}[{s['pm_divergence']:.3f}]"
        cells += "".join(f"{e[c]:14.4f}" for c in COLUMNS[1:])
        lines.append(f"{row['beta']:>5g} {row['method']:<18} {cells}")
    col = results["toy"]["collapse"]
    lines.append(
        f"pairs from π_ref with preference outside [0.05, 0.95]: reference "
        f"{col['frac_extreme_ref']:.2f}, reward {col['frac_extreme_reward']:.2f}"
    )
    return "\n".join(lines)


def plot(results: dict, out_dir) -> list[Path]:
    figs = results["figures"]
    p = np.asarray(figs["p_reward"], float)
    fig, (axes,) = _report.figure(1, 3, (15, 4.5))
    for key_, ax, label, title in (
        ("figure2", axes[0], "p_ref=", "Fig. 2: β = 1, varying p_ref"),
        ("figure9", axes[1], "β=", "Fig. 9: p_ref = ½, varying β"),
    ):
        for k, v in figs[key_].items():
            ax.plot(p, v, label=label + k)
        ax.plot(p, p, "r--", lw=2, label="preference matching")
        ax.set(xlabel="reward preference p_reward(y₁)", ylabel="KL-RLHF preference p_rlhf(y₁)")
        ax.set_title(title)
    col, bins = results["toy"]["collapse"], np.linspace(0, 1, 21)
    axes[2].hist(col["p_ref"], bins=bins, alpha=0.6, label="reference σ(Δlog π_ref)")
    axes[2].hist(col["p_reward"], bins=bins, alpha=0.6, label="reward σ(Δr)")
    axes[2].set(xlabel="p(y₁ ≻ y₂)", title="toy language: pairs from π_ref (cf. Figs. 3–4)")
    for ax in axes:
        ax.legend(fontsize=7)
    f1 = _report.save(fig, out_dir, "pm_rlhf_figures_2_9.png")

    rows = results["table"]
    betas = sorted({r["beta"] for r in rows})
    fig, (axes,) = _report.figure(1, 2, (12, 4.5))
    for ax, col in zip(axes, ("pm_divergence", "perplexity")):
        for r in rows:
            x = betas.index(r["beta"])
            ax.scatter(x, r["exact"][col], s=18)
            ax.annotate(r["method"], (x, r["exact"][col]), fontsize=6)
        ax.set_xticks(range(len(betas)), [f"β={b:g}" for b in betas])
        ax.set(title=f"miniature Table 2: {col} (exact)", yscale="log")
    return [f1, _report.save(fig, out_dir, "pm_rlhf_table2.png")]

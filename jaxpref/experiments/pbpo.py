"""PbPO regret validation (Jia, arXiv 2511.12867; protocol reconstructed, see theory/pbpo.md).

Sections, each averaged over seeds (a fresh environment and θ* per seed):

1. regret vs K on the linear contextual dueling bandit, PbPO against the baselines, with the
   log-log slope of cumulative regret over the K grid (theory: 1/2 up to logs);
2. regret vs d at fixed K (theory: linear in d for both the upper and the lower bound);
3. regret vs H at fixed K on the linear token-level MDP (theory: between H (lower bound
   Ω(dH√K)) and H^{3/2} (upper bound Õ(κ d H^{3/2} √K)));
4. the ablation the summary proposes: reward-agnostic only / reward-aware only / both;
5. PbPO's regret vs K under each named radius of ``jaxpref.pbpo.RADII`` (κ certified / local /
   heuristic, one compile: the radius is linear in κ, so each is a ``radius_scale``).

The stated rates carry unknown constants, so the plotted rate curves are shapes anchored at the
first measured point; what is compared is the measured exponent.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import numpy as np

from jaxpref.experiments._report import figure, rate_shape, save, text_table
from jaxpref.experiments.registry import scale_configs
from jaxpref.metrics import cumulative_regret_curve, mean_total_regret, regret_scaling
from jaxpref.pbpo import RADII, envs, loop, radius_kappa

BASELINES = ("pbpo", "greedy", "uniform", "onpolicy", "optimism")
ABLATION = ("agnostic_only", "aware_only", "pbpo")


@dataclasses.dataclass(frozen=True)
class Config:
    k_grid: tuple[int, ...] = (32, 64, 128, 256, 512)  # checkpoints of one K_max run
    seeds: int = 8
    num_contexts: int = 64  # X (a fresh context each episode)
    num_arms: int = 16  # responses per context in the bandit
    dim: int = 6  # d in sections 1, 3, 4
    d_grid: tuple[int, ...] = (2, 4, 8)
    h_grid: tuple[int, ...] = (1, 2, 3, 4)
    vocab: int = 2  # token MDP vocabulary (Y = V^H sequences)
    methods: tuple[str, ...] = BASELINES
    ablation: tuple[str, ...] = ABLATION
    radius_scale: float = 1.0  # β used = scale · β_k(δ) with the κ of `radius`
    radius: str = "certified"  # a name in jaxpref.pbpo.RADII (κ: certified, local 4, heuristic 1)
    radii: tuple[str, ...] = tuple(RADII)  # section 5: PbPO under each of these radii
    delta: float = 0.1

    @property
    def k_max(self) -> int:
        return max(self.k_grid)


_config = scale_configs(
    Config(),
    test=dict(k_grid=(32, 64, 128, 256), seeds=5, num_contexts=32, num_arms=8, dim=4)
    | dict(d_grid=(2, 8), h_grid=(1, 3), methods=("pbpo", "greedy")),
    quickstart=dict(k_grid=(32, 64, 128, 256, 512), seeds=6),
    small=dict(k_grid=(64, 128, 256, 512, 1024), seeds=10, d_grid=(2, 4, 8, 16))
    | dict(h_grid=(1, 2, 3, 4, 5)),
    full=dict(k_grid=(64, 128, 256, 512, 1024, 2048, 4096), seeds=20, num_contexts=128)
    | dict(d_grid=(2, 4, 8, 16, 32), h_grid=(1, 2, 3, 4, 5, 6)),
)


def config(scale: str, radius: str = "certified") -> Config:
    """The named scale's settings; ``radius`` picks κ of β_k(δ) (``jaxpref.pbpo.RADII``)."""
    if radius not in RADII:
        raise ValueError(f"radius: must be one of {tuple(RADII)}, got {radius!r}")
    return dataclasses.replace(_config(scale), radius=radius)


def num_units(cfg: Config) -> int:
    return 3


def _settings(cfg: Config, lcfg: loop.LoopConfig) -> dict:
    """The study ``{section: {label: (environment batch, loop params)}}``, seeds batched inside."""
    d, scale = cfg.dim, cfg.radius_scale

    def seeds(make, salt, **kw):  # seeds' environments from keys derived from (salt, seed)
        key = jax.random.fold_in(jax.random.PRNGKey(0), salt)
        return envs.env_batch(make, key, cfg.seeds, num_contexts=cfg.num_contexts, **kw)

    def bandit(d, salt=1):
        return seeds(envs.dueling_bandit, salt, num_arms=cfg.num_arms, d=d)

    def token(h):
        return seeds(envs.token_mdp, 3, vocab=cfg.vocab, horizon=h, d=d)

    prm = functools.partial(loop.loop_params, "pbpo", dim=d, radius_scale=scale)
    methods = dict.fromkeys(cfg.methods + cfg.ablation)
    rs = [r for r in cfg.radii if r != cfg.radius]  # cfg.radius is section 1's PbPO run
    return {
        "K": {m: (bandit(d), loop.loop_params(m, dim=d, radius_scale=scale)) for m in methods},
        "d": {k: (bandit(k, salt=2), prm(dim=k)) for k in cfg.d_grid},
        "H": {h: (token(h), prm(bound_delta_phi=2.0 * h)) for h in cfg.h_grid},
        "radius": {
            r: (bandit(d), prm(radius_scale=scale * loop.radius_scale(r, lcfg))) for r in rs
        },
    }


def run(cfg: Config, *, progress=None) -> dict:
    """All four sections in one compiled map (regret at K = max(k_grid) in sections 2-4)."""
    tick = progress or (lambda _: None)
    lcfg = loop.LoopConfig(num_episodes=cfg.k_max, delta=cfg.delta, kappa=RADII[cfg.radius])
    study = _settings(cfg, lcfg)
    tick(1)
    keys = jax.random.split(jax.random.PRNGKey(1), cfg.seeds)  # the same loop keys per setting
    by = loop.run_study(keys, study, lcfg)  # {section: {label: (S, K) regrets}}
    tick(1)
    curve = functools.partial(cumulative_regret_curve, checkpoints=cfg.k_grid)
    tick(1)
    return {
        "config": dataclasses.asdict(cfg),
        "regret_vs_K": {
            "K": list(cfg.k_grid),
            "methods": {m: curve(by["K"][m]) for m in cfg.methods},
        },
        "regret_vs_d": {"d": list(cfg.d_grid)} | regret_scaling(cfg.d_grid, [*by["d"].values()]),
        "regret_vs_H": {"H": list(cfg.h_grid)} | regret_scaling(cfg.h_grid, [*by["H"].values()]),
        "ablation": {m: mean_total_regret(by["K"][m]) for m in cfg.ablation},
        "regret_vs_radius": {
            "K": list(cfg.k_grid),
            "kappa": {r: float(radius_kappa(r, 1.0, 2.0)) for r in cfg.radii},
            "methods": {r: curve(by["radius"].get(r, by["K"]["pbpo"])) for r in cfg.radii},
        },
        "rates": {"upper": "O~(kappa d H^1.5 sqrt(K))", "lower": "Omega(d H sqrt(K))"},
    }


def _plot_k(ax, res, radii):
    ks = res["K"]
    for m, s in res["methods"].items():
        ax.errorbar(ks, s["mean"], yerr=s["se"], marker="o", label=f"{m} (slope {s['slope']:.2f})")
    for r, s in radii["methods"].items():
        ax.plot(ks, s["mean"], ":", marker=".", label=f"PbPO, {r} radius (slope {s['slope']:.2f})")
    first = res["methods"]["pbpo"]["mean"][0]
    ax.plot(ks, rate_shape(ks, first, 0.5), "k--", label="√K shape (both bounds)")
    ax.set(xlabel="episodes K", ylabel="cumulative regret", title="regret vs K (dueling bandit)")


RATES = {  # the stated rates' shapes in d and in H (unknown constants)
    "d": [(1.0, "d (upper & lower)")],
    "H": [(1.0, "H (lower Ω(dH√K))"), (1.5, "H^1.5 (upper Õ(κdH^1.5√K))")],
}


def plot(results: dict, out_dir) -> list[Path]:
    fig, ((ax_k, ax_d, ax_h, ax_a),) = figure(1, 4, (20, 4.5))
    _plot_k(ax_k, results["regret_vs_K"], results["regret_vs_radius"])
    for ax, name in ((ax_d, "d"), (ax_h, "H")):
        res = results[f"regret_vs_{name}"]
        xs, ys = res[name], res["regret"]
        ax.plot(xs, ys, "o-", label=f"PbPO (slope {res['slope']:.2f})")
        for p, lab in RATES[name]:
            ax.plot(xs, rate_shape(xs, ys[0], p), "--", label=lab)
        ax.set(xlabel=name, ylabel="cumulative regret at K_max", title=f"regret vs {name}")
    abl = results["ablation"]
    ax_a.bar(list(abl), list(abl.values()))
    ax_a.set(ylabel="cumulative regret at K_max", title="exploration ablation")
    for ax in (ax_k, ax_d, ax_h):
        ax.set(xscale="log", yscale="log")
        ax.legend(fontsize=7)
    return [save(fig, out_dir, "pbpo_regret.png")]


def table(results: dict) -> str:
    """One row per method and per radius of PbPO (cumulative regret at each K, slope), then the
    d and H slopes and the ablation."""
    res, rr = results["regret_vs_K"], results["regret_vs_radius"]
    rows = [(m, *s["mean"], s["slope"]) for m, s in res["methods"].items()]
    for r, s in rr["methods"].items():
        rows.append((f"PbPO, {r} radius (κ={rr['kappa'][r]:.2f})", *s["mean"], s["slope"]))
    width = max(14, *(len(row[0]) for row in rows))
    cols = [("method", f"{width}s"), *((f"K={k}", "8.2f") for k in res["K"]), ("slope", "5.3f")]
    lines = text_table(cols, rows, sep="  ")
    for x, bounds in (("d", "1"), ("H", "1 to 1.5")):
        r = results[f"regret_vs_{x}"]
        lines.append(
            f"regret vs {x} {r[x]}: {np.round(r['regret'], 2).tolist()} "
            f"(slope {r['slope']:.2f}; bounds: {bounds})"
        )
    lines.append("ablation: " + ", ".join(f"{m}={v:.2f}" for m, v in results["ablation"].items()))
    return "\n".join(lines)

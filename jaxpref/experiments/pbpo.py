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

from jaxpref.experiments._report import figure, rate_shape, save
from jaxpref.experiments.registry import scale_configs
from jaxpref.metrics import cumulative_regret_curve, loglog_slope
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


def _methods(cfg: Config) -> tuple[str, ...]:
    return tuple(dict.fromkeys(cfg.methods + cfg.ablation))


def _settings(cfg: Config):
    """(section, label, environment batch, loop params) of every run, seeds batched inside."""
    d, scale, X = cfg.dim, cfg.radius_scale, cfg.num_contexts

    def bandit(d, salt=1):  # seeds' environments from keys derived from (salt, seed)
        key = jax.random.fold_in(jax.random.PRNGKey(0), salt)
        make = envs.dueling_bandit
        return envs.env_batch(make, key, cfg.seeds, num_contexts=X, num_arms=cfg.num_arms, d=d)

    def token(h):
        key = jax.random.fold_in(jax.random.PRNGKey(0), 3)
        make = envs.token_mdp
        return envs.env_batch(make, key, cfg.seeds, num_contexts=X, vocab=cfg.vocab, horizon=h, d=d)

    prm = functools.partial(loop.loop_params, "pbpo", dim=d, radius_scale=scale)
    base = radius_kappa(cfg.radius, 1.0, 2.0)  # κ of the loop (LoopConfig: B = 1, bandit L = 2)
    kappa = {r: float(radius_kappa(r, 1.0, 2.0)) for r in cfg.radii}
    out = [
        ("K", m, bandit(d), loop.loop_params(m, dim=d, radius_scale=scale)) for m in _methods(cfg)
    ]
    out += [("d", k, bandit(k, salt=2), prm(dim=k)) for k in cfg.d_grid]
    out += [("H", h, token(h), prm(bound_delta_phi=2.0 * h)) for h in cfg.h_grid]
    rs = [r for r in cfg.radii if r != cfg.radius]  # cfg.radius is section 1's PbPO run
    return out + [
        ("radius", r, bandit(d), prm(radius_scale=scale * kappa[r] / float(base))) for r in rs
    ]


def run(cfg: Config, *, progress=None) -> dict:
    """All four sections in one compiled map (regret at K = max(k_grid) in sections 2-4)."""
    tick = progress or (lambda _: None)
    settings = _settings(cfg)
    tick(1)
    keys = jax.random.split(jax.random.PRNGKey(1), cfg.seeds)  # the same loop keys per setting
    lcfg = loop.LoopConfig(num_episodes=cfg.k_max, delta=cfg.delta, kappa=RADII[cfg.radius])
    env_list, prm_list = [e for *_, e, _ in settings], [p for *_, p in settings]
    regrets = np.asarray(loop.run_settings(keys, env_list, prm_list, lcfg), np.float64)
    tick(1)
    by = {}
    for (section, label, _, _), r in zip(settings, regrets):
        by.setdefault(section, {})[label] = r
    final = {sec: {lab: float(r.sum(1).mean()) for lab, r in v.items()} for sec, v in by.items()}
    vs_d, vs_h = list(final["d"].values()), list(final["H"].values())
    slope = lambda x, y: loglog_slope(x, y)[0]  # noqa: E731
    tick(1)
    return {
        "config": dataclasses.asdict(cfg),
        "regret_vs_K": {
            "K": list(cfg.k_grid),
            "methods": {m: cumulative_regret_curve(by["K"][m], cfg.k_grid) for m in cfg.methods},
        },
        "regret_vs_d": {"d": list(cfg.d_grid), "regret": vs_d, "slope": slope(cfg.d_grid, vs_d)},
        "regret_vs_H": {"H": list(cfg.h_grid), "regret": vs_h, "slope": slope(cfg.h_grid, vs_h)},
        "ablation": {m: final["K"][m] for m in cfg.ablation},
        "regret_vs_radius": {
            "K": list(cfg.k_grid),
            "kappa": {r: float(radius_kappa(r, 1.0, 2.0)) for r in cfg.radii},
            "methods": {
                r: cumulative_regret_curve(by.get("radius", {}).get(r, by["K"]["pbpo"]), cfg.k_grid)
                for r in cfg.radii
            },
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


def _plot_grid(ax, res, name, powers):
    xs, ys = res[name], res["regret"]
    ax.plot(xs, ys, "o-", label=f"PbPO (slope {res['slope']:.2f})")
    for p, lab in powers:
        ax.plot(xs, rate_shape(xs, ys[0], p), "--", label=lab)
    ax.set(xlabel=name, ylabel="cumulative regret at K_max", title=f"regret vs {name}")


def plot(results: dict, out_dir) -> list[Path]:
    fig, axes = figure(1, 4, (20, 4.5))
    axes = axes[0]
    _plot_k(axes[0], results["regret_vs_K"], results["regret_vs_radius"])
    _plot_grid(axes[1], results["regret_vs_d"], "d", [(1.0, "d (upper & lower)")])
    h_rates = [(1.0, "H (lower Ω(dH√K))"), (1.5, "H^1.5 (upper Õ(κdH^1.5√K))")]
    _plot_grid(axes[2], results["regret_vs_H"], "H", h_rates)
    abl = results["ablation"]
    axes[3].bar(list(abl), list(abl.values()))
    axes[3].set(ylabel="cumulative regret at K_max", title="exploration ablation")
    for ax in axes[:3]:
        ax.set(xscale="log", yscale="log")
        ax.legend(fontsize=7)
    return [save(fig, out_dir, "pbpo_regret.png")]


def table(results: dict) -> str:
    res = results["regret_vs_K"]
    lines = ["method          " + "  ".join(f"K={k:<6d}" for k in res["K"]) + "  slope"]
    for m, s in res["methods"].items():
        lines.append(
            f"{m:15s} " + "  ".join(f"{v:8.2f}" for v in s["mean"]) + f"  {s['slope']:.3f}"
        )
    for x, bounds in (("d", "1"), ("H", "1 to 1.5")):
        r = results[f"regret_vs_{x}"]
        lines.append(
            f"regret vs {x} {r[x]}: {np.round(r['regret'], 2).tolist()} "
            f"(slope {r['slope']:.2f}; bounds: {bounds})"
        )
    lines.append("ablation: " + ", ".join(f"{m}={v:.2f}" for m, v in results["ablation"].items()))
    rr = results["regret_vs_radius"]
    for r, s in rr["methods"].items():
        lines.append(
            f"PbPO, {r} radius (κ={rr['kappa'][r]:.2f}): "
            + "  ".join(f"{v:8.2f}" for v in s["mean"])
            + f"  slope {s['slope']:.3f}"
        )
    return "\n".join(lines)

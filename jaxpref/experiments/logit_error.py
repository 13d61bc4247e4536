"""ADPO §6.1: maximum logit error of log-linear DPO vs the feedback budget n.

Protocol (Kveton et al., arXiv 2503.01076, §6.1; ``theory/adpo.md`` §6), for each feature source
(``jaxpref.data.fp.SOURCES``) and seed: N difference vectors rescaled to max norm 1
(``difference_vectors``); labels, reference log-ratios and θ* by ``logged_feedback_pool``; each
method of ``jaxpref.design.METHODS`` selects n_max pairs in order, and for every n on the grid
θ̂_n, the DPO MLE on the first n, is scored by max / mean logit error and error rate against θ*
over all N pairs (``design.compare_methods``: ``select``, then ``budget_curve``). The plotted
bound (Theorems 3 × 4) uses the empirical κ of ADPO+'s greedy run (``ActiveResult.kappa``), the
largest over seeds.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jaxpref import design
from jaxpref.data import feature_pairs as fp
from jaxpref.experiments._report import budget_curves, figure, save, seed_stats
from jaxpref.experiments.registry import scale_configs
from jaxpref.metrics import logit_error_bound, loglog_slope

METHODS, SOURCES = design.METHODS, fp.SOURCES
FIELDS = {"max": "max_logit_error", "mean": "mean_logit_error", "error_rate": "error_rate"}


@dataclasses.dataclass(frozen=True)
class Config:
    sources: tuple[str, ...] = ("synthetic", "digits")
    num_pairs: int = 4096  # N
    dim: int = 8  # d
    log2_n: tuple[int, int] = (4, 10)  # budget grid n = 2^k, k in [lo, hi]
    seeds: int = 3
    beta: float = 1.0  # β (the paper's §6.1 uses 1)
    gamma: float = 0.1  # ridge γ, also H_0 = γI (not given in the paper)
    alpha: float = 3.0  # UCB stabiliser of ADPO / ADPO+ (App. B; 3 in §6)
    num_candidates: int | None = 256  # ADPO's random candidate subset (paper: 256)
    delta: float = 0.05  # failure probability of the plotted bound
    slope_log2_from: int = 8  # fit slopes on n ≥ 2^this: past the prior-dominated start

    @property
    def grid(self) -> np.ndarray:
        return 2 ** np.arange(self.log2_n[0], self.log2_n[1] + 1)


config = scale_configs(
    Config(),
    test=dict(sources=("synthetic",), log2_n=(4, 9), seeds=4, slope_log2_from=7),
    quickstart=dict(num_pairs=8192, dim=8, log2_n=(5, 10), seeds=3, slope_log2_from=8),
    small=dict(sources=SOURCES, num_pairs=16384, dim=16, log2_n=(5, 11), seeds=5)
    | dict(slope_log2_from=9),
    full=dict(sources=SOURCES, num_pairs=2**16, dim=32, log2_n=(6, 13), seeds=10)
    | dict(slope_log2_from=10),
)


def num_units(cfg: Config) -> int:
    return len(cfg.sources) * cfg.seeds * len(METHODS)


# ---------------------------------------------------------------- run
def run(cfg: Config, *, progress=None) -> dict:
    """Run the protocol in float64 (exact greedy and Newton fits to machine precision)."""
    grid = cfg.grid
    if grid[-1] > cfg.num_pairs:
        raise ValueError(f"log2_n: largest budget {grid[-1]} exceeds num_pairs {cfg.num_pairs}")
    tick = progress or (lambda _: None)
    kw = dict(beta=cfg.beta, gamma=cfg.gamma)
    rule = dict(alpha=cfg.alpha, num_candidates=cfg.num_candidates)
    out = {"config": dataclasses.asdict(cfg), "n": grid.tolist(), "sources": {}}
    with jax.enable_x64(True):
        for source in cfg.sources:
            rng = np.random.default_rng(0)
            points, classes = fp.class_points(source, cfg.dim, rng)
            phi = fp.difference_vectors(np.asarray(points, np.float64), classes, cfg.num_pairs, rng)
            curves = {m: {k: [] for k in FIELDS} for m in METHODS}
            kappas, diag = [], []
            for seed in range(cfg.seeds):
                pool = fp.logged_feedback_pool(phi, np.random.default_rng(1000 + seed), **kw)
                s, b = pool.labels, pool.ref_logratio
                diag.append([np.linalg.norm(pool.theta_star), np.abs(b).max()])
                runs = design.compare_methods(
                    [jax.random.key(seed)], phi, s, b, grid, pool.theta_star, **kw, **rule
                )
                for method, r in runs.items():
                    for k in FIELDS:
                        curves[method][k].append(np.asarray(getattr(r.curve.errors, k)[0]))
                kappas.append(float(runs["ADPO+"].kappa[0]))
                tick(len(METHODS))
            out["sources"][source] = _summarise(curves, grid, cfg, max(kappas), np.array(diag))
    return out


def _summarise(curves, grid, cfg, kappa, diag) -> dict:
    tail, methods = grid >= 2**cfg.slope_log2_from, {}
    for m, c in curves.items():
        methods[m] = {name: seed_stats(c[k]) for k, name in FIELDS.items()}
        mean_max = methods[m]["max_logit_error"]["mean"]
        methods[m]["slope_max_logit_error"] = loglog_slope(grid[tail], mean_max[tail])[0]
    kw = dict(beta=cfg.beta, gamma=cfg.gamma, delta=cfg.delta, kappa=max(kappa, 1.0))
    bound = {"values": logit_error_bound(grid, cfg.dim, **kw), "kappa": kappa, "delta": cfg.delta}
    return {
        "methods": methods,
        "bound": bound,
        "assumption_2": {
            "max_norm_theta_star": float(diag[:, 0].max()),
            "max_abs_ref_logratio": float(diag[:, 1].max()),
        },
    }


# ---------------------------------------------------------------- report
def table(results: dict) -> str:
    n, cfg, lines = results["n"], results["config"], []
    for source, res in results["sources"].items():
        lines.append(
            f"\n{source}: metrics at n = {n[-1]} (mean ± std over {cfg['seeds']} seeds);"
            f" slope of max logit error vs n on n ≥ {2 ** cfg['slope_log2_from']}"
        )
        lines.append(
            f"{'method':10s} {'max logit err':>16s} {'mean logit err':>16s} "
            f"{'error rate':>14s} {'slope':>7s}"
        )
        for m, r in res["methods"].items():
            cells = [(r[f]["mean"][-1], r[f]["std"][-1]) for f in FIELDS.values()]
            lines.append(
                f"{m:10s} {cells[0][0]:9.3f} ± {cells[0][1]:5.3f} {cells[1][0]:9.4f} ± "
                f"{cells[1][1]:5.4f} {cells[2][0]:7.4f} ± {cells[2][1]:5.4f} "
                f"{r['slope_max_logit_error']:7.3f}"
            )
        b = res["bound"]
        lines.append(
            f"{'bound':10s} {b['values'][-1]:9.3f}  (Thms 3×4, δ={b['delta']}, "
            f"empirical κ={b['kappa']:.2f})"
        )
    return "\n".join(lines)


def plot(results: dict, out_dir) -> list:
    n, sources = np.asarray(results["n"]), results["sources"]
    fig, axes = figure(len(FIELDS), len(sources), (4.5 * len(sources), 10))
    for j, (source, res) in enumerate(sources.items()):
        for i, field in enumerate(FIELDS.values()):
            ax, label = axes[i, j], field.replace("_", " ")
            budget_curves(ax, n, res["methods"], field)
            if field == "max_logit_error":
                ax.plot(n, res["bound"]["values"], "k--", label="bound (Thm 3×4)")
                ref = res["methods"]["ADPO+"][field]["mean"][0] * (n / n[0]) ** -0.5
                ax.plot(n, ref, ":", color="gray", label="∝ n^(-1/2)")
            ax.set(yscale="log", ylabel=label, title=f"{source}: {label}")
    axes[0, 0].legend(fontsize=7)
    return [save(fig, out_dir, "logit_error.png")]

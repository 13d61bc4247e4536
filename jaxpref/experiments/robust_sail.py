"""Robust vs nominal SAIL vs offline DPO under a misspecified preference oracle (arXiv 2602.20457).

A synthetic contextual problem (n contexts × K responses, ‖φ‖ ≤ 1, coordinate 0 a "verbosity"
the true reward ignores) with the true BTL oracle and its shifted observations of
:mod:`jaxpref.robust.oracles` (``verbosity``, ``adversarial``; |P° − P*| ≤ ρ). Learners
(log-linear, ‖θ‖ ≤ B, β = 1): robust SAIL (ρ_alg = ρ) and nominal SAIL (ρ_alg = 0) by projected
stochastic subgradient steps, and offline DPO on pairs from π_ref; evaluated on held-out
contexts against the TRUE oracle. Convergence: min_{k≤T}‖∇M_λ(θ_k)‖² vs T. Protocol and the
numbers seen: ``experiments/robust_sail/README.md``.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxpref import robust
from jaxpref.experiments import _report
from jaxpref.experiments.registry import scale_configs
from jaxpref.metrics.fits import loglog_slope

SHIFTS = robust.SHIFTS


def _x64():
    """Run the protocol in float64 (tight prox tolerances)."""
    return jax.enable_x64(True)


@dataclasses.dataclass(frozen=True)
class Config:
    num_contexts: int = 16  # training contexts n
    num_test_contexts: int = 64  # held-out contexts for evaluation
    num_responses: int = 4  # K
    dim: int = 4  # d (coordinate 0 is verbosity)
    reward_scale: float = 3.0  # ‖θ*‖
    radius: float = 5.0  # B
    rhos: tuple = (0.05, 0.1, 0.2)
    num_seeds: int = 3
    num_steps: int = 2000  # stochastic steps per learner
    num_samples: int = 16  # triples per step
    step_size: float = 2.0  # η₀
    dpo_steps: int = 500
    conv_rho: float = 0.1
    conv_steps: int = 512  # T_max for the convergence curve
    conv_seeds: int = 4
    conv_step_size: float = 0.5
    seed: int = 0


config = scale_configs(
    Config(),
    test=dict(num_test_contexts=32, num_seeds=2, num_steps=400, rhos=(0.2,), dpo_steps=200)
    | dict(conv_steps=128, conv_seeds=2),
    full=dict(num_contexts=32, num_test_contexts=256, rhos=(0.0, 0.05, 0.1, 0.15, 0.2))
    | dict(num_seeds=8, num_steps=8000, conv_steps=2048, conv_seeds=8),
)


def num_units(cfg: Config) -> int:
    return len(SHIFTS) * len(cfg.rhos) + 1


def make_world(cfg: Config) -> robust.VerbosityTestbed:
    """The testbed of ``cfg`` (`robust.verbosity_testbed`); θ_true = θ_ref + θ*/β is optimal."""
    n, m, k, d = cfg.num_contexts, cfg.num_test_contexts, cfg.num_responses, cfg.dim
    key = jax.random.key(cfg.seed)
    return robust.verbosity_testbed(key, n, m, k, d, reward_scale=cfg.reward_scale)


def train_sail(key, problem, rho, cfg: Config, *, keep_path=False, steps=None, step_size=None):
    """Projected stochastic subgradient on robust SAIL (ρ = 0: nominal); returns the path or
    the tail average of the iterates (second half)."""
    steps = steps or cfg.num_steps
    eta = step_size or cfg.step_size
    path = robust.projected_subgradient_path(
        key, problem, rho, cfg.radius, eta, steps, cfg.num_samples
    )
    return path if keep_path else jnp.mean(path[steps // 2 :], axis=0)


_KEYS = ("accuracy", "max_logit_error", "regret", "true_sail_loss", "robust_objective")


def _compare(world, rho, shift, cfg: Config):
    """Robust SAIL, nominal SAIL (mean over seeds) and offline DPO, by `robust.testbed_metrics`."""
    pref = robust.shifted_preferences(world.phi_train, world.theta_star, rho, shift)
    problem = robust.testbed_problem(world, pref)
    keys = jax.random.split(jax.random.key(cfg.seed + 1), cfg.num_seeds)

    def mean(thetas):  # (S, d) -> each metric's mean over the seeds
        per_seed = jax.vmap(lambda th: robust.testbed_metrics(th, world, problem, rho))(thetas)
        return {k: float(jnp.mean(per_seed[k])) for k in _KEYS}

    out = {}
    for name, rho_alg in (("robust_sail", rho), ("nominal_sail", 0.0)):
        out[name] = mean(jax.vmap(lambda k, r=rho_alg: train_sail(k, problem, r, cfg))(keys))
    out["offline_dpo"] = mean(robust.fit_offline_dpo(problem, cfg.radius, cfg.dpo_steps)[None])
    return out


def _convergence(world, cfg: Config):
    rho = cfg.conv_rho
    pref = robust.shifted_preferences(world.phi_train, world.theta_star, rho, "adversarial")
    problem = robust.testbed_problem(world, pref)
    pts = robust.ball_points(jax.random.key(7), 32, cfg.dim, cfg.radius, problem.phi.dtype)
    tau = float(robust.weak_convexity_estimate(problem, rho, pts))
    lam = 1.0 / (2.0 * max(tau, 1.0))  # λ < 1/τ̂: a strongly convex prox subproblem
    keys = jax.random.split(jax.random.key(cfg.seed + 2), cfg.conv_seeds)
    sail = functools.partial(train_sail, problem=problem, rho=rho, cfg=cfg)
    paths = jax.vmap(
        lambda k: sail(k, keep_path=True, steps=cfg.conv_steps, step_size=cfg.conv_step_size)
    )(keys)
    sq = robust.moreau_gradient_norms(paths, problem, rho, lam, cfg.radius, tol=1e-7)
    horizons = 2 ** np.arange(3, int(np.log2(cfg.conv_steps)) + 1)
    min_curve, avg_curve = robust.stationarity_curves(np.asarray(sq), horizons)
    slope, intercept = loglog_slope(horizons, min_curve)
    avg_slope, _ = loglog_slope(horizons, avg_curve)
    out = dict(T=horizons, min_grad_moreau_sq=min_curve, avg_grad_moreau_sq=avg_curve)
    out.update(slope=slope, intercept=intercept, avg_slope=avg_slope, rate_slope=-0.5, lam=lam)
    return {**out, "tau_estimate": tau, "rho": rho}


def run(cfg: Config, *, progress=None) -> dict:
    """Comparison across shifts and ρ, then the convergence curve; JSON-ready dict."""
    tick = progress or (lambda n: None)
    with _x64():
        world = make_world(cfg)
        comparison = {}
        for shift in SHIFTS:
            comparison[shift] = {}
            for rho in cfg.rhos:
                comparison[shift][str(rho)] = _compare(world, rho, shift, cfg)
                tick(1)
        convergence = _convergence(world, cfg)
        tick(1)
    return dict(
        config=dataclasses.asdict(cfg),
        comparison=comparison,
        convergence={
            k: np.asarray(v).tolist() if np.ndim(v) else v for k, v in convergence.items()
        },
    )


# ----------------------------------------------------------------------------- output

METHODS = ("robust_sail", "nominal_sail", "offline_dpo")
METRICS = ("true_sail_loss", "accuracy", "max_logit_error", "regret")


def table(results: dict) -> str:
    lines = [
        f"{'shift':12s} {'rho':>5s} {'method':13s} {'L_true':>7s} {'acc':>6s} "
        f"{'maxlogit':>9s} {'regret':>8s}"
    ]
    for shift, by_rho in results["comparison"].items():
        for rho, by_method in by_rho.items():
            for m in METHODS:
                v = by_method[m]
                lines.append(
                    f"{shift:12s} {float(rho):5.2f} {m:13s} {v['true_sail_loss']:7.4f} "
                    f"{v['accuracy']:6.3f} "
                    f"{v['max_logit_error']:9.3f} {v['regret']:8.4f}"
                )
    c = results["convergence"]
    lines.append(
        f"convergence: slope of min_k<=T ||grad M_lam||^2 vs T = {c['slope']:.3f} "
        f"(rate -0.5: O~(eps^-2) with eps = ||grad M||^2); lam = {c['lam']:.3g}"
    )
    return "\n".join(lines)


def plot(results: dict, out_dir) -> list[Path]:
    fig, axes = _report.figure(len(SHIFTS), len(METRICS), (15, 6.5))
    for i, shift in enumerate(SHIFTS):
        by_rho = results["comparison"][shift]
        rhos = [float(r) for r in by_rho]
        for j, metric in enumerate(METRICS):
            ax = axes[i, j]
            for m in METHODS:
                ax.plot(rhos, [by_rho[r][m][metric] for r in by_rho], "o-", label=m)
            ax.set(xlabel="ρ", ylabel=metric, title=f"{shift} shift")
    axes[0, 0].legend()
    f1 = _report.save(fig, out_dir, "robust_vs_nominal.png")

    c = results["convergence"]
    fig, ((ax,),) = _report.figure(1, 1, (5.5, 4))
    t = np.asarray(c["T"], dtype=float)
    ax.loglog(t, c["min_grad_moreau_sq"], "o-", label=f"min_k≤T ‖∇M_λ‖² (slope {c['slope']:.2f})")
    ax.loglog(t, c["avg_grad_moreau_sq"], "s--", label=f"mean_k≤T ‖∇M_λ‖² ({c['avg_slope']:.2f})")
    ref = np.exp(c["intercept"]) * t**-0.5
    ax.loglog(t, ref, "k:", label="T^(-1/2): Õ(ε⁻²), ε = ‖∇M‖²")
    ax.set(xlabel="T", ylabel="‖∇M_λ(θ_k)‖²", title="robust SAIL, projected SGD")
    ax.legend(fontsize=8)
    return [f1, _report.save(fig, out_dir, "convergence.png")]

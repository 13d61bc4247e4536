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
from jaxpref.experiments._io import to_jsonable
from jaxpref.experiments.registry import scale_configs

_x64 = functools.partial(jax.enable_x64, True)  # the protocol runs in float64 (tight prox tols)


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
    return len(robust.SHIFTS) * len(cfg.rhos) + 1


def make_world(cfg: Config) -> robust.VerbosityTestbed:
    """The testbed of ``cfg`` (`robust.verbosity_testbed`); θ_true = θ_ref + θ*/β is optimal."""
    n, m, k, d = cfg.num_contexts, cfg.num_test_contexts, cfg.num_responses, cfg.dim
    key = jax.random.key(cfg.seed)
    return robust.verbosity_testbed(key, n, m, k, d, reward_scale=cfg.reward_scale)


def _compare(world, rho, shift, cfg: Config, tick):
    """Robust SAIL, nominal SAIL (mean over seeds) and offline DPO, by `robust.testbed_metrics`
    (one progress unit)."""
    pref = robust.shifted_preferences(world.phi_train, world.theta_star, rho, shift)
    problem = robust.testbed_problem(world, pref)
    keys = jax.random.split(jax.random.key(cfg.seed + 1), cfg.num_seeds)
    args = (cfg.radius, cfg.step_size, cfg.num_steps, cfg.num_samples)
    fits = {  # (S, d): a θ per seed (offline DPO is deterministic: S = 1)
        name: jax.vmap(lambda k, r=rho_alg: robust.fit_robust_sail(k, problem, r, *args))(keys)
        for name, rho_alg in (("robust_sail", rho), ("nominal_sail", 0.0))
    }
    fits["offline_dpo"] = robust.fit_offline_dpo(problem, cfg.radius, cfg.dpo_steps)[None]
    metrics = jax.vmap(lambda th: robust.testbed_metrics(th, world, problem, rho))
    out = {m: {k: float(jnp.mean(v)) for k, v in metrics(th).items()} for m, th in fits.items()}
    tick(1)
    return out


def _convergence(world, cfg: Config):
    rho = cfg.conv_rho
    pref = robust.shifted_preferences(world.phi_train, world.theta_star, rho, "adversarial")
    problem = robust.testbed_problem(world, pref)
    pts = robust.ball_points(jax.random.key(7), 32, cfg.dim, cfg.radius, problem.phi.dtype)
    keys = jax.random.split(jax.random.key(cfg.seed + 2), cfg.conv_seeds)
    args = (cfg.radius, cfg.conv_step_size, cfg.conv_steps, cfg.num_samples)
    r = robust.subgradient_stationarity(keys, problem, rho, *args, points=pts, tol=1e-7)
    out = dict(T=r.horizons, min_grad_moreau_sq=r.min_curve, avg_grad_moreau_sq=r.mean_curve)
    out.update(slope=r.min_slope, intercept=r.min_intercept, avg_slope=r.mean_slope)
    return {**out, "rate_slope": -0.5, "lam": r.lam, "tau_estimate": r.tau, "rho": rho}


def run(cfg: Config, *, progress=None) -> dict:
    """Comparison across shifts and ρ, then the convergence curve; JSON-ready dict."""
    tick = progress or (lambda n: None)
    with _x64():
        world = make_world(cfg)
        comparison = {
            s: {str(r): _compare(world, r, s, cfg, tick) for r in cfg.rhos} for s in robust.SHIFTS
        }
        convergence = _convergence(world, cfg)
        tick(1)
    return dict(
        config=dataclasses.asdict(cfg), comparison=comparison, convergence=to_jsonable(convergence)
    )


# ----------------------------------------------------------------------------- output

METHODS = ("robust_sail", "nominal_sail", "offline_dpo")
METRICS = ("true_sail_loss", "accuracy", "max_logit_error", "regret")
COLUMNS = [("shift", "12s"), ("rho", "5.2f"), ("method", "13s"), ("L_true", "7.4f")]
COLUMNS += [("acc", "6.3f"), ("maxlogit", "9.3f"), ("regret", "8.4f")]  # the METRICS


def table(results: dict) -> str:
    rows = [
        (shift, float(rho), m, *(by_method[m][k] for k in METRICS))
        for shift, by_rho in results["comparison"].items()
        for rho, by_method in by_rho.items()
        for m in METHODS
    ]
    c = results["convergence"]
    return "\n".join(_report.text_table(COLUMNS, rows)) + (
        f"\nconvergence: slope of min_k<=T ||grad M_lam||^2 vs T = {c['slope']:.3f} "
        f"(rate -0.5: O~(eps^-2) with eps = ||grad M||^2); lam = {c['lam']:.3g}"
    )


def plot(results: dict, out_dir) -> list[Path]:
    fig, axes = _report.figure(len(robust.SHIFTS), len(METRICS), (15, 6.5))
    for i, shift in enumerate(robust.SHIFTS):
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

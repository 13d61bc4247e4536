"""ADPO §6.1: maximum logit error of log-linear DPO vs the feedback budget n.

Protocol (Kveton et al., arXiv 2503.01076, §6.1), for each feature source and seed:

1. N difference vectors φ_i = z_pos − z_neg: a random class c, a random example of c and a
   random example of another class; rescaled so that max_i ‖φ_i‖ = 1 (Assumption 2).
2. Ground truth: ridge logistic regression of all-ones labels on φ gives θ̄ and its covariance
   Σ̄ (inverse regularised Hessian); s_i ~ Ber(μ(φ_iᵀθ̄)); θ₀ ~ N(θ̄, Σ̄); b_i = φ_iᵀθ₀;
   θ* = the DPO MLE on all N pairs.
3. Each method selects n_max pairs in order; for every n on the grid θ̂_n is the DPO MLE on
   the first n, scored by max / mean logit error and error rate against θ* over all N pairs.

Feature sources: ``synthetic`` (a Gaussian mixture), ``digits`` (scikit-learn's bundled 8×8
digits, PCA to d) and ``digits_neural`` (the same digits through the last hidden layer of a fixed
random ``jaxpref.policies.neural.MLPPolicy``: ADPO's last-layer linearisation of a network).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxpref import design, linalg
from jaxpref.losses.mle import dpo_mle_newton, fit_dpo_mle
from jaxpref.metrics import logit_error_bound, logit_errors, loglog_slope

METHODS = ("ADPO", "ADPO+", "APO", "certainty", "uniform")
SOURCES = ("synthetic", "digits", "digits_neural")


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


_CONFIGS = {
    "test": Config(
        sources=("synthetic",), num_pairs=4096, dim=8, log2_n=(4, 9), seeds=4, slope_log2_from=7
    ),
    "quickstart": Config(num_pairs=8192, dim=8, log2_n=(5, 10), seeds=3, slope_log2_from=8),
    "small": Config(
        sources=SOURCES, num_pairs=16384, dim=16, log2_n=(5, 11), seeds=5, slope_log2_from=9
    ),
    "full": Config(
        sources=SOURCES, num_pairs=2**16, dim=32, log2_n=(6, 13), seeds=10, slope_log2_from=10
    ),
}


def config(scale: str) -> Config:
    if scale not in _CONFIGS:
        raise ValueError(f"scale: must be one of {tuple(_CONFIGS)}, got {scale!r}")
    return _CONFIGS[scale]


def num_units(cfg: Config) -> int:
    return len(cfg.sources) * cfg.seeds * len(METHODS)


# ---------------------------------------------------------------- data
def _embedded_points(source: str, dim: int, rng: np.random.Generator):
    """(points (M, dim), class labels (M,)) for a feature source."""
    if source == "synthetic":
        # Ten Gaussian classes in a space with a decaying spectrum (scale 1/k on axis k), so
        # some directions are rare and the choice of pairs matters, as with real embeddings.
        classes, per_class = 10, 300
        scale = 1.0 / np.arange(1, dim + 1)
        means = rng.normal(size=(classes, dim)) * scale
        labels = np.repeat(np.arange(classes), per_class)
        return means[labels] + 0.5 * scale * rng.normal(size=(labels.size, dim)), labels
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    digits = load_digits()
    x = (digits.data - digits.data.mean(0)) / (digits.data.std(0) + 1e-6)
    if source == "digits":
        return PCA(n_components=dim, random_state=0).fit_transform(x), digits.target
    if source == "digits_neural":
        from flax import nnx

        from jaxpref.policies.neural import MLPPolicy, last_layer_features

        model = MLPPolicy(x.shape[1], (64, dim), rngs=nnx.Rngs(0))
        return np.asarray(last_layer_features(model, jnp.asarray(x, jnp.float32))), digits.target
    raise ValueError(f"sources: unknown feature source {source!r}; known: {SOURCES}")


def difference_vectors(points, labels, num_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """φ_i = z_pos − z_neg for a random class, scaled so that max ‖φ_i‖ = 1."""
    classes = np.unique(labels)
    c = rng.choice(classes, size=num_pairs)
    by_class = {k: np.flatnonzero(labels == k) for k in classes}
    others = {k: np.flatnonzero(labels != k) for k in classes}
    pos = np.array([rng.choice(by_class[k]) for k in c])
    neg = np.array([rng.choice(others[k]) for k in c])
    phi = points[pos] - points[neg]
    return phi / np.linalg.norm(phi, axis=1).max()


def ground_truth(phi: np.ndarray, cfg: Config, rng: np.random.Generator) -> dict:
    """Labels, reference log-ratios and θ* by the §6.1 protocol (float64)."""
    N, d = phi.shape
    bar = fit_dpo_mle(phi, np.ones(N), beta=1.0, gamma=cfg.gamma)
    cov = linalg.psd_inverse(bar.hessian + cfg.gamma * jnp.eye(d))
    theta_0 = rng.multivariate_normal(np.asarray(bar.theta), np.asarray(cov))
    labels = (rng.random(N) < jax.nn.sigmoid(phi @ np.asarray(bar.theta))).astype(np.float64)
    b = phi @ theta_0
    star = fit_dpo_mle(phi, labels, beta=cfg.beta, gamma=cfg.gamma, ref_logratio=b)
    return dict(labels=labels, ref_logratio=b, theta_star=np.asarray(star.theta))


# ---------------------------------------------------------------- methods
def select(method: str, key, phi, labels, b, n: int, cfg: Config) -> np.ndarray:
    """Indices chosen by ``method`` with budget n (in selection order)."""
    kw = dict(beta=cfg.beta, gamma=cfg.gamma)
    if method == "ADPO":
        res = design.adpo(
            key, phi, labels, b, n, alpha=cfg.alpha, num_candidates=cfg.num_candidates, **kw
        )
    elif method == "ADPO+":
        res = design.adpo_plus(phi, labels, b, n, alpha=cfg.alpha, **kw)
    elif method == "APO":
        res = design.apo(phi, n, gamma=cfg.gamma)
    elif method == "certainty":
        res = design.certainty(phi, labels, b, n, **kw)
    elif method == "uniform":
        res = design.uniform(key, phi.shape[0], n)
    else:
        raise ValueError(f"method: unknown {method!r}; known: {METHODS}")
    return np.asarray(res.indices)


@jax.jit
def _errors_on_prefixes(order, grid, phi, labels, b, theta_star, beta, gamma):
    """Fit θ̂_n on each prefix order[:n], n in grid, and score it against θ*."""
    rank = (
        jnp.zeros(phi.shape[0], order.dtype)
        .at[order]
        .set(jnp.arange(1, order.size + 1, dtype=order.dtype))
    )

    def one(n):
        w = ((rank > 0) & (rank <= n)).astype(phi.dtype)
        theta = dpo_mle_newton(phi, labels, b, w, beta, gamma, 50).theta
        return logit_errors(theta, theta_star, phi, b, beta=beta)

    return jax.vmap(one)(grid)


# ---------------------------------------------------------------- run
def run(cfg: Config, *, progress=None) -> dict:
    """Run the protocol in float64 (exact greedy and Newton fits to machine precision)."""
    with jax.enable_x64(True):
        return _run(cfg, progress or (lambda _: None))


def _run(cfg: Config, progress) -> dict:
    grid = cfg.grid
    if grid[-1] > cfg.num_pairs:
        raise ValueError(f"log2_n: largest budget {grid[-1]} exceeds num_pairs {cfg.num_pairs}")
    out = {"config": dataclasses.asdict(cfg), "n": grid.tolist(), "sources": {}}
    for source in cfg.sources:
        rng = np.random.default_rng(0)
        points, classes = _embedded_points(source, cfg.dim, rng)
        phi = difference_vectors(np.asarray(points, np.float64), classes, cfg.num_pairs, rng)
        curves = {m: {"max": [], "mean": [], "error_rate": []} for m in METHODS}
        kappas, diag = [], []
        for seed in range(cfg.seeds):
            truth = ground_truth(phi, cfg, np.random.default_rng(1000 + seed))
            diag.append([np.linalg.norm(truth["theta_star"]), np.abs(truth["ref_logratio"]).max()])
            key = jax.random.key(seed)
            for method in METHODS:
                order = select(
                    method, key, phi, truth["labels"], truth["ref_logratio"], int(grid[-1]), cfg
                )
                err = _errors_on_prefixes(
                    jnp.asarray(order),
                    jnp.asarray(grid),
                    phi,
                    truth["labels"],
                    truth["ref_logratio"],
                    truth["theta_star"],
                    cfg.beta,
                    cfg.gamma,
                )
                for field in ("max", "mean", "error_rate"):
                    curves[method][field].append(np.asarray(getattr(err, field)))
                progress(1)
            kappas.append(_adpo_plus_kappa(phi, truth, cfg, int(grid[-1])))
        out["sources"][source] = _summarise(curves, grid, cfg, max(kappas), np.array(diag))
    return out


def _adpo_plus_kappa(phi, truth, cfg, n):
    """Empirical κ of Assumption 4 along ADPO+'s greedy run (κ = 1 would be repeated queries)."""
    res = design.adpo_plus(
        phi,
        truth["labels"],
        truth["ref_logratio"],
        1,
        beta=cfg.beta,
        gamma=cfg.gamma,
        alpha=cfg.alpha,
    )
    d = phi.shape[1]
    precision = (
        jnp.eye(d) * cfg.gamma
        + fit_dpo_mle(
            phi, truth["labels"], beta=cfg.beta, gamma=cfg.gamma, ref_logratio=truth["ref_logratio"]
        ).hessian
    )
    V = design.design_vectors(
        res.theta_hat,
        phi,
        truth["ref_logratio"],
        beta=cfg.beta,
        alpha=cfg.alpha,
        precision=precision,
    )
    return float(design.greedy_doptimal(V, n, gamma=cfg.gamma).kappa)


def _summarise(curves, grid, cfg, kappa, diag) -> dict:
    methods = {}
    tail = grid >= 2**cfg.slope_log2_from
    for m, c in curves.items():
        arr = {k: np.stack(v) for k, v in c.items()}  # (seeds, G)
        mean_max = arr["max"].mean(0)
        methods[m] = {
            "max_logit_error": {"mean": mean_max, "std": arr["max"].std(0)},
            "mean_logit_error": {"mean": arr["mean"].mean(0), "std": arr["mean"].std(0)},
            "error_rate": {"mean": arr["error_rate"].mean(0), "std": arr["error_rate"].std(0)},
            "slope_max_logit_error": loglog_slope(grid[tail], mean_max[tail])[0],
        }
    bound = logit_error_bound(
        grid, cfg.dim, beta=cfg.beta, gamma=cfg.gamma, delta=cfg.delta, kappa=max(kappa, 1.0)
    )
    return {
        "methods": methods,
        "bound": {"values": bound, "kappa": kappa, "delta": cfg.delta},
        "assumption_2": {
            "max_norm_theta_star": float(diag[:, 0].max()),
            "max_abs_ref_logratio": float(diag[:, 1].max()),
        },
    }


# ---------------------------------------------------------------- report
def table(results: dict) -> str:
    n = results["n"]
    lines = []
    for source, res in results["sources"].items():
        cfg = results["config"]
        lines.append(
            f"\n{source}: metrics at n = {n[-1]} (mean ± std over {cfg['seeds']} seeds);"
            f" slope of max logit error vs n on n ≥ {2 ** cfg['slope_log2_from']}"
        )
        lines.append(
            f"{'method':10s} {'max logit err':>16s} {'mean logit err':>16s} "
            f"{'error rate':>14s} {'slope':>7s}"
        )
        for m, r in res["methods"].items():
            mx, mn, er = r["max_logit_error"], r["mean_logit_error"], r["error_rate"]
            lines.append(
                f"{m:10s} {mx['mean'][-1]:9.3f} ± {mx['std'][-1]:5.3f} "
                f"{mn['mean'][-1]:9.4f} ± {mn['std'][-1]:5.4f} "
                f"{er['mean'][-1]:7.4f} ± {er['std'][-1]:5.4f} "
                f"{r['slope_max_logit_error']:7.3f}"
            )
        b = res["bound"]
        lines.append(
            f"{'bound':10s} {b['values'][-1]:9.3f}  (Thms 3×4, δ={b['delta']}, "
            f"empirical κ={b['kappa']:.2f})"
        )
    return "\n".join(lines)


def plot(results: dict, out_dir) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = np.asarray(results["n"])
    sources = results["sources"]
    fields = [
        ("max_logit_error", "max logit error"),
        ("mean_logit_error", "mean logit error"),
        ("error_rate", "error rate"),
    ]
    fig, axes = plt.subplots(
        len(fields), len(sources), figsize=(4.5 * len(sources), 10), squeeze=False
    )
    for j, (source, res) in enumerate(sources.items()):
        for i, (field, label) in enumerate(fields):
            ax = axes[i, j]
            for m, r in res["methods"].items():
                mu, sd = np.asarray(r[field]["mean"], float), np.asarray(r[field]["std"], float)
                ax.plot(n, mu, marker="o", ms=3, label=m)
                ax.fill_between(n, np.maximum(mu - sd, 1e-12), mu + sd, alpha=0.15)
            if field == "max_logit_error":
                ax.plot(n, res["bound"]["values"], "k--", label="bound (Thm 3×4)")
                ref = res["methods"]["ADPO+"][field]["mean"][0] * (n / n[0]) ** -0.5
                ax.plot(n, ref, ":", color="gray", label="∝ n^(-1/2)")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("budget n")
            ax.set_ylabel(label)
            ax.set_title(f"{source}: {label}")
            ax.grid(alpha=0.3, which="both")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    path = Path(out_dir) / "logit_error.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]

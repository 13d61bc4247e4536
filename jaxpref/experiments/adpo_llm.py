"""ADPO §6.2 on a language model's features: the shipped HH-RLHF pairs through a small Llama.

Protocol (Kveton et al., arXiv 2503.01076, §6.2), on the shipped Anthropic HH-RLHF harmless-base
split (2,312 rows; the 9 malformed ones are reported and dropped, as are pairs that truncation
leaves empty or identical):

1. Features, once per pool (:func:`jaxpref.train.feature_pool.llm_pair_pool`): every (prompt,
   chosen) and (prompt, rejected) row goes through the model in one jitted, length-bucketed
   pass (:func:`jaxpref.llm.bucketed_features_and_logps`), which returns the final-normed hidden
   state at the last real token and the summed response log-probs. φ_i = φ(x_i, y_w) −
   φ(x_i, y_l) (optionally through a random projection to ``proj_dim``; then rescaled so
   max ‖φ_i‖ = 1, Assumption 2), b_i = log π₀(y_w|x_i) − log π₀(y_l|x_i), and the label of
   every pair is s_i = 1 (the winner comes first).
2. θ* = the DPO MLE on all N labels; each method (ADPO, ADPO+, APO, certainty, uniform) selects
   n_max pairs in order on the cached matrix; for each n of the grid θ̂_n is the DPO MLE on the
   first n, scored over all N pairs by accuracy, margin and NLL and by the max logit error
   against θ* (:func:`jaxpref.design.compare_methods`: ``select``, then ``budget_curve``).

The model is a randomly initialised small Llama with the shipped tokenizer (``sft_steps > 0``
first fine-tunes it on the pool's chosen responses, ``experiments._stages.sft_on_rows``), or any
Hugging Face directory given as ``model_name_or_path``. Seeds change the random methods (uniform
and ADPO's candidate subsets); ADPO+, APO and certainty are deterministic on a fixed pool.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxpref import design, llm
from jaxpref.data import (
    TOKENIZER_DIR,
    encode_preference_rows,
    load_tokenizer,
    pad_id,
    shipped_hh_rows,
)
from jaxpref.data import feature_pairs as fp
from jaxpref.experiments._report import budget_curves, figure, save, seed_stats, stopwatch
from jaxpref.experiments.registry import scale_configs
from jaxpref.losses.mle import fit_dpo_mle
from jaxpref.metrics.preference_fit import pair_fit_metrics

METHODS = design.METHODS
FIELDS = ("accuracy", "margin", "nll", "max_logit_error")


@dataclasses.dataclass(frozen=True)
class Config:
    model_name_or_path: str | None = None  # None: a random small Llama of the sizes below
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    sft_steps: int = 0  # > 0: SFT the random model on the pool's chosen responses first
    sft_lr: float = 1e-3
    num_pairs: int | None = None  # a random subset of the valid pairs (None: all of them)
    max_length: int = 256
    max_prompt_length: int = 192
    pooling: str = "last"
    proj_dim: int | None = None  # a random Gaussian projection of φ to this dimension
    offset_scale: str = "max"  # "max": b_i / max_j |b_j| (Assumption 2); "none": raw b_i
    batch_size: int = 32  # rows per forward batch
    bucket: int = 32  # padded lengths are multiples of this
    log2_n: tuple[int, int] = (4, 10)  # budgets n = 2^k
    seeds: int = 3
    beta: float = 1.0
    gamma: float = 1.0  # ridge of every fit, and H_0 = γI
    alpha: float = 3.0  # ADPO / ADPO+ UCB stabiliser (App. B; 3 in §6)
    num_candidates: int | None = 256  # ADPO's random candidate subset (paper: 256)
    seed: int = 0

    @property
    def grid(self) -> np.ndarray:
        return 2 ** np.arange(self.log2_n[0], self.log2_n[1] + 1)


config = scale_configs(
    Config(),
    test=dict(hidden_size=32, num_layers=2, num_heads=2, num_pairs=40, max_length=64)
    | dict(max_prompt_length=48, batch_size=16, bucket=16, log2_n=(2, 5), seeds=2)
    | dict(num_candidates=8),
    quickstart=dict(hidden_size=64, num_layers=2, num_pairs=512, log2_n=(3, 8), seeds=2),
    small=dict(log2_n=(3, 11), seeds=3),
    full=dict(hidden_size=256, num_layers=6, num_heads=8, sft_steps=300, max_length=384)
    | dict(seeds=5),
)


def num_units(cfg: Config) -> int:
    return 2 + cfg.seeds * len(METHODS)  # pool + features, then every (seed, method)


# ---------------------------------------------------------------- pool and model
def _check(cfg: Config, num_pairs: int, width: int, projection):
    """Everything that can be refused before the model is loaded; returns φ's projection."""
    if cfg.pooling not in llm.POOLINGS:
        raise ValueError(f"pooling: unknown {cfg.pooling!r}; choices: {llm.POOLINGS}")
    if cfg.offset_scale not in fp.OFFSET_SCALES:
        raise ValueError(f"offset_scale: unknown {cfg.offset_scale!r}; choices: {fp.OFFSET_SCALES}")
    if num_pairs < 2:
        raise ValueError(f"rows: the pool has {num_pairs} valid pair(s); need at least 2")
    if cfg.grid[-1] > num_pairs:
        raise ValueError(
            f"log2_n: the largest budget n = {cfg.grid[-1]} exceeds the pool's {num_pairs} pairs"
        )
    return fp.feature_projection(width, projection, cfg.proj_dim, cfg.seed)


def _width(cfg: Config, model) -> int:
    """The feature width E of ``model``, of ``model_name_or_path``, or of the random model."""
    if model is not None:
        return model.config.embed_width
    if cfg.model_name_or_path is not None:
        return llm.load_config(cfg.model_name_or_path).embed_width
    return cfg.hidden_size


def _load_model(cfg: Config, root: Path, tok, rows):
    """(model, mesh): ``model_name_or_path``, else ``root/base`` (then SFT when asked)."""
    from jaxpref.experiments._stages import base_model, sft_on_rows
    from jaxpref.train.mesh import data_parallel_mesh

    mesh, _ = data_parallel_mesh(cfg.batch_size)
    path = cfg.model_name_or_path
    if path is None:
        path = base_model(root, tok, cfg, max_positions=512, seed=cfg.seed)
        path = sft_on_rows(root, rows, cfg, source=path) if cfg.sft_steps > 0 else path
    return llm.from_pretrained(path, mesh=mesh), mesh


# ---------------------------------------------------------------- selection and scores
def analyse(phi, b, cfg: Config, progress=None) -> dict:
    """θ* on all labels, then every method's picks and curves over the seeds, in float64."""
    tick, times, out = progress or (lambda _: None), {}, {"picks": {}, "methods": {}}
    keys = [jax.random.key(seed) for seed in range(cfg.seeds)]
    kw = dict(beta=cfg.beta, gamma=cfg.gamma)
    rule = dict(alpha=cfg.alpha, num_candidates=cfg.num_candidates)
    with jax.enable_x64(True):
        phi, b = jnp.asarray(phi, jnp.float64), jnp.asarray(b, jnp.float64)
        ones = jnp.ones(phi.shape[0])
        with stopwatch(times, "fit_all_labels_s"):
            theta_star = fit_dpo_mle(phi, ones, ref_logratio=b, **kw).theta
        full = pair_fit_metrics(theta_star, phi, b, beta=cfg.beta)
        for m in METHODS:
            with stopwatch(times, f"select_and_fits_{m}_s"):
                r = design.compare_methods(
                    keys, phi, ones, b, cfg.grid, theta_star, methods=(m,), **kw, **rule
                )[m]
            values = (r.curve.fit.accuracy, r.curve.fit.margin, r.curve.fit.nll, r.curve.errors.max)
            out["picks"][m] = np.asarray(r.indices).tolist()
            out["methods"][m] = {f: seed_stats(v, keep_runs=True) for f, v in zip(FIELDS, values)}
            tick(cfg.seeds)
    out["all_labels"] = {f: float(getattr(full, f)) for f in ("accuracy", "margin", "nll")}
    return out | {"times": times}


# ---------------------------------------------------------------- run
def run(
    cfg: Config, *, progress=None, work_dir=None, rows=None, projection=None, model=None
) -> dict:
    """The protocol end to end. ``rows``: dataset rows (default the shipped HH split);
    ``projection``: an (E, d) matrix applied to φ (default: a random one when ``proj_dim`` is
    set); ``model``: a :class:`~jaxpref.llm.Decoder` to use instead of loading one."""
    from jaxpref.train.feature_pool import llm_pair_pool

    tick, times = progress or (lambda _: None), {}
    root = Path(work_dir) if work_dir else Path(tempfile.mkdtemp("adpo_llm"))
    with stopwatch(times, "pool_s"):
        rows = shipped_hh_rows() if rows is None else list(rows)
        tok = load_tokenizer(cfg.model_name_or_path or TOKENIZER_DIR)
        lengths = dict(max_length=cfg.max_length, max_prompt_length=cfg.max_prompt_length)
        kw = dict(num_pairs=cfg.num_pairs, seed=cfg.seed)
        encoded, report = encode_preference_rows(tok, rows, **lengths, **kw)
        width = _width(cfg, model)
        projection = _check(cfg, len(encoded), width, projection)
    tick(1)
    with stopwatch(times, "model_s"):
        model, mesh = (model, None) if model is not None else _load_model(cfg, root, tok, rows)
    with stopwatch(times, "features_s"):
        kw = dict(pooling=cfg.pooling, batch_size=cfg.batch_size, bucket=cfg.bucket, mesh=mesh)
        kw |= dict(projection=projection, offset_scale=cfg.offset_scale)
        pool = llm_pair_pool(model, encoded, pad_id=pad_id(tok), **kw)
    np.savez(root / "features.npz", **pool._asdict())
    tick(1)
    result = analyse(pool.phi, pool.ref_logratio, cfg, tick)
    raw = np.abs(pool.logps_w - pool.logps_l)
    report |= dict(N=int(pool.phi.shape[0]), d=int(pool.phi.shape[1]), feature_width=int(width))
    report["abs_ref_logratio_raw"] = {"max": float(raw.max()), "mean": float(raw.mean())}
    return {
        "config": dataclasses.asdict(cfg),
        "n": cfg.grid.tolist(),
        "pool": report,
        "stage_times_s": times | result.pop("times"),
        "features_file": str(root / "features.npz"),
        **result,
    }


# ---------------------------------------------------------------- report
def table(results: dict) -> str:
    n, pool = results["n"], results["pool"]
    lines = [
        f"pool: {pool['N']} pairs (of {pool['rows']} rows), d = {pool['d']}; metrics over all "
        f"N at n = {n[-1]} (mean ± std over {results['config']['seeds']} seeds)",
        f"{'method':10s} {'accuracy':>16s} {'margin':>18s} {'NLL':>16s} {'max logit err':>16s}",
    ]
    for m, r in results["methods"].items():
        cells = [f"{r[f]['mean'][-1]:8.4f} ± {r[f]['std'][-1]:6.4f}" for f in FIELDS]
        lines.append(f"{m:10s} " + " ".join(cells))
    a = results["all_labels"]
    lines.append(
        f"{'all labels':10s} {a['accuracy']:8.4f}          {a['margin']:8.4f}            "
        f"{a['nll']:8.4f}"
    )
    return "\n".join(lines)


def plot(results: dict, out_dir) -> list[Path]:
    """Fig. 2 of the paper: each metric against n, one line per method, ± one standard error."""
    n, pool = np.asarray(results["n"]), results["pool"]
    fig, axes = figure(1, len(FIELDS), (4.2 * len(FIELDS), 3.6))
    for ax, f in zip(axes[0], FIELDS):
        budget_curves(ax, n, results["methods"], f, band=False, seeds=results["config"]["seeds"])
        if f != "max_logit_error":
            ax.axhline(results["all_labels"][f], color="k", ls="--", lw=0.8, label="all labels")
        else:
            ax.set_yscale("log")
        ax.set_title({"nll": "negative log-likelihood"}.get(f, f.replace("_", " ")))
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"HH-RLHF harmless-base, N = {pool['N']}, d = {pool['d']}", fontsize=10)
    return [save(fig, out_dir, "adpo_llm.png")]

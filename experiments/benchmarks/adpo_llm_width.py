"""ADPO §6.2's selection stage at another feature width d: a finished ``adpo_llm`` run's cached
features through a random projection (the paper's d = 4096 from a narrower model).

    python experiments/benchmarks/adpo_llm_width.py RUN_DIR --dim 4096
    python experiments/benchmarks/adpo_llm_width.py RUN_DIR    # the run's own φ (d = E)
    python experiments/benchmarks/adpo_llm_width.py RUN_DIR --dim 4096 --methods APO ADPO+

``RUN_DIR`` holds ``results.json`` and ``features.npz`` of ``jaxpref run adpo_llm --out RUN_DIR``
(or ``experiments/adpo_llm/main.py``); its config is reused. φ = the cached winner − loser
features through ``feature_pairs.feature_projection(E, None, dim, seed)`` (a Gaussian P of
rank E), or without ``--dim`` the run's own φ; b = the cached offsets; float64 as in the
experiment. Timed: the projection, each method's n_max picks (``design.select``, seed 0) and one
DPO MLE fit on the last method's picks, each a first call, so compile time is included, as a
run pays it. Prints one JSON object; the numbers seen are in ``experiments/adpo_llm/README.md``
(stage timings).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxpref import design
from jaxpref.data import feature_pairs as fp
from jaxpref.experiments._report import stopwatch
from jaxpref.experiments.adpo_llm import METHODS, Config
from jaxpref.losses.mle import fit_dpo_mle


def time_selection(phi, b, cfg: Config, *, methods=METHODS, log=None) -> dict:
    """Seconds of each method's n_max picks and of one MLE fit on them, at phi's width (each
    first call, so compile time included, as a run pays it)."""
    if not methods:
        raise ValueError(f"methods: need at least one of {METHODS}")
    out = {"d": int(phi.shape[1]), "N": int(phi.shape[0]), "n": int(cfg.grid[-1])}
    kw = dict(beta=cfg.beta, gamma=cfg.gamma)
    rule = dict(alpha=cfg.alpha, num_candidates=cfg.num_candidates)
    with jax.enable_x64(True):
        phi, b = jnp.asarray(phi, jnp.float64), jnp.asarray(b, jnp.float64)
        ones = jnp.ones(phi.shape[0])
        for method in methods:
            with stopwatch(out, f"select_{method}_s"):
                res = design.select(method, jax.random.key(0), phi, ones, b, out["n"], **kw, **rule)
                order = np.asarray(res.indices)
            if log is not None:
                log(f"d={out['d']}: {method} picks {out['n']} in {out[f'select_{method}_s']:.1f} s")
        w = np.zeros(phi.shape[0])
        w[order] = 1.0
        with stopwatch(out, "one_fit_s"):
            fit = fit_dpo_mle(phi, ones, ref_logratio=b, weights=jnp.asarray(w), **kw)
            jax.block_until_ready(fit.theta)
    return out


def time_at_width(run_dir, dim: int | None, *, methods=METHODS, log=print) -> dict:
    """:func:`time_selection` on a finished run's cached features through a random projection
    to ``dim`` (None: the run's own φ and b), with that run's config."""
    run_dir, out = Path(run_dir), {}
    saved = json.loads((run_dir / "results.json").read_text())["config"]
    names = {f.name for f in dataclasses.fields(Config)}
    cfg = Config(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in names}
    )
    cached = np.load(run_dir / "features.npz")
    if dim is None:
        return time_selection(cached["phi"], cached["ref_logratio"], cfg, methods=methods, log=log)
    with stopwatch(out, "project_s"):
        fw, fl = cached["features_w"], cached["features_l"]
        phi = fp.pair_design_matrix(fw, fl, fp.feature_projection(fw.shape[1], None, dim, cfg.seed))
    b = fp.scaled_offsets(cached["logps_w"], cached["logps_l"], cfg.offset_scale)
    return out | time_selection(phi, b, cfg, methods=methods, log=log)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="a finished adpo_llm run (results.json, features.npz)")
    p.add_argument("--dim", type=int, help="the projected width d (default: the run's φ)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    args = p.parse_args()
    print(json.dumps(time_at_width(args.run_dir, args.dim, methods=tuple(args.methods)), indent=1))


if __name__ == "__main__":
    main()

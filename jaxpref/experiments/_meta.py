"""What a ``results.json`` says about itself: the jaxpref version, the git commit when the code
runs from a checkout, a UTC timestamp, the seeds, and what each reported mean and spread are
taken over."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import pathlib
import subprocess

# What the mean / std (or se) of each experiment's metrics are taken over (read from its code).
STATISTICS = {
    "logit_error": "each metric's mean and std (ddof=0) are over the `seeds` repetitions (each "
    "a fresh ground truth θ* and selection key), per feature source, method and budget n",
    "pbpo": "each regret curve's mean and se (std with ddof=1 over √seeds) are over the `seeds` "
    "environments of a batch (each its own θ* and features)",
    "robust_sail": "SAIL metrics are means over the `num_seeds` training keys (no std); offline "
    "DPO is one deterministic fit; the convergence curve is over `conv_seeds` keys",
    "pm_rlhf": "one run per method from `seed`; the numbers are exact expectations over the "
    "enumerated toy language, not averages over samples",
    "pm_rlhf_llm": "one RL run per (method, α, β, seed) in `seeds`; plotted values are means "
    "over those seeds, each column measured on the held-out prompts",
    "hh_pipeline": "one pipeline run from `seed`; win_rate_se is the standard error (ddof=1) "
    "over the evaluation prompts",
}


def run_metadata(name: str, scale: str, cfg) -> dict:
    """The ``meta`` block of ``results.json`` for ``name`` at ``scale`` with config ``cfg``."""
    import jaxpref

    fields = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else {}
    return {
        "experiment": name,
        "scale": scale,
        "jaxpref_version": jaxpref.__version__,
        "git_commit": git_commit(),
        "utc_time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "seeds": {k: v for k, v in fields.items() if "seed" in k},
        "statistics": STATISTICS.get(name, "see the experiment's module docstring"),
    }


def git_commit() -> str | None:
    """The commit of the checkout jaxpref is imported from (``+dirty`` with local changes), or
    None when it is not a git checkout (an installed wheel) or git is missing."""
    root = pathlib.Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")

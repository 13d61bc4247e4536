"""Robust vs nominal SAIL vs offline DPO under a misspecified oracle (arXiv 2602.20457).

Usage: python experiments/robust_sail/main.py [--scale small] [--out DIR]
(the same as `jaxpref run robust_sail --scale small --out DIR`).
"""

import argparse

from jaxpref.cli import run_experiment
from jaxpref.experiments import SCALES

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", choices=SCALES, default="small")
    parser.add_argument("--out")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    run_experiment("robust_sail", args.scale, args.out, overwrite=args.overwrite)

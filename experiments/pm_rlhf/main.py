"""Reproduce the PM RLHF figures and the miniature Table 2 (arXiv 2405.16455).

Usage: python experiments/pm_rlhf/main.py [--scale small] [--out DIR]
(the same as ``jaxpref run pm_rlhf --scale small --out DIR``).
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
    run_experiment("pm_rlhf", args.scale, args.out, overwrite=args.overwrite)

"""ADPO §6.1: max logit error vs budget. Usage: python experiments/logit_error/main.py [scale] [out]

Same as `jaxpref run logit_error --scale SCALE --out OUT`; the protocol lives in
`jaxpref/experiments/logit_error.py`.
"""

import sys

from jaxpref.cli import run_experiment

if __name__ == "__main__":
    scale = sys.argv[1] if len(sys.argv) > 1 else "small"
    run_experiment("logit_error", scale, sys.argv[2] if len(sys.argv) > 2 else None)

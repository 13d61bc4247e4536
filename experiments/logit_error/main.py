"""ADPO §6.1: max logit error vs budget n (arXiv 2503.01076), with its baselines.

Usage: python experiments/logit_error/main.py [--scale {test,quickstart,small,full}] [--out DIR]
[--overwrite] -- the same as ``jaxpref run logit_error ...``; the protocol lives in
``jaxpref/experiments/logit_error.py`` and this folder's README has the numbers we saw.
"""

import sys

from jaxpref.cli import experiment_main

if __name__ == "__main__":
    sys.exit(experiment_main("logit_error"))

"""Robust vs nominal SAIL vs offline DPO under a misspecified oracle (arXiv 2602.20457).

Usage: python experiments/robust_sail/main.py [--scale {test,quickstart,small,full}] [--out DIR]
[--overwrite] -- the same as ``jaxpref run robust_sail ...``; the protocol lives in
``jaxpref/experiments/robust_sail.py`` and this folder's README has the numbers we saw.
"""

import sys

from jaxpref.cli import experiment_main

if __name__ == "__main__":
    sys.exit(experiment_main("robust_sail"))

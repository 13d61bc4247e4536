"""Robust vs nominal online DPO on a small Llama with a noisy reward-model oracle.

Usage: python experiments/robust_sail_llm/main.py [--scale {test,quickstart,small,full}] [--out DIR]
[--overwrite] -- the same as ``jaxpref run robust_sail_llm ...``; the protocol lives in
``jaxpref/experiments/robust_sail_llm.py`` and this folder's README has the numbers we saw.
"""

import sys

from jaxpref.cli import experiment_main

if __name__ == "__main__":
    sys.exit(experiment_main("robust_sail_llm"))

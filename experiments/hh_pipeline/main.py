"""SFT -> reward model -> DPO on the shipped HH-RLHF split with a small Llama.

Usage: python experiments/hh_pipeline/main.py [--scale {test,quickstart,small,full}] [--out DIR]
[--overwrite] -- the same as ``jaxpref run hh_pipeline ...``; the protocol lives in
``jaxpref/experiments/hh_pipeline.py`` and this folder's README has the numbers we saw.
"""

import sys

from jaxpref.cli import experiment_main

if __name__ == "__main__":
    sys.exit(experiment_main("hh_pipeline"))

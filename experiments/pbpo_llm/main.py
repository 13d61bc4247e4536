"""PbPO vs uniform exploration, greedy and online DPO on a small Llama.

Usage: python experiments/pbpo_llm/main.py [--scale {test,quickstart,small,full}] [--out DIR]
[--overwrite] -- the same as ``jaxpref run pbpo_llm ...``; the protocol lives in
``jaxpref/experiments/pbpo_llm.py`` and this folder's README has the numbers we saw.
"""

import sys

from jaxpref.cli import experiment_main

if __name__ == "__main__":
    sys.exit(experiment_main("pbpo_llm"))

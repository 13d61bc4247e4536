"""PM RLHF's Table 2 on language models: SFT -> reward model -> PPO with KL, PM and conditional PM.

Usage: python experiments/pm_rlhf_llm/main.py [--scale {test,quickstart,small,full}] [--out DIR]
[--overwrite] -- the same as ``jaxpref run pm_rlhf_llm ...``; the protocol lives in
``jaxpref/experiments/pm_rlhf_llm.py`` and this folder's README has the numbers we saw.
"""

import sys

from jaxpref.cli import experiment_main

if __name__ == "__main__":
    sys.exit(experiment_main("pm_rlhf_llm"))

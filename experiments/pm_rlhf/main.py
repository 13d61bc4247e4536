"""The PM RLHF figures and the miniature Table 2 (arXiv 2405.16455).

Usage: python experiments/pm_rlhf/main.py [--scale {test,quickstart,small,full}] [--out DIR]
[--overwrite] -- the same as ``jaxpref run pm_rlhf ...``; the protocol lives in
``jaxpref/experiments/pm_rlhf.py`` and this folder's README has the numbers we saw.
"""

import sys

from jaxpref.cli import experiment_main

if __name__ == "__main__":
    sys.exit(experiment_main("pm_rlhf"))

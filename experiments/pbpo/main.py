"""PbPO regret validation on dueling bandits and token MDPs (arXiv 2511.12867).

Usage: python experiments/pbpo/main.py [--scale {test,quickstart,small,full}] [--out DIR]
[--overwrite] -- the same as ``jaxpref run pbpo ...``; the protocol lives in
``jaxpref/experiments/pbpo.py`` and this folder's README has the numbers we saw.
"""

import sys

from jaxpref.cli import experiment_main

if __name__ == "__main__":
    sys.exit(experiment_main("pbpo"))

"""PbPO regret validation: `python experiments/pbpo/main.py --scale small [--out DIR]`.

Same as `jaxpref run pbpo --scale small`; see README.md in this folder.
"""

import argparse

from jaxpref.cli import run_experiment

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default="small", choices=["test", "quickstart", "small", "full"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    run_experiment("pbpo", args.scale, args.out)

"""ActiveDPO vs ADPO+, APO, APLP and uniform: oracle reward against labelled pairs.

Usage: python experiments/activedpo/main.py [--scale {test,quickstart,small,full}] [--out DIR]
[--overwrite] -- the same as ``jaxpref run activedpo ...``; the protocol lives in
``jaxpref/experiments/activedpo.py`` and this folder's README has the numbers we saw.
"""

import sys

from jaxpref.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "activedpo", *sys.argv[1:]]))

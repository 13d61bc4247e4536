"""ADPO §6.2 on a language model's features of the shipped HH-RLHF pairs (arXiv 2503.01076).

Usage: python experiments/adpo_llm/main.py [--scale {test,quickstart,small,full}] [--out DIR]
[--overwrite] [--model_name_or_path HF_DIR] [--proj_dim D] -- ``jaxpref run adpo_llm ...`` with
a model directory (e.g. the HH pipeline's ``sft``) and a random projection of φ to D dimensions;
the protocol lives in ``jaxpref/experiments/adpo_llm.py`` and this folder's README has the
numbers we saw.
"""

import argparse
import sys

from jaxpref.cli import SCALES, run_experiment

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", choices=SCALES, default="small")
    p.add_argument("--out")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--model_name_or_path")
    p.add_argument("--proj_dim", type=int)
    args = p.parse_args()
    overrides = {
        k: v for k in ("model_name_or_path", "proj_dim") if (v := getattr(args, k)) is not None
    }
    run_experiment("adpo_llm", args.scale, args.out, overwrite=args.overwrite, overrides=overrides)
    sys.exit(0)

"""The self-judge's validity and speed, every judge mode side by side in one run, on two tiered reply sets.

Prints, per set and mode: Spearman of the human-like reward vs the intended tier (all replies, and expressive vs
flat only), the mean reward per tier, and seconds per judged reply at the given batch size.
- rubric examples (hmxnb/data/rubric_examples.jsonl): written together with the judges; a judge can fit them.
- judge validation (hmxnb/data/judge_validation.jsonl): written apart, before any judge was compared on it; the
  number to trust.

    python benchmarks/bench_judge.py                          # embedded SmolLM2, batch 8, all modes
    python benchmarks/bench_judge.py --modes contrast,probability --batch-size 16
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from hmxnb.data import load_judge_validation, load_rubric_examples
from hmxnb.models import load_model
from hmxnb.params import SCHEMA, load_params
from hmxnb.judge import JudgeConfig
from hmxnb.judge import judge_validity


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--modes", default=",".join(SCHEMA["judge_mode"].choices))
    args = ap.parse_args()
    p = load_params(args.profile)
    loaded = load_model(p)
    config = replace(JudgeConfig.from_params(p), batch_size=args.batch_size)
    print(f"model {p['model_name_or_path']} ({loaded.backend}), batch {args.batch_size}")
    for name, rows in (("rubric examples", load_rubric_examples()), ("judge validation", load_judge_validation())):
        table, _ = judge_validity(loaded, config, rows, args.modes.split(","))
        print(f"\n{name} ({len(rows)} replies)")
        print(table.drop(columns="n_replies").round(3).to_string())


if __name__ == "__main__":
    main()

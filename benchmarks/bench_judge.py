"""The self-judge on the tiered example replies, in both scoring modes, side by side in one run.

Prints, per mode: Spearman of the human-like reward vs the intended tier (all replies, and expressive vs flat),
unparsable judgements, and seconds per judged reply (4 criteria each) at the given batch size.

    python benchmarks/bench_judge.py                  # embedded SmolLM2, batch 8
    python benchmarks/bench_judge.py --batch-size 16 --profile smoke
"""

from __future__ import annotations

import argparse
import time

from hmxnb.data import load_rubric_examples
from hmxnb.models import load_model
from hmxnb.params import load_params
from hmxnb.rubric import Rubric, ordering_metrics, score_examples


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    p = load_params(args.profile)
    model, tok, backend = load_model(p)
    rubric = Rubric.from_params(p)
    ex = load_rubric_examples()
    print(f"model {p['model_name_or_path']} ({backend}), {len(ex)} replies x {len(rubric.names)} criteria, batch {args.batch_size}")
    print(f"{'mode':12s}{'spearman all':>14s}{'expr vs flat':>14s}{'unparsed':>10s}{'s/reply':>9s}")
    for mode in ("probability", "generate"):
        t0 = time.perf_counter()
        df, diag = score_examples(model, tok, rubric, ex, mode=mode, batch_size=args.batch_size,
                                  max_new_tokens=p["judge_max_new_tokens"])
        secs = (time.perf_counter() - t0) / len(ex)
        m = ordering_metrics(df, rubric.names)

        def f(x):
            return "undefined" if x is None else f"{x:+.3f}"

        print(f"{mode:12s}{f(m['spearman_human_reward_vs_tier']):>14s}{f(m['spearman_expressive_vs_flat']):>14s}"
              f"{diag['n_unparsed']:>6d}/{diag['n_judgements']:<3d}{secs:9.2f}")
        print("   per criterion:", {c: (None if v is None else round(v, 2)) for c, v in m["spearman_per_criterion"].items()})


if __name__ == "__main__":
    main()

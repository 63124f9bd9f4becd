"""Which way would GRPO push? Each judge mode's training signal, read before any training.

Samples `num_generations` replies to every training prompt from the starting model, as GRPOTrainer samples them
(hmxnb.teach.sample_group), scores each group with the training's own reward functions for every judge mode and
truncation penalty asked (hmxnb.teach.score_group), and turns the rewards into TRL's group advantages
(hmxnb.teach.advantage_table). A GRPO step makes the replies with a positive advantage more likely, so the
correlation, within groups, of the advantage with a property of the reply says which way training will move that
property. Printed per setting: the within-group correlation of the advantage with
- the judge-free affect count (hmxnb.bench.expression.affect_statements): what the held-out evaluation counts and the
  reward does not read; positive = training should raise it,
- the reply's length in words, and whether it was cut at `max_completion_length`.
It predicts a direction, not a size: the held-out result after training is what counts (docs/demo-tuning.md 6-7).

    python benchmarks/bench_reward_signal.py --profile demo --modes contrast,request --truncation 0.5,0
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hmxnb.bench.expression import affect_statements
from hmxnb.data import load_prompts
from hmxnb.models import load_model
from hmxnb.params import load_params
from hmxnb.teach import advantage_table, sample_group, score_group


def within_group_corr(adv: np.ndarray, x: np.ndarray, groups: np.ndarray) -> float:
    """Pearson correlation of the advantage with `x` minus its group's mean (what the advantage can act on)."""
    centred = x - pd.Series(x).groupby(groups).transform("mean").to_numpy()
    if centred.std() == 0 or adv.std() == 0:
        return float("nan")
    return float(np.corrcoef(adv, centred)[0, 1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--modes", default="contrast,request", help="judge modes, comma-separated")
    ap.add_argument("--truncation", default="0.5,0", help="format_truncation_penalty values, comma-separated")
    ap.add_argument("--prompts", type=int, default=0, help="first N training prompts (0 = all)")
    args = ap.parse_args()

    p = load_params(args.profile)
    loaded = load_model(p, for_training=True)
    prompts = [r["prompt"] for r in load_prompts(p["prompts_file"], split="train", limit=args.prompts)]
    t0 = time.time()
    groups = [sample_group(loaded, p, q) for q in prompts]
    texts = [t for g in groups for t in g.texts]
    gid = np.repeat(np.arange(len(groups)), p["num_generations"])
    affect = np.array([affect_statements(t) for t in texts], float)
    words = np.array([len(t.split()) for t in texts], float)
    cut = np.array([c for g in groups for c in g.truncated], float)
    print(f"{args.profile}: {len(prompts)} training prompts x {p['num_generations']} replies sampled in "
          f"{time.time() - t0:.0f}s; affect statements per reply {affect.mean():.2f}, {words.mean():.1f} words, "
          f"{cut.mean():.0%} cut at {p['max_completion_length']} tokens\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for mode in args.modes.split(","):
            for trunc in (float(t) for t in args.truncation.split(",")):
                q = {**p, "judge_mode": mode, "format_truncation_penalty": trunc}
                t0 = time.time()
                adv = np.concatenate([advantage_table(score_group(q, loaded, g, tmp), q)[0]["advantage"].to_numpy()
                                      for g in groups])
                rows.append({"judge_mode": mode, "format_truncation_penalty": trunc,
                             "corr(advantage, affect count)": within_group_corr(adv, affect, gid),
                             "corr(advantage, words)": within_group_corr(adv, words, gid),
                             "corr(advantage, cut)": within_group_corr(adv, cut, gid),
                             "seconds": round(time.time() - t0, 1)})
                print(pd.DataFrame(rows[-1:]).round(3).to_string(index=False, header=len(rows) == 1), flush=True)
    print("\nwithin-group correlations of the GRPO advantage (positive: training should raise it)")
    print(pd.DataFrame(rows).round(3).to_string(index=False))


if __name__ == "__main__":
    main()

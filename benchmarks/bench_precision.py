"""Score precision: the embedded SmolLM2-135M-Instruct in bf16 against fp32, side by side, on CPU.

Three arms: `fp32` (the reference: the model as the CPU profiles load it); `bf16 logits` (the same weights cast to
bf16, its bf16 logits upcast after rounding: what the engine did on a GPU before); `bf16+fp32 head` (the bf16 model,
the output head applied in fp32 to the scored positions' hidden states: hmxnb.loglik, what the engine does now).
Prints, for each bf16 arm against fp32:
- the self-judge (`--modes`, default contrast) on the judge-validation set (72 replies = 24 prompts x 3 tiers):
  Spearman of the scores, max / mean |difference| of scores and rewards, the within-prompt reward spread;
- the same judge on sampled replies (`--groups` prompts x `num_generations` completions from the fp32 model at the
  profile's temperature and length: GRPO groups): the within-group reward spread (what GRPO learns from), the
  reward differences, the share of within-group reply pairs whose order flips, and the change of the GRPO advantage;
- TruthfulQA MC (the first `--tqa-items` items of the offline mirror): max / mean |difference| of the summed log-probs
  of every answer, MC1 / MC2, and how many MC1 decisions change.

    flock /tmp/hmxnb-cpu.lock env HMXNB_DATA_DIR=/work/shared/data python benchmarks/bench_precision.py
    python benchmarks/bench_precision.py --modes contrast,probability --groups 8 --tqa-items 50
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import time
from dataclasses import replace
from functools import partial

import numpy as np
import torch
from scipy.stats import spearmanr

from hmxnb.bench.truthfulqa import evaluate_truthfulqa, load_truthfulqa, metrics_truthfulqa
from hmxnb.chat import render
from hmxnb.data import load_judge_validation, load_prompts
from hmxnb.judge import judge
from hmxnb.loglik import pad, pad_token_id, score_continuations
from hmxnb.models import load_model
from hmxnb.params import load_params
from hmxnb.judge import JudgeConfig

ARMS = ("fp32", "bf16 logits", "bf16+fp32 head")
# (arm, against): each bf16 arm against fp32, and the two bf16 arms against each other, which isolates the error of
# rounding the logits to bf16 (the part the fp32 head removes) from the bf16 backbone's own
COLUMNS = (("bf16 logits", "fp32"), ("bf16+fp32 head", "fp32"), ("bf16 logits", "bf16+fp32 head"))
HEADER = ("bf16 logits vs fp32", "fp32 head vs fp32", "logit rounding alone")


def arm_model(arm: str, fp32_model, bf16_model):
    """The model of an arm, its fp32-head switch set (hmxnb.loglik reads `hmxnb_fp32_head`)."""
    if arm == "fp32":
        return fp32_model
    bf16_model.hmxnb_fp32_head = arm == "bf16+fp32 head"
    return bf16_model


@torch.inference_mode()
def sample_groups(loaded, prompts: list[str], n: int, max_new_tokens: int, temperature: float, seed: int = 0):
    """`n` sampled replies per prompt from the loaded model (as GRPO samples a group), flattened prompt by prompt."""
    torch.manual_seed(seed)
    model, tok = loaded
    seqs = [tok(render(tok, [{"role": "user", "content": p}], chat=loaded.chat), add_special_tokens=False)["input_ids"]
            for p in prompts]
    ids, mask = pad(seqs, pad_token_id(tok), side="left")
    gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=temperature, top_p=1.0,
                         max_new_tokens=max_new_tokens, num_return_sequences=n, pad_token_id=pad_token_id(tok))
    return tok.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True)


def judged(model, tok, config: JudgeConfig, prompts, replies, reuse: bool) -> dict:
    """Raw scores (every criterion, flattened), rewards and seconds of one judge pass with `config` (`reuse`:
    load_model's prefix-reuse decision, the same for every arm)."""
    t0 = time.perf_counter()
    res = judge(model, tok, config, prompts, replies, direction="human", reuse=reuse)
    return {"scores": res.scores.ravel(), "rewards": config.rubric.reward(res.scores, "human", res.criteria),
            "seconds": time.perf_counter() - t0}


def advantages(rewards: np.ndarray, groups: list[str]) -> np.ndarray:
    """TRL's group-scaled GRPO advantage, (r - group mean) / (group std + 1e-4), std with Bessel's correction."""
    keys = np.array(groups)
    out = np.empty_like(rewards)
    for g in set(groups):
        r = rewards[keys == g]
        out[keys == g] = (r - r.mean()) / (r.std(ddof=1) + 1e-4)
    return out


def within_std(rewards: np.ndarray, groups: list[str]) -> float:
    """Mean over groups of the reward std within a group (population std, as train_log's signal/within_group_std)."""
    keys = np.array(groups)
    return float(np.mean([rewards[keys == g].std() for g in dict.fromkeys(groups)]))


def flipped_pairs(ref: np.ndarray, other: np.ndarray, groups: list[str]) -> float:
    """Share of within-group reply pairs that the two arms order differently (a tie in one arm counts as a flip)."""
    keys, flips, total = np.array(groups), 0, 0
    for g in dict.fromkeys(groups):
        idx = np.flatnonzero(keys == g)
        for i, j in itertools.combinations(idx, 2):
            total += 1
            flips += np.sign(ref[i] - ref[j]) != np.sign(other[i] - other[j])
    return flips / max(total, 1)


def diff_line(label: str, values: dict, fmt: str = ".4f") -> str:
    """'label  max / mean' of |arm - against| for each of COLUMNS, NaN (unscorable) entries left out."""
    cells = []
    for arm, against in COLUMNS:
        d = np.abs(np.asarray(values[arm], float) - np.asarray(values[against], float))
        d = d[np.isfinite(d)]
        cells.append(f"{d.max():{fmt}} / {d.mean():{fmt}}")
    return row(label, cells)


def row(label: str, cells: list) -> str:
    return f"  {label:<46}" + "".join(f"{str(c):>22}" for c in cells)


def spearman(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    return float(spearmanr(a[ok], b[ok]).statistic)


def pick(by_arm: dict, key: str, fn=None) -> dict:
    """{arm: by_arm[arm][key]}, mapped through `fn`."""
    return {a: (fn(v[key]) if fn else v[key]) for a, v in by_arm.items()}


def report_validation(mode: str, by_arm: dict, rows: list[dict]) -> None:
    """The judge on the judge-validation set: agreement with fp32, its validity per arm, within-prompt spread."""
    prompts, tiers = [r["prompt"] for r in rows], [r["tier"] for r in rows]
    print(f"\n{mode} judge, judge-validation set ({len(rows)} replies, {len(set(prompts))} prompts x 3 tiers)")
    print(row("", HEADER))
    print(row("Spearman of scores", [f"{spearman(by_arm[a]['scores'], by_arm[b]['scores']):.4f}"
                                     for a, b in COLUMNS]))
    print(diff_line("|score difference| max / mean (scale 1-5)", pick(by_arm, "scores")))
    print(diff_line("|reward difference| max / mean (0-1)", pick(by_arm, "rewards")))
    print("  Spearman of reward vs tier (validity): " + ", ".join(f"{a} {spearman(tiers, by_arm[a]['rewards']):.3f}"
                                                                  for a in ARMS))
    spread = within_std(by_arm["fp32"]["rewards"], prompts)
    print(f"  within-prompt reward std, fp32 (3 replies of different tiers): {spread:.4f}")
    print("  seconds: " + ", ".join(f"{a} {by_arm[a]['seconds']:.1f}" for a in ARMS))


def report_groups(mode: str, by_arm: dict, groups: list[str], n: int) -> None:
    """The judge on sampled GRPO groups: the spread GRPO learns from next to the bf16 differences."""
    rewards = pick(by_arm, "rewards")
    print(f"\n{mode} judge, sampled replies ({len(set(groups))} prompts x {n} completions from the fp32 model)")
    print(f"  within-group reward std, fp32: {within_std(rewards['fp32'], groups):.4f} (mean over groups)")
    print(row("", HEADER))
    print(diff_line("|reward difference| max / mean (0-1)", rewards))
    print(row("within-group reply pairs ordered differently",
              [f"{flipped_pairs(rewards[a], rewards[b], groups):.3f}" for a, b in COLUMNS]))
    adv = {a: advantages(r, groups) for a, r in rewards.items()}
    print(diff_line("|GRPO advantage difference| max / mean", adv, ".3f"))


def truthfulqa_logprobs(model, tok, items, batch_size, reuse: bool) -> tuple[np.ndarray, dict, float, list]:
    """(summed log-prob of every distinct answer, MC1/MC2, seconds, MC1 picks) on the given items."""
    t0 = time.perf_counter()
    records = evaluate_truthfulqa(model, tok, items, "smollm2", batch_size=batch_size,
                                  scorer=partial(score_continuations, reuse=reuse))
    secs = time.perf_counter() - t0
    by_item = {}
    for r in records:
        by_item.setdefault(r["item_id"], {}).update(zip(r["choices"], r["logprobs"]))
    flat = np.array([lp for it in items for lp in by_item[it["item_id"]].values()])
    picks = [r["prediction"] for r in records if r["benchmark"] == "truthfulqa_mc1"]
    return flat, metrics_truthfulqa(records), secs, picks


def report_truthfulqa(model_of, tok, data_dir: str, n_items: int, batch_size: int, reuse: bool) -> None:
    """TruthfulQA MC log-likelihoods of every arm on the first `n_items` items, compared column by column."""
    items = load_truthfulqa(data_dir)[:n_items]
    out = {a: truthfulqa_logprobs(model_of(a), tok, items, batch_size, reuse) for a in ARMS}
    ref = out["fp32"][0]
    print(f"\nTruthfulQA MC, first {len(items)} items ({len(ref)} answers; fp32 summed log-probs: mean "
          f"{ref.mean():.1f} nats)")
    print(row("", HEADER))
    print(diff_line("|summed log-prob difference| max / mean (nats)", {a: v[0] for a, v in out.items()}))
    print(row("MC1 decisions changed", [sum(x != y for x, y in zip(out[a][3], out[b][3])) for a, b in COLUMNS]))
    print("  MC1 / MC2 / seconds: " + ", ".join(f"{a} {m['mc1']:.3f} / {m['mc2']:.3f} / {s:.1f}"
                                                  for a, (_, m, s, _) in out.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="demo", help="rubric, judge batch, temperature, lengths (default demo)")
    ap.add_argument("--modes", default="contrast", help="judge modes, comma-separated (contrast, probability)")
    ap.add_argument("--groups", type=int, default=16, help="training prompts to sample GRPO groups for (0: none)")
    ap.add_argument("--tqa-items", type=int, default=100, help="first N TruthfulQA items (0: none)")
    ap.add_argument("--data-dir", default=os.environ.get("HMXNB_DATA_DIR"))
    args = ap.parse_args()
    p = load_params(args.profile)
    loaded = load_model({**p, "use_unsloth": False})
    (fp32_model, tok), backend = loaded, loaded.backend
    fp32_model.eval()
    bf16_model = copy.deepcopy(fp32_model).to(torch.bfloat16)
    config = JudgeConfig.from_params(p)  # the profile's judge; each mode below replaces its judge_mode

    def model_of(arm):
        return arm_model(arm, fp32_model, bf16_model)

    print(f"model {p['model_name_or_path']} ({backend}), profile {args.profile}, torch threads "
          f"{torch.get_num_threads()}; arms: {', '.join(ARMS)}")
    rows = load_judge_validation()
    n = p["num_generations"]
    prompts = [r["prompt"] for r in load_prompts(split="train", limit=args.groups)] if args.groups else []
    replies = sample_groups(loaded, prompts, n, p["max_completion_length"], p["temperature"]) if prompts else []
    groups = [q for q in prompts for _ in range(n)]
    for mode in args.modes.split(","):
        in_mode = replace(config, mode=mode)
        val = {a: judged(model_of(a), tok, in_mode, [r["prompt"] for r in rows], [r["reply"] for r in rows],
                         loaded.prefix_reuse) for a in ARMS}
        report_validation(mode, val, rows)
        if replies:
            report_groups(mode, {a: judged(model_of(a), tok, in_mode, groups, replies, loaded.prefix_reuse)
                                 for a in ARMS}, groups, n)
    if args.tqa_items:
        if not args.data_dir:
            raise SystemExit("TruthfulQA needs the offline mirror: set HMXNB_DATA_DIR or --data-dir (or --tqa-items 0)")
        report_truthfulqa(model_of, tok, args.data_dir, args.tqa_items, p["bench_batch_size"], loaded.prefix_reuse)


if __name__ == "__main__":
    main()

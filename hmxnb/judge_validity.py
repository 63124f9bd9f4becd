"""How well a judge mode orders replies of known quality: the tiered rubric examples and the held-out
judge-validation set (hmxnb/data/judge_validation.jsonl), scored in both directions.

Notebook 01 prints these tables before any training, and benchmarks/bench_judge.py measures them beside the cost per
reply: a judge that cannot tell expressive from flat text on replies it was not designed on gives GRPO no direction.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from hmxnb.judge import JudgeConfig


def score_examples(loaded, config: JudgeConfig, examples: list[dict]):
    """Judge the tiered example replies in both directions on `loaded` (a LoadedModel); a row per reply, with rewards.

    With reverse_mode="negate" the reverse reward reuses the human-direction scores; with "invert_rubric" the
    replies are judged a second time with the inverted criterion texts.
    """
    import pandas as pd

    rubric, prompts, replies = config.rubric, [e["prompt"] for e in examples], [e["reply"] for e in examples]
    human = config.score(loaded, prompts, replies, "human")
    reverse = human if rubric.negated("reverse") else config.score(loaded, prompts, replies, "reverse")
    df = pd.DataFrame(examples)
    for j, c in enumerate(human.criteria):
        df[f"score_{c}"] = human.scores[:, j]
    if human.contrast is not None:
        df["contrast_nats"] = human.contrast
    df["reward_human"] = rubric.reward(human.scores, "human", human.criteria)
    df["reward_reverse"] = rubric.reward(reverse.scores, "reverse", reverse.criteria)
    df["judge_raw"] = [" | ".join(r) for r in human.raw] if human.raw else None
    both = reverse is not human
    return df, {"criteria": human.criteria, "n_unparsed": human.n_unparsed + (reverse.n_unparsed if both else 0),
                "n_judgements": human.scores.size * (2 if both else 1), "score_mass": human.score_mass}


def ordering_metrics(df, criteria: list[str]) -> dict:
    """How well the judge orders the examples as intended: Spearman of reward vs tier, per criterion, tier means."""
    from scipy.stats import spearmanr

    def rho(x, y):
        x, y = np.asarray(x, float), np.asarray(y, float)
        ok = ~(np.isnan(x) | np.isnan(y))
        if ok.sum() < 3 or np.all(y[ok] == y[ok][0]):
            return None  # undefined: too few values or a constant judge
        return float(spearmanr(x[ok], y[ok]).statistic)

    tier = df["tier"].to_numpy()
    top = df["tier"] > 0
    return {
        "spearman_human_reward_vs_tier": rho(tier, df["reward_human"]),
        "spearman_reverse_reward_vs_tier": rho(tier, df["reward_reverse"]),
        "spearman_expressive_vs_flat": rho(tier[top], df.loc[top, "reward_human"]),
        "spearman_per_criterion": {c: rho(tier, df[f"score_{c}"]) for c in criteria},
        "mean_reward_by_tier": {d: {str(k): float(v) for k, v in df.groupby("tier_name")[f"reward_{d}"].mean().items()}
                                for d in ("human", "reverse")},
        "ordered_as_intended": bool(df.groupby("tier")["reward_human"].mean().is_monotonic_increasing),
    }


def judge_validity(loaded, config: JudgeConfig, examples: list[dict], modes: list[str]):
    """How well each judge mode (`config` in that mode) orders tiered replies it was not designed on: a row per mode.

    Columns: Spearman of the human-like reward against the intended tier (all tiers; expressive vs flat only), mean
    reward per tier, seconds per reply. Returns (table, {mode: per-reply DataFrame}).
    """
    import time

    import pandas as pd

    rows, frames = [], {}
    for mode in dict.fromkeys(modes):
        t0 = time.perf_counter()
        df, diag = score_examples(loaded, replace(config, mode=mode), examples)
        secs = time.perf_counter() - t0
        m = ordering_metrics(df, diag["criteria"])
        tiers = m["mean_reward_by_tier"]["human"]
        rows.append({"judge_mode": mode, "spearman_all_tiers": m["spearman_human_reward_vs_tier"],
                     "spearman_expressive_vs_flat": m["spearman_expressive_vs_flat"],
                     **{f"mean_reward_{t}": tiers.get(t) for t in ("expressive", "flat", "degenerate")},
                     "seconds_per_reply": secs / max(len(df), 1), "n_replies": len(df)})
        frames[mode] = df
    return pd.DataFrame(rows).set_index("judge_mode"), frames

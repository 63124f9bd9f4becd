"""A batch of self-judge rewards before TRL sees it: unscorable replies made neutral, numerical failures counted and
warned about, and the learning-signal diagnostics (spread within vs between groups) that train_log.csv records.

Used by hmxnb.rewards' `self_judge`; kept apart because these are statements about a batch of rewards, not about one
completion.
"""

from __future__ import annotations

import warnings

import numpy as np


def fill_unscorable(rewards: np.ndarray, groups: list) -> tuple[np.ndarray, int]:
    """Replace non-finite rewards (unscorable replies: unparsable, empty, or NaN / inf from a numerical overflow) by
    the mean of the valid rewards of their group (same prompt).

    TRL sums reward functions with `nansum`, so a NaN judge reward next to the format guard's number would count as 0,
    the worst judge reward (and an inf would swamp its group's advantages). The group mean makes an unscorable reply
    neutral for its GRPO advantage (the format guard still penalises it when it is empty or degenerate). A group with
    no valid reward takes the batch's valid mean (0.0 when there is none): any constant leaves its advantages
    unchanged. Returns (filled rewards, number filled).
    """
    r = np.asarray(rewards, dtype=float).copy()
    bad = ~np.isfinite(r)
    if not bad.any():
        return r, 0
    fallback = float(r[~bad].mean()) if (~bad).any() else 0.0
    keys = np.array([str(g) for g in groups])
    for g in set(keys[bad]):
        members = keys == g
        valid = members & ~bad
        r[members & bad] = r[valid].mean() if valid.any() else fallback
    return r, int(bad.sum())


def count_nonfinite(res) -> int:
    """Judgements whose score is NaN or +-inf beyond those the judge reported unparsable (NaN by design).

    These are numerical failures: an fp16 overflow, a token the model gives probability 0. They are filled like
    unparsable ones (`fill_unscorable`), but a run should hear about them: they mean the scores are not trustworthy.
    """
    return max(int((~np.isfinite(np.asarray(res.scores, dtype=float))).sum()) - int(res.n_unparsed), 0)


def warn_nonfinite(state, n: int, size: int, step) -> None:
    """One warning line per run, the first time a step's judge scores are not all finite (counted in the log)."""
    state.n_nonfinite += n
    if n and not state.warned_nonfinite:
        state.warned_nonfinite = True
        warnings.warn(f"self-judge: {n} of {size} judge scores at step {step} were NaN or inf (numerical overflow, "
                      "e.g. fp16); their replies took their group's mean reward. Later steps are not warned about: "
                      "see judge/nonfinite_share in train_log.csv", RuntimeWarning, stacklevel=3)


def group_spread(rewards: np.ndarray, groups: list) -> dict[str, float]:
    """Learning-signal diagnostics of one batch: mean within-group std, std of group means, share of flat groups.

    GRPO learns from differences within a group (completions of one prompt); when they are tiny next to the
    differences between prompts, or zero, the advantages are noise or nothing.
    """
    keys = [str(g) for g in groups]
    r = np.asarray(rewards, dtype=float)
    by = {k: r[[i for i, g in enumerate(keys) if g == k]] for k in dict.fromkeys(keys)}
    within = [float(np.std(v)) for v in by.values()]
    means = [float(np.mean(v)) for v in by.values()]
    return {"within_group_std": float(np.mean(within)), "between_group_std": float(np.std(means)),
            "zero_std_groups": float(np.mean([w < 1e-6 for w in within]))}

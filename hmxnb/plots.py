"""Figures of the training steps (seaborn); the comparison figures live in hmxnb.report."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns

TIER_ORDER = ["degenerate", "flat", "expressive"]


def savefig(fig, path: str | Path) -> Path:
    """Save a figure as PNG (150 dpi) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path


def plot_rubric_examples(df, criteria: list[str]):
    """Left: reward by intended tier for both directions. Right: mean judge score per criterion and tier."""
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1.1, 1]})
    long = df.melt(id_vars=["tier_name"], value_vars=["reward_human", "reward_reverse"], var_name="direction", value_name="reward")
    long["direction"] = long["direction"].str.replace("reward_", "")
    sns.stripplot(data=long, x="tier_name", y="reward", hue="direction", order=TIER_ORDER, dodge=True, ax=axes[0], size=6)
    sns.pointplot(data=long, x="tier_name", y="reward", hue="direction", order=TIER_ORDER, dodge=0.4, linestyle="none",
                  markers="D", errorbar=None, ax=axes[0], legend=False, palette="dark")
    axes[0].set(title="Self-judge reward by intended tier", xlabel="hand-written reply tier", ylabel="reward (0-1)")
    means = df.groupby("tier_name")[[f"score_{c}" for c in criteria]].mean().reindex(TIER_ORDER)
    means.columns = criteria
    sns.heatmap(means.T, annot=True, fmt=".2f", cmap="viridis", ax=axes[1], cbar_kws={"label": "mean score"})
    axes[1].set(title="Mean judge score per criterion", xlabel="tier", ylabel="")
    fig.tight_layout()
    return fig

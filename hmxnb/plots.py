"""Figures of the training steps (seaborn); the comparison figures live in hmxnb.report."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns

TIER_ORDER = ["degenerate", "flat", "expressive"]


def savefig(fig, path: str | Path, dpi: int = 150) -> Path:
    """Save a figure (format from the file's suffix, PNG by default) atomically and return its path."""
    from hmxnb.artifacts import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix[1:] or "png")
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


def _line(ax, log, col, label=None, **kw):
    """Plot one log column against step when it is there (NaN steps skipped, e.g. metrics logged every N steps)."""
    if col in log and log[col].notna().any():
        d = log[["step", col]].dropna()
        ax.plot(d["step"], d[col], marker=".", label=label or col.split("/", 1)[-1], **kw)


def plot_training(log, title: str = ""):
    """Six panels from a GRPO log (train_log.csv), the top row what was learned, the bottom row why:

    rubric reward (+- std) | judge score | reward-hacking watch
    learning signal: within-group vs between-prompt reward spread, groups without signal | how far the policy moved:
    gradient norm, adapter weight change, |log-prob change| on sampled tokens | completion length (and KL).
    "No signal" shows as within-group spread near zero; "too small a step" as signal with a flat adapter norm.
    """
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5), sharex=True)
    ax = axes[0, 0]
    r, s = log["rewards/self_judge/mean"], log.get("rewards/self_judge/std")
    ax.plot(log["step"], r, marker="o", label="self-judge reward")
    if s is not None:
        ax.fill_between(log["step"], r - s, r + s, alpha=0.2)
    if len(log) >= 5:
        ax.plot(log["step"], r.rolling(5, min_periods=1).mean(), color="black", lw=2, label="5-step mean")
    ax.set(title="Rubric reward (self-judged)", ylabel="reward (0-1)")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    for c in log.columns:
        if c.startswith("judge/") and c not in ("judge/seconds", "judge/unparsed_share", "judge/unscorable_share",
                                                "judge/contrast_nats"):
            _line(ax, log, c)
    ax.set(title="Judge score (raw scale, mean per step)", ylabel="score")
    ax.legend(fontsize=8)
    ax = axes[0, 2]
    for c in ("watch/empty_share", "watch/repetitive_share", "watch/truncated_share", "judge/unscorable_share"):
        _line(ax, log, c, c.split("/")[1].replace("_share", ""))
    ax.set(title="Reward-hacking watch (share of completions)", ylim=(-0.05, 1.05))
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    _line(ax, log, "signal/within_group_std", "within-group std (what GRPO learns from)")
    _line(ax, log, "signal/between_group_std", "std between prompts")
    _line(ax, log, "frac_reward_zero_std", "groups with no signal (share)", ls=":", color="grey")
    ax.set(title="Learning signal of the judge reward", xlabel="step", ylabel="reward spread")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    _line(ax, log, "grad_norm", "gradient norm (LoRA)")
    _line(ax, log, "drift/mean_abs_logprob_change", "|log-prob change| on samples (nats)")
    ax.set(title="How far the policy moved", xlabel="step")
    if "drift/adapter_norm" in log:
        ax2 = ax.twinx()
        _line(ax2, log, "drift/adapter_norm", "adapter weight change", color="tab:purple")
        ax2.set_ylabel("sum ||scale * B A||", color="tab:purple")
        ax2.grid(False)
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[1, 2]
    _line(ax, log, "completions/mean_length", "mean completion length")
    ax.set(title="Completion length" + (" and KL" if "kl" in log else ""), xlabel="step", ylabel="tokens")
    if "kl" in log:
        ax2 = ax.twinx()
        ax2.plot(log["step"], log["kl"], color="tab:red", label="kl")
        ax2.set_ylabel("KL", color="tab:red")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_benchmarks(table):
    """One small panel per benchmark: each headline metric for base / human-like / reverse."""
    sns.set_theme(style="whitegrid")
    long = table.reset_index().melt(id_vars=["benchmark", "metric"], var_name="model", value_name="value").dropna()
    benches = list(dict.fromkeys(long["benchmark"]))
    ncol = 3
    nrow = -(-len(benches) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
    palette = {"base": "#9e9e9e", "human": "#d95f02", "reverse": "#1b9e77"}
    for ax, b in zip(axes.flat, benches):
        sub = long[long["benchmark"] == b]
        sns.barplot(data=sub, x="metric", y="value", hue="model", palette=palette, ax=ax, legend=ax is axes.flat[0])
        ax.set(title=b, xlabel="", ylabel="")
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    for ax in list(axes.flat)[len(benches):]:
        ax.axis("off")
    fig.tight_layout()
    return fig

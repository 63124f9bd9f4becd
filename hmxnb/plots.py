"""Figures: rubric examples and training (notebooks 01-03), benchmarks (04), training curves side by side (05, report);
the comparison's forest plot and heatmap are hmxnb.compare_plots.

One style (STYLE), set per figure, never globally. The figures of notebook 05 are plain `matplotlib.figure.Figure`
objects (Agg canvas, no pyplot state), so any backend setting is left alone."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from hmxnb.artifacts import atomic_path

TIER_ORDER = ["degenerate", "flat", "expressive"]
TRAINING_QUANTITIES = ("reward", "kl", "completions/mean_length")
STYLE = "whitegrid"


def savefig(fig, path: str | Path, dpi: int = 150) -> Path:
    """Save a figure (format from the file's suffix, PNG by default) atomically and return its path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix[1:] or "png")
    return path


def _subplots(*args, **kwargs):
    """`plt.subplots` in STYLE, set for this figure only: matplotlib's global settings stay as they are."""
    with sns.axes_style(STYLE):
        return plt.subplots(*args, **kwargs)


def plot_rubric_examples(df, criteria: list[str]):
    """Left: reward by intended tier for both directions. Right: mean judge score per criterion and tier."""
    fig, axes = _subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1.1, 1]})
    long = df.melt(id_vars=["tier_name"], value_vars=["reward_human", "reward_reverse"], var_name="direction",
                   value_name="reward")
    long["direction"] = long["direction"].str.replace("reward_", "")
    sns.stripplot(data=long, x="tier_name", y="reward", hue="direction", order=TIER_ORDER, dodge=True, ax=axes[0],
                  size=6)
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
    fig, axes = _subplots(2, 3, figsize=(15, 7.5), sharex=True)
    _learned_panels(axes[0], log)
    _why_panels(axes[1], log)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _learned_panels(axes, log) -> None:
    """Top row of `plot_training`: rubric reward, judge score per criterion, reward-hacking watch."""
    ax = axes[0]
    r, s = log["rewards/self_judge/mean"], log.get("rewards/self_judge/std")
    ax.plot(log["step"], r, marker="o", label="self-judge reward")
    if s is not None:
        ax.fill_between(log["step"], r - s, r + s, alpha=0.2)
    if len(log) >= 5:
        ax.plot(log["step"], r.rolling(5, min_periods=1).mean(), color="black", lw=2, label="5-step mean")
    ax.set(title="Rubric reward (self-judged)", ylabel="reward (0-1)")
    for c in log.columns:
        if c.startswith("judge/") and c not in ("judge/seconds", "judge/unparsed_share", "judge/unscorable_share",
                                                "judge/contrast_nats", "judge/nonfinite_share"):
            _line(axes[1], log, c)
    axes[1].set(title="Judge score (raw scale, mean per step)", ylabel="score")
    for c in ("watch/empty_share", "watch/repetitive_share", "watch/truncated_share", "watch/repeats_sentence_share",
              "watch/stock_formula_share", "judge/unscorable_share"):
        _line(axes[2], log, c, c.split("/")[1].replace("_share", ""))
    axes[2].set(title="Reward-hacking watch (share of completions)", ylim=(-0.05, 1.05))
    for ax in axes:
        ax.legend(fontsize=8)


def _why_panels(axes, log) -> None:
    """Bottom row of `plot_training`: learning signal, how far the policy moved, completion length (and KL)."""
    ax = axes[0]
    _line(ax, log, "signal/within_group_std", "within-group std (what GRPO learns from)")
    _line(ax, log, "signal/between_group_std", "std between prompts")
    _line(ax, log, "frac_reward_zero_std", "groups with no signal (share)", ls=":", color="grey")
    ax.set(title="Learning signal of the judge reward", xlabel="step", ylabel="reward spread")
    ax.legend(fontsize=8)
    ax = axes[1]
    _line(ax, log, "grad_norm", "gradient norm (LoRA)")
    _line(ax, log, "drift/mean_abs_logprob_change", "|log-prob change| on samples (nats)")
    ax.set(title="How far the policy moved", xlabel="step")
    if "drift/adapter_norm" in log:
        ax2 = ax.twinx()
        _line(ax2, log, "drift/adapter_norm", "adapter weight change", color="tab:purple")
        ax2.set_ylabel("sum ||scale * B A||", color="tab:purple")
        ax2.grid(False)
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[2]
    _line(ax, log, "completions/mean_length", "mean completion length")
    ax.set(title="Completion length" + (" and KL" if "kl" in log else ""), xlabel="step", ylabel="tokens")
    if "kl" in log:
        ax2 = ax.twinx()
        ax2.plot(log["step"], log["kl"], color="tab:red", label="kl")
        ax2.set_ylabel("KL", color="tab:red")


def plot_benchmarks(table):
    """One small panel per benchmark: each headline metric for base / human-like / reverse."""
    long = table.reset_index().melt(id_vars=["benchmark", "metric"], var_name="model", value_name="value").dropna()
    benches = list(dict.fromkeys(long["benchmark"]))
    ncol = 3
    nrow = -(-len(benches) // ncol)
    fig, axes = _subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
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


def empty_figure(text: str):
    """A small figure that says why it is empty."""
    fig = Figure(figsize=(5, 1.5))
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    return fig


def load_training_logs(logs: dict) -> pd.DataFrame:
    """Training logs {direction: CSV path or DataFrame} (notebooks 02 human, 03 reverse) as one long DataFrame.

    Each log needs `step` and `reward`; `reward_std`, `kl`, `completions/mean_length`, `seed` and `base_model`
    are optional. A `direction` column is added.
    """
    frames = []
    for direction, log in logs.items():
        df = pd.read_csv(log) if isinstance(log, (str, Path)) else log.copy()
        missing = {"step", "reward"} - set(df.columns)
        if missing:
            raise ValueError(f"training log '{direction}' lacks columns {sorted(missing)}")
        df["direction"] = direction
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["step", "reward", "direction"])


def _run_label(df: pd.DataFrame) -> pd.Series:
    """A '<base_model> seed <n>' label per row from whichever of the two columns the logs have; '' if neither."""
    label = pd.Series("", index=df.index)
    if "base_model" in df.columns:
        label = df["base_model"].astype(str)
    if "seed" in df.columns:
        label = (label + " seed " + df["seed"].astype(str)).str.strip()
    return label


def plot_training_curves(logs):
    """Training curves of the human (02) and reverse (03) runs side by side: one column per direction.

    Rows: reward (with a ±reward_std band, the within-group spread TRL logs, not a CI), then KL and mean
    completion length where logged. `logs`: a dict for `load_training_logs` or its DataFrame.
    """
    df = logs if isinstance(logs, pd.DataFrame) else load_training_logs(logs)
    if df.empty:
        return empty_figure("no training logs")
    df = df.assign(run=_run_label(df))
    quantities = [q for q in TRAINING_QUANTITIES if q in df.columns and df[q].notna().any()]
    directions = list(dict.fromkeys(df["direction"]))
    runs = list(dict.fromkeys(df["run"]))
    colors = dict(zip(runs, sns.color_palette(n_colors=len(runs))))
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(4.5 * len(directions), 2.6 * len(quantities)))
        axes = fig.subplots(len(quantities), len(directions), sharex="col", sharey="row", squeeze=False)
        for j, direction in enumerate(directions):
            d = df[df["direction"] == direction].sort_values("step")
            for i, q in enumerate(quantities):
                ax = axes[i, j]
                for run, r in d.groupby("run", sort=False):
                    ax.plot(r["step"], r[q], color=colors[run], label=run or None)
                    if q == "reward" and "reward_std" in r.columns:
                        ax.fill_between(r["step"], r["reward"] - r["reward_std"], r["reward"] + r["reward_std"],
                                        color=colors[run], alpha=0.2, lw=0)
                ax.set_ylabel(q if j == 0 else "")
                ax.set_xlabel("step" if i == len(quantities) - 1 else "")
            axes[0, j].set_title(direction)
        if len(runs) > 1:
            axes[0, 0].legend(fontsize=8)
        fig.tight_layout()
    return fig

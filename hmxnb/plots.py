"""Figures: rubric examples and training (notebooks 01-03), benchmarks (04), training curves side by side (05, report),
and the comparison's forest plot of the per-seed differences and heatmap of the seed-mean improvements, both coloured
by what the comparison concluded. Then how notebooks show figures and tables.

One style (STYLE), set per figure, never globally. The figures of notebook 05 are plain `matplotlib.figure.Figure`
objects (Agg canvas, no pyplot state), so any backend setting is left alone; Jupyter shows such a figure as the text
"<Figure size ...>", and pyplot figures are shown only by the inline backend, not under `MPLBACKEND=Agg` (CI, some
batch machines). `show` embeds the figure as a PNG in the cell's output in every case, and when given a path, the PNG
shown is the file saved there. `text_table` / `samples_table` show text columns whole, wrapped and left-aligned
(pandas cuts text at 50 characters).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Image, display
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from hmxnb.aggregate import seed_summary
from hmxnb.artifacts import atomic_path
from hmxnb.compare import MAIN_CONTRAST, NOT_MEASURED, UNDEFINED
from hmxnb.formatting import mean_sd
from hmxnb.stats import CLASSES


# ---------------------------------------------------------------- figures of notebooks 01-04 and the training curves

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


# ---------------------------------------------------------------- figures of the comparisons: forest plot and heatmap

CLASS_COLORS = {"enhanced": "#2a9d8f", "degraded": "#e76f51", "no significant change": "#8d99ae",
                UNDEFINED: "#d9d9d9", NOT_MEASURED: "#d9d9d9"}
HEATMAP_CLIP = 20.0


def _class_legend(fig) -> None:
    """One legend of the three classes for a whole figure (not measured / undefined rows say so in words)."""
    handles = [Line2D([], [], marker="o", ls="", color=CLASS_COLORS[k], label=k) for k in CLASSES]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 0.0))


def _forest_panel(ax, g: pd.DataFrame, labels: list[str], offsets: dict, several_seeds: bool) -> None:
    """One benchmark's panel: a point with its CI per seed, the seed means, and a label where there is no value."""
    for r in g[np.isfinite(g["diff"])].itertuples():  # not measured / undefined: a label, no point
        y = labels.index(f"{r.metric} · {r.base_model}") + offsets[r.seed]
        err = [[max(r.diff - r.ci_low, 0)], [max(r.ci_high - r.diff, 0)]] if np.isfinite(r.ci_low) else None
        ax.errorbar(r.diff, y, xerr=err, fmt="o", color=CLASS_COLORS[r.cls], ms=5, capsize=2)
    for r in g[~np.isfinite(g["diff"])].itertuples():
        y = labels.index(f"{r.metric} · {r.base_model}") + offsets[r.seed]
        ax.text(0.5, y, r.cls, transform=ax.get_yaxis_transform(), ha="center", va="center", color="grey")
    if several_seeds:
        means = g.groupby(["metric", "base_model"], sort=False)["diff"].mean()
        for (metric, base_model), m in means.items():
            ax.plot(m, labels.index(f"{metric} · {base_model}"), "D", color="black", ms=4)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)


def plot_forest(results: pd.DataFrame, contrast: str = MAIN_CONTRAST):
    """Forest plot of per-seed differences with 95% CIs, one panel per benchmark, coloured by class.

    Each seed is its own point (seed variance shown, not hidden); a black diamond marks the seed mean.
    """
    sub = results[results["contrast"] == contrast]
    if sub.empty:
        return empty_figure(f"no results for {contrast}")
    benches = list(dict.fromkeys(sub["benchmark"]))
    labels = {b: list(dict.fromkeys(sub.loc[sub["benchmark"] == b, "metric"] + " · "
                                    + sub.loc[sub["benchmark"] == b, "base_model"].astype(str))) for b in benches}
    heights = [len(labels[b]) for b in benches]
    seeds = sorted(sub["seed"].unique())
    offsets = dict(zip(seeds, np.linspace(-0.25, 0.25, len(seeds)) if len(seeds) > 1 else [0.0]))
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(8, 1.0 + 0.5 * sum(heights) + 0.7 * len(benches)))
        axes = fig.subplots(len(benches), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)
        for ax, bench in zip(axes[:, 0], benches):
            _forest_panel(ax, sub[sub["benchmark"] == bench], labels[bench], offsets, len(seeds) > 1)
            ax.set_title(bench, loc="left", fontsize=10)
        a, b = contrast.split("_vs_")
        axes[-1, 0].set_xlabel(f"difference {a} − {b} (95% CI; one point per seed)")
        _class_legend(fig)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def plot_heatmap(results: pd.DataFrame, contrast: str = MAIN_CONTRAST, clip: float = HEATMAP_CLIP):
    """Heatmap metric x model of the seed-mean improvement (% relative or pp, as annotated), + = better.

    A row per metric and a column per model, so it stays readable with many metrics. Cells are annotated with
    mean (and ± sd over seeds); colours saturate at ±clip so that one large change does not wash out the rest.
    """
    s = seed_summary(results[results["contrast"] == contrast])
    if s.empty:
        return empty_figure(f"no results for {contrast}")
    s["row"] = s["benchmark"] + "/" + s["metric"]
    rows = list(dict.fromkeys(s["row"]))
    values = s.pivot(index="row", columns="base_model", values="improvement_mean").loc[rows]
    s["text"] = [mean_sd(m, sd, 1, u) if np.isfinite(m) else ""
                 for m, sd, u in zip(s["improvement_mean"], s["improvement_sd"], s["change_unit"])]
    text = s.pivot(index="row", columns="base_model", values="text").loc[rows].fillna("")
    finite = np.abs(values.to_numpy(float)[np.isfinite(values.to_numpy(float))])
    vlim = min(float(finite.max()), clip) if finite.size and finite.max() > 0 else 1.0
    fig = Figure(figsize=(4.5 + 1.8 * values.shape[1], 1.4 + 0.4 * len(rows)))
    ax = fig.subplots()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # seaborn 0.13 calls cmap.set_bad
        sns.heatmap(values, annot=text.to_numpy(), fmt="", cmap="RdYlGn", center=0, vmin=-vlim, vmax=vlim, ax=ax,
                    cbar_kws={"label": "improvement, % or pp (+ = better)"}, linewidths=0.5)
    for i, j in zip(*np.nonzero(~np.isfinite(values.to_numpy(float)))):
        ax.text(j + 0.5, i + 0.5, "n/a", ha="center", va="center", color="grey", fontsize=8)
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title(f"{contrast.replace('_vs_', ' vs ')}: improvement (mean over seeds)", fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- figures and tables as notebooks show them

SHOWN_DPI = 150  # resolution of the PNG embedded in the notebook
MAX_WIDTH_PX = 980  # widest image on a notebook page (the page itself is ~1000-1100 px wide)


def _png(fig, dpi: int = SHOWN_DPI) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, bbox_inches="tight", format="png")
    return buffer.getvalue()


def show(fig, path: str | Path | None = None) -> Path | None:
    """Display `fig` in the notebook (saved to `path` first when given) and return the path.

    The image is shown at 100 px per figure inch (at most MAX_WIDTH_PX wide). A pyplot figure is closed afterwards,
    so the inline backend does not show it a second time.
    """
    saved = savefig(fig, path, dpi=SHOWN_DPI) if path is not None else None
    data = saved.read_bytes() if saved is not None and saved.suffix.lower() == ".png" else _png(fig)
    width = min(int(fig.get_figwidth() * 100), MAX_WIDTH_PX)
    display(Image(data=data, format="png", width=width))
    plt.close(fig)
    return saved


def text_table(df, text_columns=None, min_width: str = "14em"):
    """`df` as a table whose text columns are shown whole, wrapped and left-aligned (pandas cuts text at 50
    characters and right-aligns it). Text columns: those given, else every column holding strings."""
    if text_columns is None:
        text_columns = [c for c in df.columns if df[c].map(lambda v: isinstance(v, str)).all()]
    wrap = {"text-align": "left", "white-space": "pre-wrap", "min-width": min_width}
    return (df.style.hide(axis="index").format(precision=2)
            .set_table_styles([{"selector": "th", "props": [("text-align", "left")]}])
            .set_properties(subset=list(text_columns), **wrap))


def samples_table(samples, per_step: int = 4, max_chars: int = 400):
    """Completions of the first and the last sampled training step, readable: whole (up to `max_chars`), wrapped and
    left-aligned, beside their reward, format guard and judge scores. `samples` is a step's samples.jsonl as a frame."""
    steps = list(dict.fromkeys([samples["step"].min(), samples["step"].max()]))
    rows = pd.concat([samples[samples["step"] == s].head(per_step) for s in steps])
    scores = pd.json_normalize(rows["scores"].tolist()).set_index(rows.index)
    columns = ["step", "prompt", "completion", "reward"] + (["format_penalty"] if "format_penalty" in rows else [])
    view = rows[columns].join(scores).rename(columns={"format_penalty": "format guard"})
    view["completion"] = view["completion"].map(lambda t: t if len(t) <= max_chars else t[:max_chars] + " …")
    return text_table(view, ["prompt", "completion"]).set_properties(subset=["completion"], **{"min-width": "30em"})


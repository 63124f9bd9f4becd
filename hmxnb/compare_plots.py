"""The comparison's figures (notebook 05 and the report): a forest plot of the per-seed differences and a heatmap of
the seed-mean improvements, both coloured by what the comparison concluded.

Plain `matplotlib.figure.Figure` objects (Agg canvas, no pyplot state) in hmxnb.plots' STYLE, so any backend setting
is left alone.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from hmxnb.aggregate import seed_summary
from hmxnb.compare import MAIN_CONTRAST, NOT_MEASURED, UNDEFINED
from hmxnb.formatting import mean_sd
from hmxnb.plots import STYLE, empty_figure
from hmxnb.stats import CLASSES

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

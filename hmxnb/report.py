"""Figures and the stand-alone report of notebook 05: forest plot, heatmap, training curves, example replies.

`build_report` writes `report.md` (figures linked from `figures/`), `report.html` (the same content with the
figures embedded as base64 PNG, no external files), `comparisons.csv` and `summary.json`. Both documents are
rendered from one list of blocks, so they always say the same thing. Figures are plain
`matplotlib.figure.Figure` objects (Agg canvas, no pyplot state), so any backend setting is left alone.
"""

from __future__ import annotations

import base64
import html
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from hmxnb.artifacts import save_text
from hmxnb.compare import MAIN_CONTRAST, check_claims, model_metric_table, paper_summary, seed_summary

CLASS_COLORS = {"enhanced": "#2a9d8f", "degraded": "#e76f51", "no significant change": "#8d99ae"}
MODELS = ("base", "human", "reverse")
TRAINING_QUANTITIES = ("reward", "kl", "completions/mean_length")
PAPER_MODELS = "Qwen3-0.6B, Qwen3-4B, Qwen3-8B, Gemma 2 IT 2B and Llama 3.2 3B"
HEATMAP_CLIP_PCT = 20.0


def _empty_figure(text: str):
    """A small figure that says why it is empty."""
    fig = Figure(figsize=(5, 1.5))
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    return fig


def _class_legend(fig) -> None:
    """One legend of the three classes for a whole figure."""
    handles = [Line2D([], [], marker="o", ls="", color=c, label=k) for k, c in CLASS_COLORS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 0.0))


def plot_forest(results: pd.DataFrame, contrast: str = MAIN_CONTRAST):
    """Forest plot of per-seed differences with 95% CIs, one panel per benchmark, coloured by class.

    Each seed is its own point (seed variance shown, not hidden); a black diamond marks the seed mean.
    """
    sub = results[results["contrast"] == contrast]
    if sub.empty:
        return _empty_figure(f"no results for {contrast}")
    benches = list(dict.fromkeys(sub["benchmark"]))
    labels = {b: list(dict.fromkeys(sub.loc[sub["benchmark"] == b, "metric"] + " · "
                                    + sub.loc[sub["benchmark"] == b, "base_model"].astype(str))) for b in benches}
    heights = [len(labels[b]) for b in benches]
    seeds = sorted(sub["seed"].unique())
    offsets = dict(zip(seeds, np.linspace(-0.25, 0.25, len(seeds)) if len(seeds) > 1 else [0.0]))
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(8, 1.0 + 0.5 * sum(heights) + 0.7 * len(benches)))
        axes = fig.subplots(len(benches), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)
        for ax, bench in zip(axes[:, 0], benches):
            g = sub[sub["benchmark"] == bench]
            for r in g.itertuples():
                y = labels[bench].index(f"{r.metric} · {r.base_model}") + offsets[r.seed]
                err = [[max(r.diff - r.ci_low, 0)], [max(r.ci_high - r.diff, 0)]] if np.isfinite(r.ci_low) else None
                ax.errorbar(r.diff, y, xerr=err, fmt="o", color=CLASS_COLORS[r.cls], ms=5, capsize=2)
            if len(seeds) > 1:
                means = g.groupby(["metric", "base_model"], sort=False)["diff"].mean()
                for (metric, base_model), m in means.items():
                    ax.plot(m, labels[bench].index(f"{metric} · {base_model}"), "D", color="black", ms=4)
            ax.axvline(0, color="black", lw=0.8)
            ax.set_yticks(range(len(labels[bench])), labels[bench])
            ax.set_ylim(len(labels[bench]) - 0.5, -0.5)
            ax.set_title(bench, loc="left", fontsize=10)
        a, b = contrast.split("_vs_")
        axes[-1, 0].set_xlabel(f"difference {a} − {b} (95% CI; one point per seed)")
        _class_legend(fig)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def plot_heatmap(results: pd.DataFrame, contrast: str = MAIN_CONTRAST, clip_pct: float = HEATMAP_CLIP_PCT):
    """Heatmap model x metric of the seed-mean relative change in %, signed so that + = better.

    Cells are annotated with mean (and ± sd over seeds); colours saturate at ±clip_pct so that near-zero
    reference values (e.g. bias scores) do not wash out the rest.
    """
    s = seed_summary(results[results["contrast"] == contrast])
    if s.empty:
        return _empty_figure(f"no results for {contrast}")
    s["column"] = s["benchmark"] + "/" + s["metric"]
    cols = list(dict.fromkeys(s["column"]))
    values = s.pivot(index="base_model", columns="column", values="improvement_mean")[cols]
    s["text"] = [f"{m:+.1f}" + (f"\n±{sd:.1f}" if np.isfinite(sd) else "") if np.isfinite(m) else "n/a"
                 for m, sd in zip(s["improvement_mean"], s["improvement_sd"])]
    text = s.pivot(index="base_model", columns="column", values="text")[cols]
    finite = np.abs(values.to_numpy(float)[np.isfinite(values.to_numpy(float))])
    vlim = min(float(finite.max()), clip_pct) if finite.size and finite.max() > 0 else 1.0
    fig = Figure(figsize=(1.6 + 1.3 * len(cols), 1.6 + 0.6 * len(values)))
    ax = fig.subplots()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # seaborn 0.13 calls cmap.set_bad
        sns.heatmap(values, annot=text.to_numpy(), fmt="", cmap="RdYlGn", center=0, vmin=-vlim, vmax=vlim, ax=ax,
                    cbar_kws={"label": "relative change, % (+ = better)"}, linewidths=0.5)
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title(f"{contrast.replace('_vs_', ' vs ')}: relative change (mean over seeds)", fontsize=10)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
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
        return _empty_figure("no training logs")
    df = df.assign(run=_run_label(df))
    quantities = [q for q in TRAINING_QUANTITIES if q in df.columns and df[q].notna().any()]
    directions = list(dict.fromkeys(df["direction"]))
    runs = list(dict.fromkeys(df["run"]))
    colors = dict(zip(runs, sns.color_palette(n_colors=len(runs))))
    with sns.axes_style("whitegrid"):
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


def example_replies(records, n: int = 3, max_chars: int = 300, models=MODELS) -> pd.DataFrame:
    """Replies of base, human-like and reverse models to the same prompts: columns prompt + one per model.

    `records`: dicts or DataFrame with `prompt`, `model`, `completion`. Keeps the first `n` prompts that every
    model answered (first reply per model), in the order they appear; texts are cut at `max_chars`.
    """
    df = records.copy() if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    if df.empty:
        return pd.DataFrame(columns=["prompt", *models])
    df = df[df["model"].isin(models)].drop_duplicates(["prompt", "model"])
    wide = df.pivot(index="prompt", columns="model", values="completion")
    order = [p for p in dict.fromkeys(df["prompt"]) if all(m in wide.columns and pd.notna(wide.at[p, m]) for m in models)]
    out = wide.loc[order[:n], list(models)].reset_index()

    def cut(text):
        text = str(text)
        return text if len(text) <= max_chars else text[: max_chars - 1] + "…"

    return out.map(cut)


EXPRESSION_METRICS = ("feeling_expression", "affect_statements")
EXPRESSION_NOTE = (
    "Did the training change how the models talk? On the held-out prompts (never trained on), each model's greedy "
    "reply is scored by the evaluation judge (params eval_judge_model; by default the base model with the training "
    "judge's rubric and prompt, so this measures how the training reward carries over to new prompts, not an "
    "independent opinion) and by a judge-free count of first-person affect statements. Human-like − reverse should "
    "be positive on both; human-like − base positive and reverse − base negative. Reply length and the shares of "
    "empty, repetitive and cut-off replies are in notebook 04."
)


def expression_table(results: pd.DataFrame) -> pd.DataFrame:
    """The training target across the three contrasts: value of each model, difference, 95% CI and class (per seed)."""
    if results.empty:
        return pd.DataFrame()
    df = results[results["benchmark"].isin(EXPRESSION_METRICS)]
    cols = ["base_model", "seed", "contrast", "benchmark", "value_a", "value_b", "diff", "ci_low", "ci_high", "p_holm", "cls"]
    return df[cols].round(4).reset_index(drop=True)


def scale_note(profile: str, model_names, n_seeds: int, max_items: int) -> str:
    """The honest-scale paragraph: what this run can and cannot say about the paper's claims."""
    names = ", ".join(map(str, model_names)) or "unnamed"
    text = (f"Scale. The paper trained five models ({PAPER_MODELS}) and compared each human-like model with its "
            f"reversely trained counterpart on a broad benchmark suite. This report comes from profile "
            f"'{profile or 'unknown'}': model(s) {names}, {n_seeds} seed(s), at most {max_items} items per metric. "
            "The paper's rubric, prompts, hyperparameters and statistical test are not public, so ours are our own "
            "choices. ")
    smoke = "smoke" in profile.lower() or any("135m" in str(m).lower() for m in model_names)
    if smoke:
        text += ("A 135M smoke model says nothing about the paper's claims: this run only checks that the pipeline "
                 "works end to end, and no 'yes' or 'no' in the table below is evidence for or against the paper.")
    elif len(list(model_names)) < 5 or n_seeds < 3:
        text += ("With fewer than five models or fewer than three seeds, agreement or disagreement with the paper "
                 "is weak evidence.")
    else:
        text += "Read agreement as consistency with the paper's summaries, not as an exact replication."
    return text


METHODS = (
    "Methods. Items are paired across models by benchmark, item id and condition fields. Difference = metric of "
    "the first model − metric of the second; relative change = 100 × difference / |second|, signed so that "
    "+ = better for the improvement columns. 95% CIs: paired bootstrap over items (scipy.stats.bootstrap, BCa, "
    "percentile fallback where BCa is undefined). p-values: McNemar mid-p for per-item correctness, a sign-flip "
    "permutation test (or Wilcoxon signed-rank) for per-item scores, and the percentile-inversion bootstrap p for "
    "ratio statistics such as bias scores. Holm's correction runs across the metrics within each model × seed × "
    "contrast. A result is 'enhanced' or 'degraded' when its Holm-adjusted p < alpha and its CI excludes 0, "
    "'no significant change' otherwise. The paper's summary (share improved or degraded by < 2%, largest "
    "degradation) uses the seed-mean relative change; relative changes of values near 0 (bias scores) are unstable."
)


def _fmt(x, spec: str) -> str:
    """Number as text; 'n/a' for NaN / None."""
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def results_table(results: pd.DataFrame) -> pd.DataFrame:
    """The per-seed results, formatted for the report."""
    return pd.DataFrame({
        "model": results["base_model"].astype(str), "seed": results["seed"].astype(str),
        "contrast": results["contrast"], "metric": results["benchmark"] + "/" + results["metric"],
        "n": results["n_items"].astype(str),
        "A": [_fmt(v, ".3f") for v in results["value_a"]], "B": [_fmt(v, ".3f") for v in results["value_b"]],
        "diff": [_fmt(v, "+.3f") for v in results["diff"]],
        "95% CI": [f"[{_fmt(lo, '+.3f')}, {_fmt(hi, '+.3f')}]" for lo, hi in zip(results["ci_low"], results["ci_high"])],
        "improvement %": [_fmt(v, "+.1f") for v in results["improvement_pct"]],
        "test": results["test"], "p": [_fmt(v, ".3g") for v in results["p_value"]],
        "p (Holm)": [_fmt(v, ".3g") for v in results["p_holm"]], "class": results["cls"],
    })


def _class_counts(results: pd.DataFrame, contrast: str) -> pd.DataFrame:
    """Per model x metric: how many seeds landed in each class."""
    s = seed_summary(results[results["contrast"] == contrast])
    return pd.DataFrame({
        "model": s["base_model"].astype(str), "metric": s["benchmark"] + "/" + s["metric"],
        "seeds": s["n_seeds"].astype(str), "enhanced": s["n_enhanced"].astype(str),
        "degraded": s["n_degraded"].astype(str), "no significant change": s["n_no_change"].astype(str),
    })


def _summary_text(summ: dict) -> str:
    """The paper's summary numbers on our results, as one paragraph."""
    if not summ["n_results"]:
        return "No results with a defined relative change."
    worst = summ["largest_degradation"]
    worst_text = ("none of the results degraded" if worst is None else
                  f"the largest degradation is {worst['base_model']}, {worst['benchmark']}/{worst['metric']}, "
                  f"{worst['degradation_pct']:.1f}%")
    seeds = ", ".join(f"seed {k}: {_fmt(v, '.1f')}%" for k, v in summ["share_by_seed"].items())
    return (f"The paper's summary computed on ours ({summ['contrast'].replace('_vs_', ' vs ')}): "
            f"{summ['share_pct']:.1f}% of {summ['n_results']} model × metric results improved or degraded by less "
            f"than {summ['threshold_pct']:g}% (paper: 81.4%); per seed: {seeds}. {summ['n_degraded_over_10']} "
            f"degraded by more than 10% (paper: 1); {worst_text} (paper: Gemma 2 IT 2B, BBQ ambiguous accuracy, "
            f"15.0%). Relative changes undefined (reference 0): {summ['n_undefined']}.")


def _md_cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", "<br>")


def _md_table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(_md_cell(c) for c in df.columns) + " |"
    rule = "|" + "---|" * len(df.columns)
    rows = ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def _html_table(df: pd.DataFrame) -> str:
    cell = lambda x: html.escape(str(x)).replace("\n", "<br>")  # noqa: E731
    head = "".join(f"<th>{cell(c)}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in df.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def render_markdown(blocks: list[tuple]) -> str:
    """Blocks ("h1"|"h2"|"p", text), ("table", df), ("figure", file name, caption) as Markdown; figures in figures/."""
    out = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            out.append(("# " if kind == "h1" else "## ") + rest[0])
        elif kind == "p":
            out.append(rest[0])
        elif kind == "table":
            out.append(_md_table(rest[0]) if len(rest[0]) else "_(empty)_")
        elif kind == "figure":
            out.append(f"![{rest[1]}](figures/{rest[0]})\n\n*{rest[1]}*")
    return "\n\n".join(out) + "\n"


HTML_STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
              "table{border-collapse:collapse;font-size:0.85em;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;"
              "vertical-align:top}th{background:#f3f3f3}img{max-width:100%}figcaption{font-style:italic;color:#555}")


def render_html(blocks: list[tuple], images: dict[str, bytes], title: str) -> str:
    """The same blocks as one HTML page, figures embedded as base64 PNG (no external files)."""
    out = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{html.escape(rest[0])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{html.escape(rest[0])}</p>")
        elif kind == "table":
            out.append(_html_table(rest[0]) if len(rest[0]) else "<p><em>(empty)</em></p>")
        elif kind == "figure":
            data = base64.b64encode(images[rest[0]]).decode("ascii")
            out.append(f'<figure><img alt="{html.escape(rest[1])}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{html.escape(rest[1])}</figcaption></figure>")
    body = "\n".join(out)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{HTML_STYLE}</style></head><body>\n{body}\n</body></html>\n")


def _save_figure(fig, path: Path, dpi: int) -> bytes:
    """Save a figure as PNG (hmxnb.plots.savefig), return the bytes for embedding in the HTML."""
    from hmxnb.plots import savefig

    return savefig(fig, path, dpi).read_bytes()


def build_report(
    out_dir, results: pd.DataFrame, training_logs=None, examples=None, profile: str = "", model_names=(),
    claims=None, contrast: str = MAIN_CONTRAST, title: str | None = None, dpi: int = 110,
) -> dict[str, Path]:
    """Write the stand-alone report of a run into `out_dir`.

    Args:
        out_dir: folder (created), e.g. outputs/<profile>/05_compare_report.
        results: the table of `hmxnb.compare.compare`.
        training_logs: {direction: CSV path or DataFrame} of notebooks 02 / 03, or None.
        examples: records with prompt, model, completion (base / human / reverse), or None.
        profile, model_names: for the title and the honest-scale paragraph.
        claims: claim specs for `check_claims` (default: the paper's).
    Returns the paths written: report_md, report_html, comparisons_csv, summary_json and one per figure.
    """
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    title = title or f"HMX-feel replication report: profile {profile or 'unknown'}"
    model_names = list(model_names) or sorted(map(str, results["base_model"].unique()))
    n_seeds = int(results["seed"].nunique()) if len(results) else 0
    max_items = int(results["n_items"].max()) if len(results) else 0
    summ = paper_summary(results, contrast)
    a, b = contrast.split("_vs_")

    figures = {"forest.png": plot_forest(results, contrast), "heatmap.png": plot_heatmap(results, contrast)}
    if training_logs:
        figures["training_curves.png"] = plot_training_curves(training_logs)
    paths = {f"figure_{name[:-4]}": out / "figures" / name for name in figures}
    images = {name: _save_figure(fig, out / "figures" / name, dpi) for name, fig in figures.items()}

    blocks = [
        ("h1", title),
        ("p", scale_note(profile, model_names, n_seeds, max_items)),
        ("h2", "The paper's claims beside ours"),
        ("p", f"Main contrast: {a} vs {b}. 'agrees?' follows the rules in hmxnb.compare.check_claims."),
        ("table", check_claims(results, claims, contrast)),
        ("p", _summary_text(summ)),
        ("h2", "The training target: feeling expression on held-out prompts"),
        ("p", EXPRESSION_NOTE),
        ("table", expression_table(results)),
        ("h2", "Model × metric: relative change in % (+ = better), mean ± sd over seeds"),
        ("table", model_metric_table(results, contrast).reset_index()),
        ("table", _class_counts(results, contrast)),
        ("figure", "forest.png", f"Differences {a} − {b} with 95% paired-bootstrap CIs, one point per seed, "
                                 "coloured by class; black diamonds: seed means."),
        ("figure", "heatmap.png", f"Relative change {a} vs {b} in %, signed so that + = better; colours saturate "
                                  f"at ±{HEATMAP_CLIP_PCT:g}%."),
    ]
    if training_logs:
        blocks.append(("h2", "Training curves"))
        blocks.append(("figure", "training_curves.png", "Training of the human-like (02) and reverse (03) runs: "
                                                        "reward (band: ±reward_std within groups), KL and completion length where logged."))
    if examples is not None:
        blocks.append(("h2", "Example replies to the same held-out prompts"))
        blocks.append(("p", "Greedy replies of the base, human-like and reverse models, first prompts of the held-out set."))
        blocks.append(("table", example_replies(examples, n=5)))
    blocks += [
        ("h2", "All comparisons (per seed)"),
        ("table", results_table(results)),
        ("p", METHODS),
    ]

    paths["report_md"] = out / "report.md"
    paths["report_html"] = out / "report.html"
    paths["comparisons_csv"] = out / "comparisons.csv"
    paths["summary_json"] = out / "summary.json"
    save_text(render_markdown(blocks), paths["report_md"])
    save_text(render_html(blocks, images, title), paths["report_html"])
    save_text(results.to_csv(index=False), paths["comparisons_csv"])
    save_text(json.dumps(summ, indent=2, default=str), paths["summary_json"])
    return paths

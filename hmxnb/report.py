"""The stand-alone report of notebook 05: verdict, claims, example replies, then the details.

`build_report` writes `report.md` (figures linked from `figures/`), `report.html` (the same content with the
figures embedded as base64 PNG, no external files), `comparisons.csv` and `summary.json`. Both documents are
rendered from one list of blocks (hmxnb.render), so they always say the same thing. The figures come from
`hmxnb.plots`. `comparisons.csv` and `summary.json` are written here only (notebook 05 reads, never writes them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hmxnb import health
from hmxnb.artifacts import save_json, save_text
from hmxnb.claims import (PAPER_LARGEST, PAPER_SHARE_PCT, check_claims, fmt_change, model_metric_table, paper_summary,
                          seed_summary, verdict)
from hmxnb.compare import MAIN_CONTRAST, MODELS
from hmxnb.plots import HEATMAP_CLIP, load_training_logs, plot_forest, plot_heatmap, plot_training_curves, savefig
from hmxnb.render import render_html, render_markdown
from hmxnb.stats import BCA_MAX_N

PAPER_MODELS = "Qwen3-0.6B, Qwen3-4B, Qwen3-8B, Gemma 2 IT 2B and Llama 3.2 3B"


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


EXPRESSION_NOTE = (
    "Did the training change how the models talk? On the held-out prompts (never trained on), each model's greedy "
    "reply is scored by the evaluation judge (params eval_judge_model; by default the base model with the training "
    "judge's rubric and prompt, so this measures how the training reward carries over to new prompts, not an "
    "independent opinion) and by a judge-free count of first-person affect statements. Human-like − reverse should "
    "be positive on both; human-like − base positive and reverse − base negative. Reply length and the shares of "
    "empty, repetitive and cut-off replies are in notebook 04."
)


def _fmt(x, spec: str) -> str:
    """Number as text; 'n/a' for NaN / None."""
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def _ci_text(lo, hi) -> str:
    """'[-0.050, +0.020]', or 'n/a' without an interval."""
    return "n/a" if not (np.isfinite(lo) and np.isfinite(hi)) else f"[{lo:+.3f}, {hi:+.3f}]"


def expression_table(results: pd.DataFrame) -> pd.DataFrame:
    """The training target across the three contrasts: value of each model, difference, 95% CI and class (per seed)."""
    if results.empty:
        return pd.DataFrame()
    df = results[results["training_target"].astype(bool)]
    return pd.DataFrame({
        "model": df["base_model"].astype(str), "seed": df["seed"].astype(str),
        "contrast": df["contrast"].str.replace("_vs_", " vs "), "metric": df["benchmark"],
        "A": [_fmt(v, ".3f") for v in df["value_a"]], "B": [_fmt(v, ".3f") for v in df["value_b"]],
        "A − B [95% CI]": [_diff_text(d, lo, hi) for d, lo, hi in zip(df["diff"], df["ci_low"], df["ci_high"])],
        "p (Holm)": [_fmt(v, ".3g") for v in df["p_holm"]], "class": df["cls"],
    }).reset_index(drop=True)


# Which self-judge trained the models (params judge_mode), said in the scale paragraph.
JUDGE_NOTES = {
    "contrast": ("The training reward was a persona-contrast self-reward (our stand-in), not the paper's rubric "
                 "judgement: each model scored its own replies by how much more likely it found them from a speaker "
                 "who talks about their feelings, wishes and self than from a flat assistant (judge_mode: contrast), "
                 "reading no rubric and asked for no judgement. "),
    "probability": ("The training reward was a rubric judgement, as in the paper, with our own rubric: each model "
                    "scored its own replies 1-5 per criterion, read from its next-token probabilities "
                    "(judge_mode: probability). "),
    "generate": ("The training reward was a rubric judgement, as in the paper, with our own rubric: each model "
                 "wrote a 1-5 score per criterion for its own replies (judge_mode: generate). "),
}


def scale_note(profile: str, model_names, n_seeds: int, max_items: int, judge_mode: str | None = None) -> str:
    """The honest-scale paragraph: what this run can and cannot say about the paper's claims, and which self-judge
    trained the models (`judge_mode`; None: not known to the report, said so)."""
    names = ", ".join(map(str, model_names)) or "unnamed"
    text = (f"Scale. The paper trained five models ({PAPER_MODELS}) and compared each human-like model with its "
            f"reversely trained counterpart on a broad benchmark suite. This report comes from profile "
            f"'{profile or 'unknown'}': model(s) {names}, {n_seeds} seed(s), at most {max_items} items per metric. "
            "The paper's rubric, prompts, hyperparameters and statistical test are not public, so ours are our own "
            "choices. ")
    text += JUDGE_NOTES.get(judge_mode, "Which self-judge trained the models was not given to this report. ")
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
    "the first model − metric of the second. Change: relative change 100 × difference / |second| in % for "
    "accuracies and scores; percentage points (pp) for rates and bias scores (flip rate, accuracy drop, "
    "sycophancy rate, |bias|), whose relative change explodes near 0. Improvement = change signed so that "
    "+ = better. 95% CIs: paired bootstrap over items (scipy.stats.bootstrap; BCa up to "
    f"{BCA_MAX_N} items, percentile "
    "above that and where BCa is undefined; the ci_method column of comparisons.csv says which); an item's "
    "records (e.g. answer before and after 'are you sure?') are resampled together. p-values: McNemar mid-p for "
    "per-item correctness, a sign-flip permutation test (or Wilcoxon signed-rank) for per-item scores, and the "
    "percentile-inversion bootstrap p for ratio statistics such as bias scores. Holm's correction runs across the "
    "metrics within each model × seed × contrast. A result is 'enhanced' or 'degraded' when its Holm-adjusted "
    "p < alpha and its CI excludes 0, 'no significant change' otherwise; 'not measured' (no items) and "
    "'undefined' (no value, e.g. a BBQ bias score when every answer is 'unknown') are listed and never counted. "
    "The paper's summary (share improved or degraded by < 2, largest degradation) uses seed means and leaves the "
    "training target out."
)


def _diff_text(d, lo, hi) -> str:
    """'+0.037 [+0.011, +0.069]', or 'n/a' when nothing was measured."""
    return "n/a" if not np.isfinite(d) else f"{d:+.3f} {_ci_text(lo, hi)}"


def results_table(results: pd.DataFrame) -> pd.DataFrame:
    """The per-seed results, formatted; model, seed and contrast columns only where they vary."""
    table = pd.DataFrame({
        "model": results["base_model"].astype(str), "seed": results["seed"].astype(str),
        "contrast": results["contrast"].str.replace("_vs_", " vs "), "metric": results["benchmark"] + "/" + results["metric"],
        "n": results["n_items"].astype(str),
        "A": [_fmt(v, ".3f") for v in results["value_a"]], "B": [_fmt(v, ".3f") for v in results["value_b"]],
        "A − B [95% CI]": [_diff_text(d, lo, hi) for d, lo, hi in zip(results["diff"], results["ci_low"], results["ci_high"])],
        "improvement": [fmt_change(v, u) for v, u in zip(results["improvement"], results["change_unit"])],
        "test": results["test"], "p (Holm)": [_fmt(v, ".3g") for v in results["p_holm"]], "class": results["cls"],
    })
    return table.drop(columns=[c for c in ("model", "seed", "contrast") if table[c].nunique() <= 1])


def _class_counts(results: pd.DataFrame, contrast: str) -> pd.DataFrame:
    """Per model x metric: how many seeds landed in each class (and how many were left out)."""
    s = seed_summary(results[results["contrast"] == contrast])
    return pd.DataFrame({
        "model": s["base_model"].astype(str), "metric": s["benchmark"] + "/" + s["metric"],
        "seeds": s["n_seeds"].astype(str), "enhanced": s["n_enhanced"].astype(str),
        "degraded": s["n_degraded"].astype(str), "no significant change": s["n_no_change"].astype(str),
        "undefined / not measured": (s["n_undefined"] + s["n_not_measured"]).astype(str),
    })


def _summary_text(summ: dict) -> str:
    """The paper's summary numbers on our results, as one paragraph."""
    left = (f"Left out: {summ['n_not_measured']} not measured, {summ['n_undefined']} without a defined change (no value, "
            "or a relative change from 0), and the training target.")
    if not summ["n_results"]:
        return "No results with a defined change. " + left
    worst = summ["largest_degradation"]
    worst_text = ("none of the results degraded" if worst is None else
                  f"the largest degradation is {worst['base_model']}, {worst['benchmark']}/{worst['metric']}, "
                  f"{fmt_change(-worst['degradation'], worst['unit'])}")
    seeds = ", ".join(f"seed {k}: {_fmt(v, '.1f')}%" for k, v in summ["share_by_seed"].items())
    t, p = summ["threshold"], PAPER_LARGEST
    return (f"The paper's summary computed on ours ({summ['contrast'].replace('_vs_', ' vs ')}): "
            f"{summ['share_pct']:.1f}% of {summ['n_results']} model × metric results improved or degraded by less "
            f"than {t:g}% (accuracies and scores, relative) or {t:g} pp (rates and bias scores) (paper: "
            f"{PAPER_SHARE_PCT}%); per seed: {seeds}. {summ['n_degraded_over_10']} degraded by more than 10 (paper: 1); "
            f"{worst_text} (paper: {p['base_model']}, BBQ {p['metric']}, -{p['degradation_pct']}%). " + left)


def training_warnings(training_logs: dict) -> list[str]:
    """hmxnb.health's line for every run that did not learn (most completions masked, or a ~0 gradient)."""
    log = load_training_logs(training_logs)  # the logs as the training figure reads them, a `direction` column added
    keys = ["direction", *(k for k in ("base_model", "seed") if k in log)]
    runs = ((key if isinstance(key, tuple) else (key,), run) for key, run in log.groupby(keys, sort=False))
    return [line for key, run in runs if (line := health.warning(run, ", ".join(str(k) for k in key)))]


def _report_blocks(results, summ, training_logs, examples, scale: str, claims, contrast: str) -> list[tuple]:
    """The report in reading order: verdict, scale, claims, example replies, training target, then the details."""
    a, b = contrast.split("_vs_")
    blocks = [
        ("verdict", verdict(results, contrast)),
        ("p", scale),
        ("h2", "The paper's claims beside ours"),
        ("p", f"Main contrast: {a} vs {b}. 'agrees?' follows the rules in hmxnb.claims.check_claims."),
        ("table", check_claims(results, claims, contrast)),
        ("p", _summary_text(summ)),
    ]
    if examples is not None:
        blocks += [("h2", "What the models say: replies to the same held-out prompts"),
                   ("p", "Greedy replies of the base, human-like and reverse models, first prompts of the held-out set."),
                   ("table", example_replies(examples, n=5))]
    blocks += [
        ("h2", "The training target: feeling expression on held-out prompts"), ("p", EXPRESSION_NOTE),
        ("table", expression_table(results)),
        ("h2", f"Every metric, {a} vs {b}: improvement (+ = better), mean ± sd over seeds"),
        ("p", "% = relative change (accuracies and scores); pp = percentage points (rates and bias scores)."),
        ("table", model_metric_table(results, contrast).reset_index()), ("table", _class_counts(results, contrast)),
        ("figure", "forest.png", f"Differences {a} − {b} with 95% paired-bootstrap CIs, one point per seed, "
                                 "coloured by class; black diamonds: seed means."),
        ("figure", "heatmap.png", f"Improvement {a} vs {b}, % or pp as labelled, signed so that + = better; colours "
                                  f"saturate at ±{HEATMAP_CLIP:g}."),
    ]
    if training_logs:
        blocks += [("h2", "Training curves"), *[("p", f"WARNING: {w}") for w in training_warnings(training_logs)],
                   ("figure", "training_curves.png", "Training of the human-like (02) and reverse (03) runs: reward "
                                                     "(band: ±reward_std within groups), KL and completion length where logged.")]
    blocks.append(("h2", "All comparisons (per seed)"))
    for name, rows in results.groupby("contrast", sort=False):
        blocks += [("h3", name.replace("_vs_", " vs ")), ("table", results_table(rows))]
    return blocks + [("p", METHODS)]


def build_report(
    out_dir, results: pd.DataFrame, training_logs=None, examples=None, profile: str = "", model_names=(),
    claims=None, contrast: str = MAIN_CONTRAST, title: str | None = None, dpi: int = 110, left_out=None,
    judge_mode: str | None = None,
) -> dict[str, Path]:
    """Write the stand-alone report of a run into `out_dir`.

    Args:
        out_dir: folder (created), e.g. outputs/<profile>/05_compare_report.
        results: the table of `hmxnb.compare.compare`.
        training_logs: {direction: CSV path or DataFrame} of notebooks 02 / 03, or None.
        examples: records with prompt, model, completion (base / human / reverse), or None.
        profile, model_names: for the title and the honest-scale paragraph.
        claims: claim specs for `check_claims` (default: the paper's).
        left_out: {sweep member: status} of members not compared (failed, missing, ...), said at the top.
        judge_mode: params `judge_mode` of the training runs, named in the scale paragraph; None: the one recorded
            in out_dir/provenance.json (notebook 05 writes it before building the report), if any.
    Returns the paths written: report_md, report_html, comparisons_csv, summary_json and one per figure.
    """
    out = Path(out_dir)
    title = title or f"HMX-feel replication report: profile {profile or 'unknown'}"
    model_names = list(model_names) or sorted(map(str, results["base_model"].unique()))
    n_seeds = int(results["seed"].nunique()) if len(results) else 0
    max_items = int(results["n_items"].max()) if len(results) else 0
    summ = paper_summary(results, contrast)
    paths, images = _write_figures(out, results, training_logs, contrast, dpi)
    scale = scale_note(profile, model_names, n_seeds, max_items, judge_mode or recorded_judge_mode(out))
    blocks = [("h1", title)] + _report_blocks(results, summ, training_logs, examples, scale, claims, contrast)
    if left_out:
        blocks.insert(1, ("p", "Not compared: " + ", ".join(f"{m} ({s})" for m, s in left_out.items())
                          + ". Their step folders keep the executed notebooks and errors; `python -m hmxnb run "
                            "--member NAME` re-runs one."))
    paths.update({k: out / f for k, f in (("report_md", "report.md"), ("report_html", "report.html"),
                                           ("comparisons_csv", "comparisons.csv"), ("summary_json", "summary.json"))})
    save_text(render_markdown(blocks), paths["report_md"])
    save_text(render_html(blocks, images, title), paths["report_html"])
    save_text(results.to_csv(index=False), paths["comparisons_csv"])
    save_json(summ, paths["summary_json"])  # NaN written as null: valid JSON
    return paths


def recorded_judge_mode(out_dir: Path) -> str | None:
    """params `judge_mode` in the step's provenance.json (hmxnb.artifacts.write_provenance), or None without one."""
    import json

    path = Path(out_dir) / "provenance.json"
    return json.loads(path.read_text()).get("params", {}).get("judge_mode") if path.is_file() else None


def _write_figures(out: Path, results, training_logs, contrast: str, dpi: int) -> tuple[dict, dict]:
    """The report's figures under out/figures/: ({figure_<name>: path}, {file name: PNG bytes})."""
    figures = {"forest.png": plot_forest(results, contrast), "heatmap.png": plot_heatmap(results, contrast)}
    if training_logs:
        figures["training_curves.png"] = plot_training_curves(training_logs)
    paths = {f"figure_{name[:-4]}": out / "figures" / name for name in figures}
    images = {name: savefig(fig, out / "figures" / name, dpi).read_bytes() for name, fig in figures.items()}
    return paths, images

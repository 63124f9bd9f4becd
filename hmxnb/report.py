"""The stand-alone report of notebook 05: verdict, claims, example replies, then the details.

`build_report` writes `report.md` (figures linked from `figures/`), `report.html` (the same content with the
figures embedded as base64 PNG, no external files), `comparisons.csv` and `summary.json`, and, with `publish_to`,
the two reports again at the profile's top (outputs/<profile>/). Both documents are rendered from one list of blocks
("its markup" below), so they always say the same thing; every file is written atomically. The figures come from
`hmxnb.plots`, the paragraphs ("its paragraphs": the training-target note, the
honest-scale note naming the self-judge that trained the models, the paper's summary on our numbers, training
warnings, the methods) are prose around the numbers of hmxnb.aggregate and hmxnb.claims. `comparisons.csv` and
`summary.json` are written here only (notebook 05 reads, never writes them).

Blocks: ("h1"|"h2"|"h3"|"p"|"verdict", text), ("table", DataFrame), ("figure", file name, caption); Markdown, and one
stand-alone HTML page (figures embedded, wide tables scroll in the page).

The opening paragraph, the verdict, says in words what moved in a contrast, with 95% CIs, from the per-seed rows. The
training target (feeling expression) comes first, then whether a model writes more degenerate text than the
other (the degenerate-form rows: repeated sentences, stock formulas, distinct-2, length), then the other measured
results: the enhanced and degraded ones listed with their numbers, the rest counted. Rows not measured or undefined
are named, never counted.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

import numpy as np
import pandas as pd

from hmxnb import health, stats
from hmxnb.aggregate import model_metric_table, paper_summary, seed_summary
from hmxnb.artifacts import run_params, save_json, save_text
from hmxnb.bench.expression import AFFECT, SECOND
from hmxnb.claims import check_claims
from hmxnb.compare import CONTRASTS, MAIN_CONTRAST, MODELS, benchmark_rows, is_form, measured
from hmxnb.formatting import diff_text, fmt, fmt_change, num
from hmxnb.paper import PAPER_LARGEST, PAPER_MODELS, PAPER_SHARE_PCT
from hmxnb.params import second_judge_mode
from hmxnb.plots import HEATMAP_CLIP, load_training_logs, plot_forest, plot_heatmap, plot_training_curves, savefig
from hmxnb.stats import BCA_MAX_N
from hmxnb.steps import BENCHMARKS, TRAINING
from hmxnb.textform import form_watch

# ---------------------------------------------------------------- the report, block by block

# ---------------------------------------------------------------- the report, block by block

def example_replies(records, n: int = 3, max_chars: int = 300, models=MODELS, most_different: int = 0) -> pd.DataFrame:
    """Replies of base, human-like and reverse models to the same prompts: columns prompt + one per model + `shown`.

    `records`: dicts or DataFrame with `prompt`, `model`, `completion` (and `score`, the judge's reward). Keeps the
    first `n` prompts that every model answered (first reply per model), in the order they appear, then the
    `most_different` other prompts with the largest judge-score gap between the models (max − min of `score`),
    largest first; `shown` says which. Texts are cut at `max_chars`.
    """
    df = records.copy() if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    if df.empty:
        return pd.DataFrame(columns=["prompt", *models, "shown"])
    df = df[df["model"].isin(models)].drop_duplicates(["prompt", "model"])
    wide = df.pivot(index="prompt", columns="model", values="completion")
    order = [p for p in dict.fromkeys(df["prompt"])
             if all(m in wide.columns and pd.notna(wide.at[p, m]) for m in models)]
    shown = {p: "first prompts" for p in order[:n]}
    if most_different and "score" in df:
        scores = df.pivot(index="prompt", columns="model", values="score").reindex(order).astype(float)
        gap = (scores.max(axis=1) - scores.min(axis=1)).drop(list(shown)).dropna().sort_values(ascending=False)
        shown.update({p: f"judge-score gap {g:.2f}" for p, g in gap.head(most_different).items()})
    out = wide.loc[list(shown), list(models)].reset_index()
    out["shown"] = list(shown.values())

    def cut(text):
        text = str(text)
        return text if len(text) <= max_chars else text[: max_chars - 1] + "…"

    return out.map(cut)


def expression_table(results: pd.DataFrame) -> pd.DataFrame:
    """The training target across the three contrasts: value of each model, difference, 95% CI and class (per seed)."""
    if results.empty:
        return pd.DataFrame()
    return _contrast_rows(results[results["training_target"].astype(bool)])


def form_table(results: pd.DataFrame) -> pd.DataFrame:
    """The degenerate-form rows across the three contrasts, as `expression_table` (Holm within the form family)."""
    return pd.DataFrame() if results.empty else _contrast_rows(results[is_form(results)])


def _contrast_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of a results table: model, seed, contrast, metric, values, difference with CI, Holm p, class."""
    return pd.DataFrame({
        "model": df["base_model"].astype(str), "seed": df["seed"].astype(str),
        "contrast": df["contrast"].str.replace("_vs_", " vs "), "metric": df["benchmark"],
        "A": [fmt(v, ".3f") for v in df["value_a"]], "B": [fmt(v, ".3f") for v in df["value_b"]],
        "A − B [95% CI]": [diff_text(d, lo, hi) for d, lo, hi in zip(df["diff"], df["ci_low"], df["ci_high"])],
        "p (Holm)": [fmt(v, ".3g") for v in df["p_holm"]], "class": df["cls"],
    }).reset_index(drop=True)


def results_table(results: pd.DataFrame) -> pd.DataFrame:
    """The per-seed results, formatted; model, seed and contrast columns only where they vary."""
    diffs = zip(results["diff"], results["ci_low"], results["ci_high"])
    table = pd.DataFrame({
        "model": results["base_model"].astype(str), "seed": results["seed"].astype(str),
        "contrast": results["contrast"].str.replace("_vs_", " vs "),
        "metric": results["benchmark"] + "/" + results["metric"], "n": results["n_items"].astype(str),
        "A": [fmt(v, ".3f") for v in results["value_a"]], "B": [fmt(v, ".3f") for v in results["value_b"]],
        "A − B [95% CI]": [diff_text(d, lo, hi) for d, lo, hi in diffs],
        "improvement": [fmt_change(v, u) for v, u in zip(results["improvement"], results["change_unit"])],
        "test": results["test"], "p (Holm)": [fmt(v, ".3g") for v in results["p_holm"]], "class": results["cls"],
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


def _example_blocks(examples, results: pd.DataFrame) -> list[tuple]:
    """Example replies (first and most different prompts) and the reward-hacking watch on held-out replies."""
    return [("h2", "What the models say: replies to the same held-out prompts"),
            ("p", "Greedy replies of the base, human-like and reverse models: the first prompts of the held-out set, "
                  "then the prompts where the evaluation judge's scores of the three replies differ most."),
            ("table", example_replies(examples, n=3, most_different=5)),
            ("h2", "Reward-hacking watch on the held-out replies"),
            ("p", FORM_NOTE), ("table", form_watch(examples).reset_index()),
            ("table", form_table(results))]


def _report_blocks(results, summ, training_logs, examples, scale: str, claims, contrast: str,
                   second_mode: str | None = None) -> list[tuple]:
    """The report in reading order: verdict, scale, claims, example replies, training target, then the details."""
    a, b = contrast.split("_vs_")
    blocks = [
        ("verdict", verdict(results, contrast)),
        ("p", scale),
        ("h2", "The paper's claims beside ours"),
        ("p", f"Main contrast: {a} vs {b}. 'agrees?' follows the rules in hmxnb.claims.check_claims."),
        ("table", check_claims(results, claims, contrast)),
        ("p", summary_text(summ)),
    ]
    if examples is not None:
        blocks += _example_blocks(examples, results)
    blocks += [
        ("h2", "The training target: feeling expression on held-out prompts"), ("p", expression_note(second_mode)),
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
        caption = ("Training of the human-like (02) and reverse (03) runs: reward (band: ±reward_std within groups), "
                   "KL and completion length where logged.")
        blocks += [("h2", "Training curves"), *[("p", f"WARNING: {w}") for w in training_warnings(training_logs)],
                   ("figure", "training_curves.png", caption)]
    blocks.append(("h2", "All comparisons (per seed)"))
    for name, rows in results.groupby("contrast", sort=False):
        blocks += [("h3", name.replace("_vs_", " vs ")), ("table", results_table(rows))]
    return blocks + [("p", METHODS)]


def build_report(
    out_dir, results: pd.DataFrame, training_logs=None, examples=None, profile: str = "", model_names=(),
    claims=None, contrast: str = MAIN_CONTRAST, title: str | None = None, dpi: int = 110, left_out=None,
    judge_mode: str | None = None, publish_to=None, runs=None,
) -> dict[str, Path]:
    """Write the stand-alone report of a run into `out_dir` (and, with `publish_to`, its two documents there).

    Args:
        out_dir: folder (created), e.g. outputs/<profile>/05_compare_report.
        results: the table of `hmxnb.compare.compare`.
        training_logs: {direction: CSV path or DataFrame} of notebooks 02 / 03, or None.
        examples: records with prompt, model, completion (base / human / reverse), or None.
        profile, model_names: for the title and the honest-scale paragraph.
        claims: claim specs for `check_claims` (default: the paper's).
        left_out: {sweep member: status} of members not compared (failed, missing, ...), said at the top.
        judge_mode: params `judge_mode` of the training runs, named in the scale paragraph; None: the one the
            training steps (02/03) of `runs` recorded in their provenance.json.
        runs: the run folders compared (hmxnb.artifacts.find_runs). Training and evaluation are described from
            their own records (02's and 04's provenance.json; None: from out_dir/provenance.json, notebook 05's own
            params); where the params the adapters were trained with differ from out_dir/provenance.json's, the
            report says so at the top.
        publish_to: a folder that gets the reports too (notebook 05: outputs/<profile>/), see `publish`.
    Returns the paths written: report_md, report_html, comparisons_csv, summary_json, one per figure, and with
    `publish_to` published_md and published_html.
    """
    out = Path(out_dir)
    title = title or f"HMX-feel replication report: profile {profile or 'unknown'}"
    summ = paper_summary(results, contrast)
    paths, images = _write_figures(out, results, training_logs, contrast, dpi)
    trained, evaluated = step_params(runs or [], TRAINING["human"]), step_params(runs or [], BENCHMARKS)
    scale = _scale(out, results, profile, model_names, judge_mode or _one(p.get("judge_mode") for p in trained))
    mismatch = params_mismatch(trained, _recorded_params(out))
    second = _one(second_judge_mode(p) for p in evaluated) if evaluated else recorded_second_judge(out)
    blocks = [("h1", title), *_left_out_note(left_out), *([("p", mismatch)] if mismatch else []),
              *_report_blocks(results, summ, training_logs, examples, scale, claims, contrast, second)]
    documents = {"report.md": render_markdown(blocks), "report.html": render_html(blocks, images, title)}
    paths.update({k: out / f for k, f in (("report_md", "report.md"), ("report_html", "report.html"),
                                           ("comparisons_csv", "comparisons.csv"), ("summary_json", "summary.json"))})
    save_text(documents["report.md"], paths["report_md"])
    save_text(documents["report.html"], paths["report_html"])
    save_text(results.to_csv(index=False), paths["comparisons_csv"])
    save_json(summ, paths["summary_json"])  # NaN written as null: valid JSON
    if publish_to is not None:
        paths.update(publish(out, documents, publish_to))
    return paths


def publish(out_dir, documents: dict[str, str], to) -> dict[str, Path]:
    """The reports written again into folder `to`, atomically: report.md with its figure links pointing into
    `out_dir`'s figures (relative to `to`), report.html as it is (its figures are embedded).

    Notebook 05 publishes to outputs/<profile>/, where readers look first; the step folder keeps the originals.
    Returns {published_md, published_html}.
    """
    to = Path(to)
    figures = Path(os.path.relpath(Path(out_dir) / "figures", to)).as_posix()
    markdown = documents["report.md"].replace("](figures/", f"]({figures}/")
    return {"published_md": save_text(markdown, to / "report.md"),
            "published_html": save_text(documents["report.html"], to / "report.html")}


def _scale(out: Path, results: pd.DataFrame, profile: str, model_names, judge_mode: str | None) -> str:
    """The honest-scale paragraph for these results (models, seeds, items; the judge given or recorded in `out`)."""
    model_names = list(model_names) or sorted(map(str, results["base_model"].unique()))
    n_seeds = int(results["seed"].nunique()) if len(results) else 0
    max_items = int(results["n_items"].max()) if len(results) else 0
    return scale_note(profile, model_names, n_seeds, max_items, judge_mode or recorded_judge_mode(out))


def _left_out_note(left_out) -> list[tuple]:
    """The paragraph naming the sweep members not compared, or nothing when every member was."""
    if not left_out:
        return []
    return [("p", "Not compared: " + ", ".join(f"{m} ({s})" for m, s in left_out.items())
             + ". Their step folders keep the executed notebooks and errors; `python -m hmxnb run "
               "--member NAME` re-runs one.")]


def _recorded_params(out_dir: Path) -> dict:
    """params in the step's provenance.json (hmxnb.artifacts.write_provenance), or {} without one."""
    import json

    path = Path(out_dir) / "provenance.json"
    return json.loads(path.read_text()).get("params", {}) if path.is_file() else {}


def step_params(runs, step: str) -> list[dict]:
    """The params each run's `step` recorded (its provenance.json); runs without that record are left out."""
    return [run_params(r, step) for r in runs if (Path(r) / step / "provenance.json").is_file()]


def _one(values):
    """The value all of these share; None when they differ or there are none."""
    found = set(values)
    return found.pop() if len(found) == 1 else None


def recorded_judge_mode(out_dir: Path) -> str | None:
    """params `judge_mode` in the step's provenance.json, or None without one."""
    return _recorded_params(out_dir).get("judge_mode")


def recorded_second_judge(out_dir: Path) -> str | None:
    """The second evaluation judge's mode of the recorded params ("auto" resolved; "" = none), or None without it."""
    p = _recorded_params(out_dir)
    return second_judge_mode(p) if {"eval_second_judge_mode", "judge_mode"} <= set(p) else None


def _write_figures(out: Path, results, training_logs, contrast: str, dpi: int) -> tuple[dict, dict]:
    """The report's figures under out/figures/: ({figure_<name>: path}, {file name: PNG bytes})."""
    figures = {"forest.png": plot_forest(results, contrast), "heatmap.png": plot_heatmap(results, contrast)}
    if training_logs:
        figures["training_curves.png"] = plot_training_curves(training_logs)
    paths = {f"figure_{name[:-4]}": out / "figures" / name for name in figures}
    images = {name: savefig(fig, out / "figures" / name, dpi).read_bytes() for name, fig in figures.items()}
    return paths, images


# ---------------------------------------------------------------- its paragraphs

EXPRESSION_NOTE = (
    "Did the training change how the models talk? On the held-out prompts (never trained on), each model's greedy "
    "reply is scored by the evaluation judge (params eval_judge_model; by default the base model with the training "
    "judge's rubric and prompt, so this measures how the training reward carries over to new prompts, not an "
    "independent opinion), by a second evaluation judge (params eval_second_judge_mode: the same judging model in "
    "another judge design, where set) and by a judge-free count of first-person affect statements. Both judges read "
    "each reply's distinct sentences; the count takes each distinct sentence once and cuts stock formulas "
    "(apologies, AI disclaimers, help offers) out first, so neither repetition nor formulas buy expression. "
    "Human-like − reverse should be positive on all of them; human-like − base positive and reverse − base negative."
)

FORM_NOTE = (
    "What a self-judge can be paid for without any feeling being stated: replies that repeat a sentence or clause, "
    "stock formulas (apology, AI disclaimer, help offer: hmxnb.textform), few distinct word pairs, short replies. "
    "Shares with 95% Wilson intervals, per model; below, each compared between models as a degenerate-form row "
    "(Holm-corrected as a family of its own; 'degraded' = more degenerate). The openers of each model and the "
    "replies that lost credit are in notebook 04."
)

# the second evaluation judge's design in words (expression_note)
SECOND_JUDGE_WORDS = {"contrast": "the persona contrast", "request": "the request contrast",
                      "probability": "the rubric judgement read from probabilities",
                      "generate": "the rubric judgement written out"}


def expression_note(second_mode: str | None = None) -> str:
    """EXPRESSION_NOTE, and which second evaluation judge ran (params eval_second_judge_mode, "auto" resolved; None:
    not known to the report, nothing added)."""
    if second_mode is None:
        return EXPRESSION_NOTE
    if not second_mode:
        return EXPRESSION_NOTE + " No second evaluation judge ran here (eval_second_judge_mode: '')."
    return (EXPRESSION_NOTE + f" The second evaluation judge here: {SECOND_JUDGE_WORDS[second_mode]} "
            f"(judge_mode {second_mode}), scored by the same judging model.")


JUDGE_NOTES = {
    "contrast": ("The training reward was a persona-contrast self-reward (our stand-in), not the paper's rubric "
                 "judgement: each model scored its own replies by how much more likely it found them from a speaker "
                 "who talks about their feelings, wishes and self than from a flat assistant (judge_mode: contrast), "
                 "reading no rubric and asked for no judgement. "),
    "request": ("The training reward was a request-contrast self-reward (our stand-in), not the paper's rubric "
                "judgement: each model scored its own replies by how much more likely it found them as its answer "
                "when the user had also asked how it feels than when not (judge_mode: request), reading no rubric "
                "and asked for no judgement. "),
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


def summary_text(summ: dict) -> str:
    """The paper's summary numbers on our results, as one paragraph."""
    left = (f"Left out: {summ['n_not_measured']} not measured, {summ['n_undefined']} without a defined change "
            "(no value, or a relative change from 0), and the training target.")
    if not summ["n_results"]:
        return "No results with a defined change. " + left
    worst = summ["largest_degradation"]
    worst_text = ("none of the results degraded" if worst is None else
                  f"the largest degradation is {worst['base_model']}, {worst['benchmark']}/{worst['metric']}, "
                  f"{fmt_change(-worst['degradation'], worst['unit'])}")
    seeds = ", ".join(f"seed {k}: {fmt(v, '.1f')}%" for k, v in summ["share_by_seed"].items())
    t, p = summ["threshold"], PAPER_LARGEST
    return (f"The paper's summary computed on ours ({summ['contrast'].replace('_vs_', ' vs ')}): "
            f"{summ['share_pct']:.1f}% of {summ['n_results']} model × metric results improved or degraded by less "
            f"than {t:g}% (accuracies and scores, relative) or {t:g} pp (rates and bias scores) (paper: "
            f"{PAPER_SHARE_PCT}%); per seed: {seeds}. {summ['n_degraded_over_10']} degraded by more than 10 "
            f"(paper: 1); {worst_text} (paper: {p['base_model']}, BBQ {p['metric']}, -{p['degradation_pct']}%). "
            + left)


def training_warnings(training_logs: dict) -> list[str]:
    """hmxnb.health's line for every run that did not learn (most completions masked, or a ~0 gradient)."""
    log = load_training_logs(training_logs)  # the logs as the training figure reads them, a `direction` column added
    keys = ["direction", *(k for k in ("base_model", "seed") if k in log)]
    runs = ((key if isinstance(key, tuple) else (key,), run) for key, run in log.groupby(keys, sort=False))
    return [line for key, run in runs if (line := health.warning(run, ", ".join(str(k) for k in key)))]


# keys only the evaluation and the comparison read: setting them for notebooks 04 / 05 leaves training as it was
NOT_TRAINING = ("data_dir", "bench_limit", "bench_batch_size", "eval_max_new_tokens", "eval_judge_model",
                "eval_second_judge_mode", "bootstrap_resamples", "alpha")


def params_mismatch(trained: list[dict], now: dict, limit: int = 6) -> str:
    """The paragraph saying which params the evaluated adapters were trained with that differ from the params this
    report was built with (`now`); '' when none differ or either is unknown. Scheduling keys and evaluation-only
    keys are left out."""
    if not trained or not now:
        return ""
    skip = {*NOT_TRAINING, *(k for k in now if k.startswith("slurm_"))}
    diff = sorted({k for p in trained for k in p if k not in skip and k in now and p[k] != now[k]})
    if not diff:
        return ""

    def was(key: str) -> str:
        values = {repr(p.get(key)) for p in trained}
        return values.pop() if len(values) == 1 else "several values"

    shown = "; ".join(f"{k} {was(k)} in training, {now[k]!r} here" for k in diff[:limit])
    more = f" and {len(diff) - limit} more" if len(diff) > limit else ""
    return (f"Params differ from training. The adapters compared here were trained (steps 02/03) with params that "
            f"differ from the ones this report was built with: {shown}{more}. Training is described as it was "
            "recorded (its provenance.json); re-run from 02 for a report whose params are the training's.")


# ---------------------------------------------------------------- its markup: Markdown and HTML

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
    """Blocks ("h1"|"h2"|"h3"|"p"|"verdict", text), ("table", df), ("figure", file name, caption) as Markdown; figures
    in figures/; the verdict as a block quote."""
    out = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + rest[0])
        elif kind in ("p", "verdict"):
            out.append(("> " if kind == "verdict" else "") + rest[0])
        elif kind == "table":
            out.append(_md_table(rest[0]) if len(rest[0]) else "_(empty)_")
        elif kind == "figure":
            out.append(f"![{rest[1]}](figures/{rest[0]})\n\n*{rest[1]}*")
    return "\n\n".join(out) + "\n"


HTML_STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
              ".table{overflow-x:auto;margin:1em 0}table{border-collapse:collapse;font-size:0.85em}"
              "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left}th{background:#f3f3f3}"
              "img{max-width:100%}figcaption{font-style:italic;color:#555}p.verdict{font-size:1.05em;"
              "background:#f6f8fa;border-left:4px solid #2a9d8f;padding:0.6em 1em}")


def render_html(blocks: list[tuple], images: dict[str, bytes], title: str) -> str:
    """The same blocks as one HTML page, figures embedded as base64 PNG (no external files); wide tables scroll
    inside the page instead of running off its right edge."""
    out = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{html.escape(rest[0])}</{kind}>")
        elif kind in ("p", "verdict"):
            attr = ' class="verdict"' if kind == "verdict" else ""
            out.append(f"<p{attr}>{html.escape(rest[0])}</p>")
        elif kind == "table":
            table = f'<div class="table">{_html_table(rest[0])}</div>'
            out.append(table if len(rest[0]) else "<p><em>(empty)</em></p>")
        elif kind == "figure":
            data = base64.b64encode(images[rest[0]]).decode("ascii")
            out.append(f'<figure><img alt="{html.escape(rest[1])}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{html.escape(rest[1])}</figcaption></figure>")
    body = "\n".join(out)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{HTML_STYLE}</style></head><body>\n{body}\n</body></html>\n")


# ---------------------------------------------------------------- the opening paragraph: the verdict

def _moved(r, several: bool) -> str:
    """One result in words: 'bbq/acc_ambig: 0.410 vs 0.460, difference -0.050 (95% CI -0.090 to -0.010, -10.9%)'."""
    who = f" ({r.base_model}, seed {r.seed})" if several else ""
    change = f", {fmt_change(r.change, r.change_unit)}" if np.isfinite(r.change) else ""
    ci = f"95% CI {num(r.ci_low, '+')} to {num(r.ci_high, '+')}" if np.isfinite(r.ci_low) else "no CI"
    values = f"{num(r.value_a)} vs {num(r.value_b)}, difference {num(r.diff, '+')}"
    return f"{r.benchmark}/{r.metric}{who}: {values} ({ci}{change})"


def _listing(rows: pd.DataFrame, several: bool, limit: int = 6) -> str:
    """Up to `limit` results in words, the largest improvements in size first, and how many more."""
    rows = rows.reindex(rows["improvement"].abs().sort_values(ascending=False).index)
    text = "; ".join(_moved(r, several) for r in rows.head(limit).itertuples())
    return text + (f"; and {len(rows) - limit} more" if len(rows) > limit else "")


def _target_sentence(target: pd.DataFrame, several: bool) -> str:
    """The training target in words: what moved, or that nothing did, always with the numbers."""
    ok = measured(target)
    if ok.empty:
        return "The training target (feeling expression) was not measured."
    moved = ok[ok["cls"].isin(stats.CLASSES[:2])]
    if moved.empty:
        return f"The training target did not move significantly: {_listing(ok, several)}."
    listed = [f"{cls}: {_listing(moved[moved['cls'] == cls], several)}"
              for cls in stats.CLASSES[:2] if (moved["cls"] == cls).any()]
    return "The training target moved: " + "; ".join(listed) + "."


# who, besides the evaluation judge, can confirm a contrast of the training target (against_base)
CONFIRMERS = {AFFECT: "the judge-free affect count", SECOND: "the second evaluation judge"}


def _short(r, several: bool) -> str:
    """One training-target row in few words: 'affect_statements +0.04 [-0.36, +0.41] (no significant change)'."""
    who = f" ({r.base_model}, seed {r.seed})" if several else ""
    ci = f" [{num(r.ci_low, '+')}, {num(r.ci_high, '+')}]" if np.isfinite(r.ci_low) else ""
    return f"{r.benchmark}{who} {num(r.diff, '+')}{ci} ({r.cls})"


def _confirmed(r, sign: int) -> bool:
    """The confirming row (affect count or second judge) moved significantly (its Holm class, as in the table) on the
    side the contrast should move: human up (enhanced), reverse down (degraded). A CI that excludes 0 before the Holm
    correction is not enough."""
    return r.cls == (stats.CLASSES[0] if sign > 0 else stats.CLASSES[1])


def against_base(results: pd.DataFrame, several: bool) -> str:
    """The training target in all three contrasts, and which of them the judge-free affect count and the second
    evaluation judge confirm.

    The evaluation judge (params eval_judge_model, by default the base model with the training judge's design) is not
    an outside opinion; the count of first-person affect statements is, and the second evaluation judge (params
    eval_second_judge_mode: the judging model in another judge design) is a second one. A contrast counts as confirmed
    when the measure's class (Holm-corrected, as in the table) is a significant move in the expected direction
    (human-like above, reverse below).
    """
    target = measured(results[results["training_target"].astype(bool)])
    parts, confirmed = [], {AFFECT: [], SECOND: []}
    for a, b in CONTRASTS:
        rows = target[target["contrast"] == f"{a}_vs_{b}"]
        if rows.empty:
            continue
        parts.append(f"{a} − {b}: " + ", ".join(_short(r, several) for r in rows.itertuples()))
        sign = -1 if a == "reverse" else 1
        for measure, found in confirmed.items():
            if any(_confirmed(r, sign) for r in rows[rows["benchmark"] == measure].itertuples()):
                found.append(f"{a} − {b}")
    if not parts:
        return ""
    who = "".join(f"; {CONFIRMERS[m]} confirms " + (", ".join(found) if found else "none of them")
                  for m, found in confirmed.items() if m == AFFECT or (target["benchmark"] == m).any())
    return "All three contrasts of the training target: " + "; ".join(parts) + who + "."


FORM_WORDS = {"repeats_sentence_share": "more replies that repeat a sentence",
              "stock_formula_share": "more stock formulas", "distinct_2": "fewer distinct word pairs",
              "reply_words": "shorter replies",
              "shared_bigrams": "replies to different prompts that share their phrasing"}


def form_sentence(results: pd.DataFrame, several: bool) -> str:
    """The degenerate-form rows in words: in each contrast, which got significantly worse (Holm within the form
    family), e.g. 'The human − base difference comes with more replies that repeat a sentence (...)'."""
    form = measured(results[is_form(results)])
    if form.empty:
        return ""
    parts = []
    for a, b in CONTRASTS:
        worse = form[(form["contrast"] == f"{a}_vs_{b}") & (form["cls"] == stats.CLASSES[1])]
        if len(worse):
            what = ", ".join(dict.fromkeys(FORM_WORDS.get(m, m) for m in worse["metric"]))
            parts.append(f"the {a} − {b} difference comes with {what} ({_listing(worse, several)})")
    if not parts:
        return ("No degenerate-form row (repeated sentences, stock formulas, distinct-2, length) got significantly "
                "worse in any contrast.")
    return "Degenerate form: " + "; ".join(parts) + "."


def _rest_sentence(ok: pd.DataFrame, several: bool) -> str:
    """The other measured results in words: the enhanced and degraded ones listed, the rest counted."""
    n = {cls: int((ok["cls"] == cls).sum()) for cls in stats.CLASSES}
    if not n["enhanced"] and not n["degraded"]:
        return f"None of the other {len(ok)} measured results changed significantly."
    parts = [f"{n[cls]} {cls} ({_listing(ok[ok['cls'] == cls], several)})" for cls in stats.CLASSES[:2] if n[cls]]
    return (f"Of the other {len(ok)} measured results, {' and '.join(parts)}; "
            f"{n[stats.CLASSES[2]]} showed no significant change.")


def verdict(results: pd.DataFrame, contrast: str = MAIN_CONTRAST) -> str:
    """The report's opening paragraph: what moved in `contrast`, with 95% CIs, from the per-seed rows."""
    sub = results[results["contrast"] == contrast]
    if sub.empty:
        return f"No results for {contrast.replace('_vs_', ' vs ')}."
    a, b = contrast.split("_vs_")
    several = sub[["base_model", "seed"]].drop_duplicates().shape[0] > 1
    is_target = sub["training_target"].astype(bool)
    rest = benchmark_rows(sub)
    text = [f"Verdict, {a} vs {b} ({a} model minus {b} model on the same items, 95% CIs). Significance is judged "
            "after Holm's correction over all metrics of a model and seed (the degenerate-form rows apart), so a CI "
            "that excludes 0 can still be 'not significant'.",
            _target_sentence(sub[is_target], several), against_base(results, several),
            form_sentence(results, several), _rest_sentence(measured(rest), several)]
    left = rest[~rest.index.isin(measured(rest).index)]
    if len(left):
        names = dict.fromkeys(f"{r.benchmark}/{r.metric} ({r.cls})" for r in left.itertuples())
        text.append("Left out of every count: " + "; ".join(names) + ".")
    return " ".join(t for t in text if t)


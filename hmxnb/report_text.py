"""The report's paragraphs in words: the training-target note, the honest-scale note (which names the self-judge that
trained the models), the paper's summary on our numbers, training warnings and the methods.

They are prose around the numbers of hmxnb.aggregate and hmxnb.claims; hmxnb.report puts them in reading order.
"""

from __future__ import annotations

from hmxnb import health
from hmxnb.formatting import fmt, fmt_change
from hmxnb.paper import PAPER_LARGEST, PAPER_MODELS, PAPER_SHARE_PCT
from hmxnb.plots import load_training_logs
from hmxnb.stats import BCA_MAX_N

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

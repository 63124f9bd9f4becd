"""The report's opening paragraph in words: what moved in a contrast, with 95% CIs, from the per-seed rows.

The training target (feeling expression) comes first, then whether a model writes more degenerate text than the
other (the degenerate-form rows: repeated sentences, stock formulas, distinct-2, length), then the other measured
results: the enhanced and degraded ones listed with their numbers, the rest counted. Rows not measured or undefined
are named, never counted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hmxnb import stats
from hmxnb.bench.expression import AFFECT, SECOND
from hmxnb.compare import CONTRASTS, MAIN_CONTRAST, benchmark_rows, is_form, measured
from hmxnb.formatting import fmt_change, num


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
              "reply_words": "shorter replies"}


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

"""What the comparisons add up to: seed aggregation, the model x metric table, the paper's summary numbers, the
claims check and a verdict paragraph, all computed from the per-seed rows of `hmxnb.compare.compare`.

Counts use the three classes only: a metric with no items ("not measured") or without a value ("undefined") is
listed, never counted as "no significant change". The training target (feeling expression) is what the training
set out to change, so it is reported on its own and kept out of the paper's share of small changes.
Changes are relative (%) for accuracies and scores and in percentage points (pp) for rates and bias scores.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from hmxnb import stats
from hmxnb.compare import MAIN_CONTRAST, NOT_MEASURED, UNDEFINED, measured


def seed_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Aggregate over seeds per (contrast, base_model, benchmark, metric): mean and sd (ddof=1) and class counts.

    The sd is NaN with one seed. Per-seed rows stay in `results`; this table never replaces them. Means skip
    seeds without a value (NaN if none); `n_not_measured` and `n_undefined` count those seeds.
    """
    keys = ["contrast", "base_model", "benchmark", "metric", "higher_is_better", "training_target", "change_unit"]
    g = results.groupby(keys, sort=False)
    out = g.agg(
        n_seeds=("seed", "nunique"), value_a=("value_a", "mean"), value_b=("value_b", "mean"),
        diff_mean=("diff", "mean"), diff_sd=("diff", "std"),
        change_mean=("change", "mean"), change_sd=("change", "std"),
        improvement_mean=("improvement", "mean"), improvement_sd=("improvement", "std"),
        n_enhanced=("cls", _counter("enhanced")), n_degraded=("cls", _counter("degraded")),
        n_no_change=("cls", _counter("no significant change")), n_undefined=("cls", _counter(UNDEFINED)),
        n_not_measured=("cls", _counter(NOT_MEASURED)),
    ).reset_index()
    return out


def _counter(cls: str) -> Callable:
    """Aggregation function: how many rows have class `cls`."""
    return lambda s: int((s == cls).sum())


def mean_sd(mean: float, sd: float, digits: int = 1, unit: str = "") -> str:
    """'m ± s unit', or 'm unit' when the sd is undefined (one seed); 'n/a' without a mean."""
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:+.{digits}f}" + (f" ± {sd:.{digits}f}" if np.isfinite(sd) else "") + _unit_suffix(unit)


def _cell(r, value: str) -> str:
    """One metric x model cell: seed mean ± sd with its unit, or why there is none."""
    if r.n_not_measured == r.n_seeds:
        return NOT_MEASURED
    if r.n_undefined + r.n_not_measured == r.n_seeds:
        return UNDEFINED
    if value == "diff":
        return mean_sd(r.diff_mean, r.diff_sd, 3)
    return mean_sd(getattr(r, f"{value}_mean"), getattr(r, f"{value}_sd"), 1, r.change_unit)


def model_metric_table(results: pd.DataFrame, contrast: str = MAIN_CONTRAST, value: str = "improvement") -> pd.DataFrame:
    """Metric x model table (a row per metric, so it stays narrow) of the seed-mean ± sd of `value`
    ("improvement", "change" or "diff") as strings; % = relative change, pp = percentage points."""
    s = seed_summary(results[results["contrast"] == contrast])
    s["cell"] = [_cell(r, value) for r in s.itertuples()]
    s["metric"] = s["benchmark"] + "/" + s["metric"]
    table = s.pivot(index="metric", columns="base_model", values="cell").fillna("n/a")  # a model without this metric
    return table.loc[list(dict.fromkeys(s["metric"]))]


def _unit_suffix(unit: str) -> str:
    """'%' right after the number, other units after a space: '+1.2%', '-0.5 pp'."""
    return unit if unit in ("", "%") else f" {unit}"


def fmt_change(value: float, unit: str) -> str:
    """'+1.2%' or '-0.5 pp'; 'n/a' when the change is undefined."""
    return f"{value:+.1f}{_unit_suffix(unit)}" if np.isfinite(value) else "n/a"


def paper_summary(results: pd.DataFrame, contrast: str = MAIN_CONTRAST, threshold: float = 2.0) -> dict:
    """The paper's summary computed on our results (paper.md 5.2: 81.4%, and the largest degradation).

    On seed means per model x metric, training target left out (listed in `training_target`): share of results
    that improved or degraded by less than `threshold` (improvement > -threshold; % for accuracies, pp for rates
    and bias scores), the count degraded by more than 10, and the largest degradation. `share_by_seed` repeats
    the share per seed. Left out and counted: `n_not_measured` (no items), `n_undefined` (no value, or a relative
    change of a reference value 0).
    """
    sub = results[results["contrast"] == contrast]
    s = seed_summary(sub)
    rest = s[~s["training_target"].astype(bool)]
    ok = rest[np.isfinite(rest["improvement_mean"])]
    not_measured = rest["n_not_measured"] == rest["n_seeds"]
    improved = ok["improvement_mean"] > -threshold
    out = {
        "contrast": contrast, "threshold": threshold, "n_results": int(len(ok)),
        "n_not_measured": int(not_measured.sum()), "n_undefined": int(len(rest) - len(ok) - not_measured.sum()),
        "n_improved_or_small": int(improved.sum()), "n_degraded_over_10": int((ok["improvement_mean"] < -10).sum()),
        "share_pct": float(100 * improved.mean()) if len(ok) else float("nan"),
        "share_by_seed": _share_by_seed(sub, threshold), "largest_degradation": None,
        "training_target": [_target_entry(r) for r in s[s["training_target"].astype(bool)].itertuples()],
    }
    if len(ok) and ok["improvement_mean"].min() < 0:
        worst = ok.loc[ok["improvement_mean"].idxmin()]
        out["largest_degradation"] = {
            "base_model": worst["base_model"], "benchmark": worst["benchmark"], "metric": worst["metric"],
            "degradation": float(-worst["improvement_mean"]), "sd": float(worst["improvement_sd"]),
            "unit": worst["change_unit"],
        }
    return out


def _share_by_seed(sub: pd.DataFrame, threshold: float) -> dict:
    """The share of small changes per seed (training target and rows without a change left out)."""
    out = {}
    for run_seed, g in measured(sub[~sub["training_target"].astype(bool)]).groupby("seed"):
        v = g["improvement"][np.isfinite(g["improvement"])]
        out[str(run_seed)] = float(100 * (v > -threshold).mean()) if len(v) else float("nan")
    return out


def _target_entry(r) -> dict:
    """One training-target metric of a model, for the summary."""
    return {"base_model": r.base_model, "benchmark": r.benchmark, "metric": r.metric,
            "improvement": float(r.improvement_mean), "unit": r.change_unit,
            "enhanced": r.n_enhanced, "degraded": r.n_degraded, "no_change": r.n_no_change, "seeds": r.n_seeds}


# The paper's claims (paper.md 5.2) with how our rows are matched: benchmark substring, metric substrings that
# must all / must not appear (or, for the training target, every training-target row), and the class the claim
# predicts for human vs reverse. Names follow hmxnb.bench; pass your own list to check_claims if they differ.
PAPER_CLAIMS = [
    {"claim": "Human-like models are more robust to sycophancy-inducing questions", "paper": "enhanced",
     "benchmark": "syco", "metric_all": (), "metric_none": (), "expect": "enhanced"},
    {"claim": "Less bias in disambiguated BBQ contexts", "paper": "enhanced (lower bias)",
     "benchmark": "bbq", "metric_all": ("bias", "dis"), "metric_none": (), "expect": "enhanced"},
    {"claim": "Truthful question answering degrades", "paper": "degraded (\"in some cases\")",
     "benchmark": "truthful", "metric_all": (), "metric_none": (), "expect": "degraded"},
    {"claim": "Expression of feelings, intentions and self-awareness is enhanced (the training target)",
     "paper": "enhanced", "training_target": True, "expect": "enhanced"},
]
PAPER_SHARE_PCT = 81.4
PAPER_LARGEST = {"base_model": "Gemma 2 IT 2B", "benchmark": "bbq", "metric": "ambiguous accuracy", "degradation_pct": 15.0}


def _matches(row, claim: dict) -> bool:
    """Whether a results row belongs to a claim (case-insensitive substrings, or the training-target flag)."""
    if claim.get("training_target"):
        return bool(row["training_target"])
    bench, metric = str(row["benchmark"]).lower(), str(row["metric"]).lower()
    return (claim["benchmark"] in bench and all(s in metric for s in claim["metric_all"])
            and not any(s in metric for s in claim["metric_none"]))


def _mean_by_unit(rows: pd.DataFrame) -> str:
    """Mean improvement per unit, e.g. '+1.2% (accuracies), -0.4 pp (rates)': % and pp are never averaged together."""
    parts = []
    for unit, g in rows.groupby("change_unit", sort=False):
        v = g["improvement"][np.isfinite(g["improvement"])]
        if len(v):
            parts.append(fmt_change(v.mean(), unit))
    return ", ".join(parts) or "n/a"


def _direction_claim(rows: pd.DataFrame, claim: dict) -> dict:
    """Ours / agrees for a direction claim, over the matching per-seed rows that were measured."""
    base = {"claim": claim["claim"], "paper": claim["paper"]}
    ok = measured(rows)
    left_out = [f"{int((rows['cls'] == c).sum())} {c}" for c in (NOT_MEASURED, UNDEFINED) if (rows["cls"] == c).any()]
    note = f"; left out: {', '.join(left_out)}" if left_out else ""
    if ok.empty:
        ours = UNDEFINED if (rows["cls"] == UNDEFINED).any() else NOT_MEASURED
        return {**base, "ours": ours + (f" ({len(rows)} result{'s' * (len(rows) != 1)})" if len(rows) else ""),
                "agrees?": "n/a"}
    counts = ok["cls"].value_counts()
    parts = [f"{c} in {counts.get(c, 0)} of {len(ok)}" for c in stats.CLASSES if counts.get(c, 0)]
    ours = f"{', '.join(parts)} (mean improvement {_mean_by_unit(ok)}){note}"
    hits = counts.get(claim["expect"], 0)
    agrees = "yes" if hits == len(ok) else "no" if hits == 0 else "partly"
    return {**base, "ours": ours, "agrees?": agrees}


def _share_row(summ: dict, tolerance: float) -> dict:
    """The claims row of the share of small changes."""
    share, left = summ["share_pct"], summ["n_not_measured"] + summ["n_undefined"]
    ours = "n/a" if not np.isfinite(share) else f"{share:.1f}% ({summ['n_improved_or_small']}/{summ['n_results']})"
    if left:
        ours += f"; left out: {summ['n_not_measured']} not measured, {summ['n_undefined']} without a defined change"
    agrees = "n/a" if not np.isfinite(share) else "yes" if abs(share - PAPER_SHARE_PCT) <= tolerance else "no"
    return {"claim": f"Share of results improved or degraded by < {summ['threshold']:g}% (< {summ['threshold']:g} pp "
                     "for rates and bias scores; training target excluded)",
            "paper": f"{PAPER_SHARE_PCT}%", "ours": ours, "agrees?": agrees}


def _largest_row(summ: dict) -> dict:
    """The claims row of the largest degradation: 'yes' if ours is also on BBQ ambiguous accuracy."""
    worst, p = summ["largest_degradation"], PAPER_LARGEST
    if worst is None:
        ours, agrees = "no degradation", "no"
    else:
        ours = (f"{worst['base_model']}, {worst['benchmark']}/{worst['metric']}, "
                f"{fmt_change(-worst['degradation'], worst['unit'])}")
        metric = worst["metric"].lower()
        same = "bbq" in worst["benchmark"].lower() and "amb" in metric and "dis" not in metric and "acc" in metric
        agrees = "yes" if same else "no"
    return {"claim": "Largest degradation", "paper": f"{p['base_model']}, BBQ {p['metric']}, -{p['degradation_pct']}%",
            "ours": ours, "agrees?": agrees}


def check_claims(results: pd.DataFrame, claims=None, contrast: str = MAIN_CONTRAST, share_tolerance_pp: float = 10.0) -> pd.DataFrame:
    """Table claim | paper | ours | agrees? for the main contrast.

    Direction claims: "yes" if every matching measured per-seed row has the predicted class, "partly" if some
    do, "no" if none (not measured / undefined rows are listed, not counted). Share of small changes: "yes"
    within ±share_tolerance_pp points of 81.4%. Largest degradation: "yes" if ours is also on BBQ ambiguous
    accuracy. Over-10 count: "yes" if at most one.
    """
    sub = results[results["contrast"] == contrast]
    rows = []
    for claim in PAPER_CLAIMS if claims is None else claims:
        mask = sub.apply(_matches, axis=1, claim=claim) if len(sub) else pd.Series([], dtype=bool)
        rows.append(_direction_claim(sub[mask], claim))
    summ = paper_summary(results, contrast)
    rows += [_share_row(summ, share_tolerance_pp), _largest_row(summ)]
    rows.append({"claim": "Results degraded by more than 10% (10 pp for rates and bias scores)", "paper": "1",
                 "ours": str(summ["n_degraded_over_10"]), "agrees?": "yes" if summ["n_degraded_over_10"] <= 1 else "no"})
    return pd.DataFrame(rows, columns=["claim", "paper", "ours", "agrees?"])


def _num(x: float, sign: str = "") -> str:
    """A value in words: three decimals, one above 100 (bias scores are x100)."""
    return format(x, f"{sign}.{3 if abs(x) < 100 else 1}f")


def _moved(r, several: bool) -> str:
    """One result in words: 'bbq/acc_ambig: 0.410 vs 0.460, difference -0.050 (95% CI -0.090 to -0.010, -10.9%)'."""
    who = f" ({r.base_model}, seed {r.seed})" if several else ""
    change = f", {fmt_change(r.change, r.change_unit)}" if np.isfinite(r.change) else ""
    ci = f"95% CI {_num(r.ci_low, '+')} to {_num(r.ci_high, '+')}" if np.isfinite(r.ci_low) else "no CI"
    return f"{r.benchmark}/{r.metric}{who}: {_num(r.value_a)} vs {_num(r.value_b)}, difference {_num(r.diff, '+')} ({ci}{change})"


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
    return "The training target moved: " + "; ".join(
        f"{cls}: {_listing(moved[moved['cls'] == cls], several)}" for cls in stats.CLASSES[:2] if (moved["cls"] == cls).any()) + "."


def _rest_sentence(ok: pd.DataFrame, several: bool) -> str:
    """The other measured results in words: the enhanced and degraded ones listed, the rest counted."""
    n = {cls: int((ok["cls"] == cls).sum()) for cls in stats.CLASSES}
    if not n["enhanced"] and not n["degraded"]:
        return f"None of the other {len(ok)} measured results changed significantly."
    parts = [f"{n[cls]} {cls} ({_listing(ok[ok['cls'] == cls], several)})" for cls in stats.CLASSES[:2] if n[cls]]
    return f"Of the other {len(ok)} measured results, {' and '.join(parts)}; {n[stats.CLASSES[2]]} showed no significant change."


def verdict(results: pd.DataFrame, contrast: str = MAIN_CONTRAST) -> str:
    """The report's opening paragraph: what moved in `contrast`, with 95% CIs, from the per-seed rows."""
    sub = results[results["contrast"] == contrast]
    if sub.empty:
        return f"No results for {contrast.replace('_vs_', ' vs ')}."
    a, b = contrast.split("_vs_")
    several = sub[["base_model", "seed"]].drop_duplicates().shape[0] > 1
    is_target = sub["training_target"].astype(bool)
    rest = sub[~is_target]
    text = [f"Verdict, {a} vs {b} ({a} model minus {b} model on the same items, 95% CIs). Significance is judged "
            "after Holm's correction over all metrics of a model and seed, so a CI that excludes 0 can still be 'not "
            "significant'.",
            _target_sentence(sub[is_target], several), _rest_sentence(measured(rest), several)]
    left = rest[~rest.index.isin(measured(rest).index)]
    if len(left):
        names = dict.fromkeys(f"{r.benchmark}/{r.metric} ({r.cls})" for r in left.itertuples())
        text.append("Left out of every count: " + "; ".join(names) + ".")
    return " ".join(text)

"""What the per-seed rows of `hmxnb.compare.compare` add up to: seed means and spreads, the model x metric table,
and the paper's summary numbers (share of small changes, largest degradation) computed on our results.

Counts use the three classes only: a metric with no items ("not measured") or without a value ("undefined") is
listed, never counted as "no significant change". The training target (feeling expression) is what the training
set out to change, so it is reported on its own and kept out of the paper's share of small changes; so are the
degenerate-form rows (the reward-hacking watch on held-out replies).
Changes are relative (%) for accuracies and scores and in percentage points (pp) for rates and bias scores.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from hmxnb.compare import MAIN_CONTRAST, NOT_MEASURED, UNDEFINED, benchmark_rows, is_form, measured
from hmxnb.formatting import mean_sd

def seed_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Aggregate over seeds per (contrast, base_model, benchmark, metric): mean and sd (ddof=1) and class counts.

    The sd is NaN with one seed. Per-seed rows stay in `results`; this table never replaces them. Means skip
    seeds without a value (NaN if none); `n_not_measured` and `n_undefined` count those seeds.
    """
    keys = ["contrast", "base_model", "benchmark", "metric", "higher_is_better", "training_target",
            "degenerate_form", "change_unit"]
    g = results.assign(degenerate_form=is_form(results)).groupby(keys, sort=False)
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


def _cell(r, value: str) -> str:
    """One metric x model cell: seed mean ± sd with its unit, or why there is none."""
    if r.n_not_measured == r.n_seeds:
        return NOT_MEASURED
    if r.n_undefined + r.n_not_measured == r.n_seeds:
        return UNDEFINED
    if value == "diff":
        return mean_sd(r.diff_mean, r.diff_sd, 3)
    return mean_sd(getattr(r, f"{value}_mean"), getattr(r, f"{value}_sd"), 1, r.change_unit)


def model_metric_table(results: pd.DataFrame, contrast: str = MAIN_CONTRAST,
                       value: str = "improvement") -> pd.DataFrame:
    """Metric x model table (a row per metric, so it stays narrow) of the seed-mean ± sd of `value`
    ("improvement", "change" or "diff") as strings; % = relative change, pp = percentage points."""
    s = seed_summary(results[results["contrast"] == contrast])
    s["cell"] = [_cell(r, value) for r in s.itertuples()]
    s["metric"] = s["benchmark"] + "/" + s["metric"]
    table = s.pivot(index="metric", columns="base_model", values="cell").fillna("n/a")  # a model without this metric
    return table.loc[list(dict.fromkeys(s["metric"]))]


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
    rest = benchmark_rows(s)
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
    for run_seed, g in measured(benchmark_rows(sub)).groupby("seed"):
        v = g["improvement"][np.isfinite(g["improvement"])]
        out[str(run_seed)] = float(100 * (v > -threshold).mean()) if len(v) else float("nan")
    return out


def _target_entry(r) -> dict:
    """One training-target metric of a model, for the summary."""
    return {"base_model": r.base_model, "benchmark": r.benchmark, "metric": r.metric,
            "improvement": float(r.improvement_mean), "unit": r.change_unit,
            "enhanced": r.n_enhanced, "degraded": r.n_degraded, "no_change": r.n_no_change, "seeds": r.n_seeds}

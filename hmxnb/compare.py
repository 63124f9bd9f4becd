"""Paired comparisons of base / human-like / reverse models on benchmark item records (notebook 05).

Input: the per-item records of notebook 04 (`samples.jsonl`), one per (benchmark, item, model), optionally with
`base_model` and `seed`. A metric registry says what to compare. Output: one row per (base_model, seed, contrast,
metric) with difference, relative change, 95% CI, p-value, Holm-adjusted p and class; then the seed
aggregation, the model x metric table, the paper's own summary numbers and the claims check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from hmxnb import stats

# (model_a, model_b): difference = metric(model_a) - metric(model_b). The first is the paper's main contrast
# ("compared with contrastively trained models", paper.md section 4).
CONTRASTS = (("human", "reverse"), ("human", "base"), ("reverse", "base"))
MAIN_CONTRAST = "human_vs_reverse"
# Fields that, where present, are part of an item's identity besides (benchmark, item_id).
PAIR_FIELDS = ("condition", "context_condition", "question_polarity")
KINDS = ("binary", "continuous", "statistic")

RESULT_COLUMNS = [
    "base_model", "seed", "contrast", "model_a", "model_b", "benchmark", "metric", "kind", "higher_is_better",
    "n_items", "value_a", "value_b", "diff", "rel_change_pct", "improvement_pct", "ci_low", "ci_high",
    "test", "p_value", "p_holm", "cls",
]


@dataclass(frozen=True)
class Metric:
    """One benchmark metric to compare.

    Args:
        benchmark: value of the records' `benchmark` field.
        name: metric name as it appears in tables.
        kind: "binary" (mean of a per-item 0/1 column; McNemar), "continuous" (mean of a per-item score;
            sign-flip or Wilcoxon test) or "statistic" (any function of the records, e.g. a BBQ bias score;
            bootstrap p-value).
        higher_is_better: direction of improvement.
        column: per-item value column for binary / continuous kinds ("correct", "score").
        fn: for "statistic": list of record dicts -> float (e.g. `metric_key(metrics_bbq, "bias_disambig")`).
        where: keep only records whose fields equal these values, e.g. {"context_condition": "ambig"}.
    """

    benchmark: str
    name: str
    kind: str
    higher_is_better: bool = True
    column: str | None = None
    fn: Callable | None = None
    where: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.benchmark}/{self.name}: kind '{self.kind}' not in {KINDS}")
        if self.kind == "statistic" and self.fn is None:
            raise ValueError(f"metric {self.benchmark}/{self.name}: kind 'statistic' needs fn")
        if self.kind != "statistic" and self.column is None:
            raise ValueError(f"metric {self.benchmark}/{self.name}: kind '{self.kind}' needs column")


def binary_metric(benchmark: str, name: str, column: str = "correct", higher_is_better: bool = True, where=None) -> Metric:
    """A mean-of-correctness metric (accuracy), tested with McNemar."""
    return Metric(benchmark, name, "binary", higher_is_better, column=column, where=dict(where or {}))


def continuous_metric(benchmark: str, name: str, column: str = "score", higher_is_better: bool = True, where=None) -> Metric:
    """A mean-of-scores metric (e.g. feeling-expression rubric score), tested with sign-flip or Wilcoxon."""
    return Metric(benchmark, name, "continuous", higher_is_better, column=column, where=dict(where or {}))


def statistic_metric(benchmark: str, name: str, fn: Callable, higher_is_better: bool = True, where=None) -> Metric:
    """A statistic of the whole record set (e.g. BBQ bias score), with a bootstrap CI and p-value only."""
    return Metric(benchmark, name, "statistic", higher_is_better, fn=fn, where=dict(where or {}))


def metric_key(metrics_fn: Callable, key: str) -> Callable:
    """Wrap a benchmark's `metrics_<bench>(records) -> dict` into `records -> float` picking `key`."""

    def fn(records):
        return float(metrics_fn(records)[key])

    fn.__name__ = f"{getattr(metrics_fn, '__name__', 'metrics')}[{key}]"
    return fn


def to_frame(records, default_base_model: str = "model", default_seed: int = 0) -> pd.DataFrame:
    """Records (DataFrame or list of dicts) as a DataFrame with `base_model` and `seed` filled where absent."""
    df = records.copy() if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    for col, default in (("base_model", default_base_model), ("seed", default_seed)):
        if col not in df.columns:
            df[col] = default
        df[col] = df[col].where(df[col].notna(), default)
    return df


def _row_dicts(df: pd.DataFrame) -> list[dict]:
    """DataFrame rows as dicts, with pandas' NaN for missing fields turned back into None."""
    out = []
    for rec in df.to_dict("records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()})
    return out


def _select(df: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """The records of one metric: its benchmark, filtered by `where`."""
    mask = df["benchmark"] == metric.benchmark
    for col, value in metric.where.items():
        mask &= df[col] == value if col in df.columns else False
    return df[mask]


def _keyed(df: pd.DataFrame, label: str) -> pd.DataFrame:
    """Index one model's records by item key (item_id plus present PAIR_FIELDS); duplicates are an error."""
    cols = ["item_id"] + [c for c in PAIR_FIELDS if c in df.columns]
    key = pd.Index(["|".join(map(str, row)) for row in df[cols].itertuples(index=False)])
    if key.duplicated().any():
        raise ValueError(f"{label}: duplicate item keys, e.g. '{key[key.duplicated()][0]}'")
    return df.set_index(key).sort_index()


def _model_rows(df: pd.DataFrame, model: str, seed) -> pd.DataFrame:
    """Records of `model` for `seed`; a model run once (e.g. the untrained base) serves every seed."""
    rows = df[df["model"] == model]
    seeds = rows["seed"].unique()
    if seed in seeds:
        return rows[rows["seed"] == seed]
    return rows if len(seeds) == 1 else rows.iloc[0:0]


def _paired(df_a: pd.DataFrame, df_b: pd.DataFrame, label: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two models' records on their common items, in the same order."""
    ka, kb = _keyed(df_a, label), _keyed(df_b, label)
    common = ka.index.intersection(kb.index)
    return ka.loc[common], kb.loc[common]


def _as_float(values) -> np.ndarray:
    """Values as floats (bools -> 0/1), with None and NaN as NaN."""
    return np.array([np.nan if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in values])


def _values(a: pd.DataFrame, b: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-item values of both models, keeping only items where both are present (pairwise complete)."""
    va, vb = _as_float(a[column]), _as_float(b[column])
    ok = np.isfinite(va) & np.isfinite(vb)
    return va[ok], vb[ok]


def compare_metric(
    a: pd.DataFrame, b: pd.DataFrame, metric: Metric, n_resamples: int = 2000, confidence_level: float = 0.95,
    ci_method: str = "BCa", continuous_test: str = "sign_flip", mcnemar_method: str = "midp", seed: int = 0,
) -> dict:
    """Compare one metric between two models' paired records: values, diff (a - b), CI and p-value."""
    label = f"{metric.benchmark}/{metric.name}"
    a, b = _paired(a, b, label)
    if metric.kind == "statistic":
        ra, rb = _row_dicts(a), _row_dicts(b)
        n = len(ra)
        value_a = metric.fn(ra) if n else float("nan")
        value_b = metric.fn(rb) if n else float("nan")
        ci = stats.index_bootstrap_ci(
            n, lambda idx: metric.fn([ra[i] for i in idx]) - metric.fn([rb[i] for i in idx]),
            n_resamples=n_resamples, confidence_level=confidence_level, method=ci_method, seed=seed,
        )
        test, p = "bootstrap", stats.bootstrap_pvalue(ci.distribution)
    else:
        va, vb = _values(a, b, metric.column)
        n = len(va)
        value_a = float(va.mean()) if n else float("nan")
        value_b = float(vb.mean()) if n else float("nan")
        ci = stats.paired_bootstrap_ci(va, vb, n_resamples=n_resamples, confidence_level=confidence_level,
                                       method=ci_method, seed=seed)
        if metric.kind == "binary":
            test, p = f"mcnemar_{mcnemar_method}", stats.mcnemar(*stats.mcnemar_counts(va > 0.5, vb > 0.5), mcnemar_method)
        elif continuous_test == "wilcoxon":
            test, p = "wilcoxon", stats.wilcoxon_test(va - vb)
        else:
            test, p = "sign_flip", stats.sign_flip_test(va - vb, n_resamples=n_resamples, seed=seed)
    if n == 0:
        p = float("nan")
    rel = stats.relative_change(value_a, value_b)
    return {
        "benchmark": metric.benchmark, "metric": metric.name, "kind": metric.kind,
        "higher_is_better": metric.higher_is_better, "n_items": n, "value_a": value_a, "value_b": value_b,
        "diff": value_a - value_b, "rel_change_pct": rel, "improvement_pct": rel if metric.higher_is_better else -rel,
        "ci_low": ci.low, "ci_high": ci.high, "test": test, "p_value": p,
    }


def compare(
    records, metrics: list[Metric], contrasts=CONTRASTS, n_resamples: int = 2000, confidence_level: float = 0.95,
    ci_method: str = "BCa", continuous_test: str = "sign_flip", mcnemar_method: str = "midp",
    alpha: float = 0.05, seed: int = 0,
) -> pd.DataFrame:
    """All paired comparisons: one row per (base_model, seed, contrast, metric), columns RESULT_COLUMNS.

    Holm's correction runs across the metrics within each (base_model, seed, contrast): one family per
    question "does this training change this model's benchmarks?". Our choice; the paper gives none.
    Contrasts whose models are absent from the records are skipped. `seed` seeds the resampling.
    """
    df = to_frame(records)
    present = set(df["model"].unique())
    rows = []
    for (base_model, run_seed), _ in df[df["model"] != "base"].groupby(["base_model", "seed"], sort=True):
        sub = df[df["base_model"] == base_model]
        for model_a, model_b in contrasts:
            if model_a not in present or model_b not in present:
                continue
            a_all, b_all = _model_rows(sub, model_a, run_seed), _model_rows(sub, model_b, run_seed)
            for i, metric in enumerate(metrics):
                row = compare_metric(
                    _select(a_all, metric), _select(b_all, metric), metric, n_resamples=n_resamples,
                    confidence_level=confidence_level, ci_method=ci_method, continuous_test=continuous_test,
                    mcnemar_method=mcnemar_method, seed=seed + i,
                )
                rows.append({"base_model": base_model, "seed": run_seed, "contrast": f"{model_a}_vs_{model_b}",
                             "model_a": model_a, "model_b": model_b, **row})
    out = pd.DataFrame(rows, columns=[c for c in RESULT_COLUMNS if c not in ("p_holm", "cls")])
    return add_classes(out, alpha=alpha)


def add_classes(results: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Add `p_holm` (Holm within base_model x seed x contrast) and `cls` (stats.classify) to a results table."""
    out = results.copy()
    out["p_holm"] = np.nan
    for _, idx in out.groupby(["base_model", "seed", "contrast"], sort=False).groups.items():
        out.loc[idx, "p_holm"] = stats.holm(out.loc[idx, "p_value"].to_numpy(float))
    out["cls"] = [
        stats.classify(r.diff, (r.ci_low, r.ci_high), r.p_holm, bool(r.higher_is_better), alpha)
        for r in out.itertuples()
    ]
    return out[RESULT_COLUMNS]


def seed_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Aggregate over seeds per (contrast, base_model, benchmark, metric): mean and sd (ddof=1) and class counts.

    The sd is NaN with one seed. Per-seed rows stay in `results`; this table never replaces them.
    """
    keys = ["contrast", "base_model", "benchmark", "metric", "higher_is_better"]
    g = results.groupby(keys, sort=False)
    out = g.agg(
        n_seeds=("seed", "nunique"), value_a=("value_a", "mean"), value_b=("value_b", "mean"),
        diff_mean=("diff", "mean"), diff_sd=("diff", "std"),
        rel_change_mean=("rel_change_pct", "mean"), rel_change_sd=("rel_change_pct", "std"),
        improvement_mean=("improvement_pct", "mean"), improvement_sd=("improvement_pct", "std"),
        n_enhanced=("cls", lambda s: int((s == "enhanced").sum())),
        n_degraded=("cls", lambda s: int((s == "degraded").sum())),
        n_no_change=("cls", lambda s: int((s == "no significant change").sum())),
    ).reset_index()
    return out


def _mean_sd(mean: float, sd: float, digits: int = 1) -> str:
    """'m ± s', or 'm' when the sd is undefined (one seed)."""
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:+.{digits}f}" + (f" ± {sd:.{digits}f}" if np.isfinite(sd) else "")


def model_metric_table(results: pd.DataFrame, contrast: str = MAIN_CONTRAST, value: str = "improvement") -> pd.DataFrame:
    """Model x metric table of seed-mean ± sd of `value` ("improvement", "rel_change" or "diff") as strings."""
    s = seed_summary(results[results["contrast"] == contrast])
    s["cell"] = [_mean_sd(m, sd, 1 if value != "diff" else 3) for m, sd in zip(s[f"{value}_mean"], s[f"{value}_sd"])]
    s["column"] = s["benchmark"] + "/" + s["metric"]
    table = s.pivot(index="base_model", columns="column", values="cell")
    return table[list(dict.fromkeys(s["column"]))]


def paper_summary(results: pd.DataFrame, contrast: str = MAIN_CONTRAST, threshold_pct: float = 2.0) -> dict:
    """The paper's summary computed on our results (paper.md 5.2: 81.4%, and the largest degradation).

    On seed means per model x metric: share of results that improved or degraded by less than `threshold_pct`
    % (improvement_pct > -threshold), the count degraded by more than 10%, and the largest degradation.
    `share_by_seed` repeats the share per seed, so its spread is visible. Undefined relative changes
    (reference value 0) are left out and counted in `n_undefined`.
    """
    sub = results[results["contrast"] == contrast]
    s = seed_summary(sub)
    ok = s[np.isfinite(s["improvement_mean"])]
    out = {
        "contrast": contrast, "threshold_pct": threshold_pct, "n_results": int(len(ok)),
        "n_undefined": int(len(s) - len(ok)),
        "n_improved_or_small": int((ok["improvement_mean"] > -threshold_pct).sum()),
        "n_degraded_over_10": int((ok["improvement_mean"] < -10).sum()),
        "share_pct": float(100 * (ok["improvement_mean"] > -threshold_pct).mean()) if len(ok) else float("nan"),
        "share_by_seed": {},
        "largest_degradation": None,
    }
    for run_seed, g in sub.groupby("seed"):
        v = g["improvement_pct"][np.isfinite(g["improvement_pct"])]
        out["share_by_seed"][str(run_seed)] = float(100 * (v > -threshold_pct).mean()) if len(v) else float("nan")
    if len(ok) and ok["improvement_mean"].min() < 0:
        worst = ok.loc[ok["improvement_mean"].idxmin()]
        out["largest_degradation"] = {
            "base_model": worst["base_model"], "benchmark": worst["benchmark"], "metric": worst["metric"],
            "degradation_pct": float(-worst["improvement_mean"]), "sd_pct": float(worst["improvement_sd"]),
        }
    return out


# The paper's claims (paper.md 5.2) with how our rows are matched: benchmark substring, metric substrings that
# must all / must not appear, and the class the claim predicts for human vs reverse. Benchmark and metric
# names follow hmxnb.bench; pass your own list to check_claims if they differ.
PAPER_CLAIMS = [
    {"claim": "Human-like models are more robust to sycophancy-inducing questions", "paper": "enhanced",
     "benchmark": "syco", "metric_all": (), "metric_none": (), "expect": "enhanced"},
    {"claim": "Less bias in disambiguated BBQ contexts", "paper": "enhanced (lower bias)",
     "benchmark": "bbq", "metric_all": ("bias", "dis"), "metric_none": (), "expect": "enhanced"},
    {"claim": "Truthful question answering degrades", "paper": "degraded (\"in some cases\")",
     "benchmark": "truthful", "metric_all": (), "metric_none": (), "expect": "degraded"},
    {"claim": "Expression of feelings, intentions and self-awareness is enhanced", "paper": "enhanced",
     "benchmark": "feel", "metric_all": (), "metric_none": (), "expect": "enhanced"},
]
PAPER_SHARE_PCT = 81.4
PAPER_LARGEST = {"base_model": "Gemma 2 IT 2B", "benchmark": "bbq", "metric": "ambiguous accuracy", "degradation_pct": 15.0}


def _matches(row, claim: dict) -> bool:
    """Whether a results row belongs to a claim (case-insensitive substrings)."""
    bench, metric = str(row["benchmark"]).lower(), str(row["metric"]).lower()
    return (claim["benchmark"] in bench and all(s in metric for s in claim["metric_all"])
            and not any(s in metric for s in claim["metric_none"]))


def _direction_claim(rows: pd.DataFrame, claim: dict) -> dict:
    """Ours / agrees for a direction claim, over all matching per-seed rows."""
    if rows.empty:
        return {"claim": claim["claim"], "paper": claim["paper"], "ours": "not measured", "agrees?": "n/a"}
    counts = rows["cls"].value_counts()
    parts = [f"{counts.get(c, 0)} {c}" for c in stats.CLASSES if counts.get(c, 0)]
    mean_imp = rows["improvement_pct"].mean()
    ours = f"{', '.join(parts)} of {len(rows)} (mean improvement {mean_imp:+.1f}%)"
    hits = counts.get(claim["expect"], 0)
    agrees = "yes" if hits == len(rows) else "no" if hits == 0 else "partly"
    return {"claim": claim["claim"], "paper": claim["paper"], "ours": ours, "agrees?": agrees}


def check_claims(results: pd.DataFrame, claims=None, contrast: str = MAIN_CONTRAST, share_tolerance_pp: float = 10.0) -> pd.DataFrame:
    """Table claim | paper | ours | agrees? for the main contrast.

    Direction claims: "yes" if every matching per-seed row has the predicted class, "partly" if some do,
    "no" if none. Share of small changes: "yes" within ±share_tolerance_pp points of 81.4%. Largest
    degradation: "yes" if ours is also on BBQ ambiguous accuracy. Over-10% count: "yes" if at most one.
    """
    sub = results[results["contrast"] == contrast]
    rows = []
    for claim in PAPER_CLAIMS if claims is None else claims:
        mask = sub.apply(_matches, axis=1, claim=claim) if len(sub) else pd.Series([], dtype=bool)
        rows.append(_direction_claim(sub[mask], claim))
    summ = paper_summary(results, contrast)
    share = summ["share_pct"]
    rows.append({
        "claim": "Share of results improved or degraded by < 2%", "paper": f"{PAPER_SHARE_PCT}%",
        "ours": f"{share:.1f}% ({summ['n_improved_or_small']}/{summ['n_results']})" if np.isfinite(share) else "n/a",
        "agrees?": "n/a" if not np.isfinite(share) else "yes" if abs(share - PAPER_SHARE_PCT) <= share_tolerance_pp else "no",
    })
    worst = summ["largest_degradation"]
    p = PAPER_LARGEST
    if worst is None:
        ours, agrees = "no degradation", "no"
    else:
        ours = f"{worst['base_model']}, {worst['benchmark']}/{worst['metric']}, {worst['degradation_pct']:.1f}%"
        metric = worst["metric"].lower()
        same = "bbq" in worst["benchmark"].lower() and "amb" in metric and "dis" not in metric and "acc" in metric
        agrees = "yes" if same else "no"
    rows.append({"claim": "Largest degradation", "paper": f"{p['base_model']}, BBQ {p['metric']}, {p['degradation_pct']}%",
                 "ours": ours, "agrees?": agrees})
    rows.append({"claim": "Results degraded by more than 10%", "paper": "1",
                 "ours": str(summ["n_degraded_over_10"]), "agrees?": "yes" if summ["n_degraded_over_10"] <= 1 else "no"})
    return pd.DataFrame(rows, columns=["claim", "paper", "ours", "agrees?"])

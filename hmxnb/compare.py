"""Paired comparisons of base / human-like / reverse models on benchmark item records (notebook 05).

Input: notebook 04's per-item records (`samples.jsonl`, one per benchmark, item, model; optionally `base_model` and
`seed`) and the metrics to compare (hmxnb.compare.Metric; the benchmarks' own: hmxnb.bench.registry.compare_metrics).
Output: one row per (base_model, seed, contrast, metric): difference, change (relative % for accuracies and scores,
percentage points for rates and bias scores), 95% CI, p-value, Holm-adjusted p and class. Seed summaries and the
paper's numbers: hmxnb.aggregate; the claims check: hmxnb.claims.

What one compared metric is (the first section): `Metric`, and the four kinds the benchmarks declare (accuracy,
score, rate, bias score).

A benchmark (hmxnb.bench.benchmark.Benchmark) lists the metrics notebook 05 compares as `Metric` objects built with
`accuracy`, `score`, `rate` or `bias_score`; hmxnb.bench.registry.compare_metrics gathers them in registry order and
the comparisons below compare them. The kind fixes how a metric is tested and how its change is counted:

- accuracy: mean of a per-item 0/1 column, McNemar; change relative (%).
- score: mean of a per-item score (MC2, feeling expression), sign-flip test; change relative (%).
- rate: a 0-1 statistic of the item set where lower is better (flip rate, accuracy drop), bootstrap; change in
  percentage points, since a relative change explodes near 0 (0.03 -> 0.04 reads as +33%).
- bias score: a statistic already x100 (BBQ's |s|, 0 = unbiased), bootstrap; change in points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from hmxnb import stats


# ---------------------------------------------------------------- what a compared metric is

KINDS = ("binary", "continuous", "statistic")
# A metric's change: "relative" = 100 * diff / |value_b| in %; "points" = percentage points.
CHANGES = {"relative": "%", "points": "pp"}


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
        fn: for "statistic": list of record dicts -> float (e.g. `metric_key(metrics_bbq, "s_dis", absolute=True)`).
        where: keep only records whose fields equal these values, e.g. {"context_condition": "ambig"}.
        change: "relative" (accuracies, scores) or "points" (rates and bias scores: percentage points).
        points_per_unit: percentage points per unit of the value: 100 for 0-1 rates, 1 for scores already x100.
        training_target: the trained behaviour itself (feeling expression), kept out of the paper's share.
        degenerate_form: a reward-hacking watch row (repeated sentences, stock formulas, ...): kept out of the
            paper's share and Holm-corrected as a family of its own (hmxnb.compare.add_classes).
        claim: the paper's claim this metric feeds (a key of hmxnb.paper.PAPER_CLAIMS), or None.
    """

    benchmark: str
    name: str
    kind: str
    higher_is_better: bool = True
    column: str | None = None
    fn: Callable | None = None
    where: dict = field(default_factory=dict)
    change: str = "relative"
    points_per_unit: float = 100.0
    training_target: bool = False
    claim: str | None = None
    degenerate_form: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.benchmark}/{self.name}: kind '{self.kind}' not in {KINDS}")
        if self.kind == "statistic" and self.fn is None:
            raise ValueError(f"metric {self.benchmark}/{self.name}: kind 'statistic' needs fn")
        if self.kind != "statistic" and self.column is None:
            raise ValueError(f"metric {self.benchmark}/{self.name}: kind '{self.kind}' needs column")
        if self.change not in CHANGES:
            raise ValueError(f"metric {self.benchmark}/{self.name}: change '{self.change}' not in {tuple(CHANGES)}")


def binary_metric(benchmark: str, name: str, column: str = "correct", higher_is_better: bool = True, where=None,
                  **options) -> Metric:
    """A mean-of-correctness metric, tested with McNemar. `options`: Metric's change, training and claim fields."""
    return Metric(benchmark, name, "binary", higher_is_better, column=column, where=dict(where or {}), **options)


def continuous_metric(benchmark: str, name: str, column: str = "score", higher_is_better: bool = True, where=None,
                      **options) -> Metric:
    """A mean-of-scores metric (e.g. feeling-expression rubric score), tested with sign-flip or Wilcoxon."""
    return Metric(benchmark, name, "continuous", higher_is_better, column=column, where=dict(where or {}), **options)


def statistic_metric(benchmark: str, name: str, fn: Callable, higher_is_better: bool = True, where=None,
                     **options) -> Metric:
    """A statistic of the whole record set (e.g. BBQ bias score), with a bootstrap CI and p-value only."""
    return Metric(benchmark, name, "statistic", higher_is_better, fn=fn, where=dict(where or {}), **options)


def metric_key(metrics_fn: Callable, key: str, absolute: bool = False) -> Callable:
    """Wrap `metrics_<bench>(records) -> dict` into `records -> float` picking `key` (with `absolute`: its |value|)."""

    def fn(records):
        value = float(metrics_fn(records)[key])
        return abs(value) if absolute else value

    name = f"{getattr(metrics_fn, '__name__', 'metrics')}[{key}]"
    fn.__name__ = f"abs({name})" if absolute else name
    return fn


def accuracy(benchmark: str, name: str, where=None, claim: str | None = None) -> Metric:
    """An accuracy: share of items answered correctly (the records' `correct`), higher is better, change in %."""
    return binary_metric(benchmark, name, where=where, claim=claim)


def score(benchmark: str, name: str, claim: str | None = None, training_target: bool = False) -> Metric:
    """A mean per-item score (the records' `score`), higher is better, change in %."""
    return continuous_metric(benchmark, name, claim=claim, training_target=training_target)


def form_share(benchmark: str, name: str, column: str) -> Metric:
    """A degenerate-form share: mean of a per-item 0/1 flag where lower is better (McNemar), change in points."""
    return binary_metric(benchmark, name, column=column, higher_is_better=False, change="points",
                         degenerate_form=True)


def form_score(benchmark: str, name: str, column: str) -> Metric:
    """A degenerate-form score per item where lower means more degenerate (distinct-2, length), change in %."""
    return continuous_metric(benchmark, name, column=column, degenerate_form=True)


def form_overlap(benchmark: str, name: str, column: str) -> Metric:
    """A degenerate-form share per item where higher is worse (word pairs a reply shares with the model's replies to
    other prompts), sign-flip test, change in points. The per-item value reads the model's other replies, so the
    items are not fully independent: a watch, not an estimate of a population."""
    return continuous_metric(benchmark, name, column=column, higher_is_better=False, change="points",
                             degenerate_form=True)


def rate(benchmark: str, name: str, fn: Callable, claim: str | None = None) -> Metric:
    """A 0-1 rate of the item set where lower is better (flip rate, accuracy drop), change in percentage points."""
    return statistic_metric(benchmark, name, fn, higher_is_better=False, change="points", claim=claim)


def bias_score(benchmark: str, name: str, fn: Callable, claim: str | None = None) -> Metric:
    """A bias score already x100 (0 = unbiased; compare |s|), lower is better, change in points."""
    return statistic_metric(benchmark, name, fn, higher_is_better=False, change="points", points_per_unit=1.0,
                            claim=claim)


# ---------------------------------------------------------------- paired comparisons

# (model_a, model_b): difference = metric(a) - metric(b); the first is the paper's main contrast (paper.md section 4)
CONTRASTS = (("human", "reverse"), ("human", "base"), ("reverse", "base"))
MODELS = ("base", "human", "reverse")  # the three models every run compares (labels of notebook 04's records)
MAIN_CONTRAST = "human_vs_reverse"
PAIR_FIELDS = ("condition", "context_condition", "question_polarity")  # part of an item's identity, where present
# Classes beyond stats.CLASSES: no items at all (e.g. opinion sycophancy offline), or a value that is undefined
# (e.g. BBQ's bias ratio with no non-unknown answer). Both stay out of every count of the three classes.
NOT_MEASURED, UNDEFINED = "not measured", "undefined"

RESULT_COLUMNS = [
    "base_model", "seed", "contrast", "model_a", "model_b", "benchmark", "metric", "kind", "higher_is_better",
    "training_target", "degenerate_form", "n_items", "value_a", "value_b", "diff", "change", "change_unit",
    "improvement", "ci_low", "ci_high", "ci_method", "test", "p_value", "p_holm", "cls",
]


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
    """Per-item values of both models, keeping only items where both are present (pairwise complete); none when the
    records have no such column (no benchmark that writes it was run)."""
    if column not in a.columns or column not in b.columns:
        return np.array([]), np.array([])
    va, vb = _as_float(a[column]), _as_float(b[column])
    ok = np.isfinite(va) & np.isfinite(vb)
    return va[ok], vb[ok]


def paired_values(records, metric: Metric, model_a: str, model_b: str, base_model=None, seed=None) -> pd.DataFrame:
    """The items one comparison of a per-item metric reads, as `compare` reads them: columns `item`, `model_a`,
    `model_b` (pairwise complete, in the order the bootstrap and the permutation test resample them). For notebook
    05's traced comparison; `base_model` / `seed`: the run (default: the records' first)."""
    df = to_frame(records)
    base_model = df["base_model"].iloc[0] if base_model is None else base_model
    sub = df[df["base_model"] == base_model]
    seed = sub.loc[sub["model"] != "base", "seed"].iloc[0] if seed is None else seed
    a, b = _paired(_select(_model_rows(sub, model_a, seed), metric), _select(_model_rows(sub, model_b, seed), metric),
                   f"{metric.benchmark}/{metric.name}")
    if metric.column not in a.columns:
        return pd.DataFrame(columns=["item", model_a, model_b])
    va, vb = _as_float(a[metric.column]), _as_float(b[metric.column])
    ok = np.isfinite(va) & np.isfinite(vb)
    return pd.DataFrame({"item": a["item_id"].to_numpy()[ok], model_a: va[ok], model_b: vb[ok]})


def _item_groups(df: pd.DataFrame) -> list[list[int]]:
    """Row positions per item_id, in order of first appearance: an item's records (e.g. first and challenged)
    together."""
    groups: dict = {}
    for i, item_id in enumerate(df["item_id"]):
        groups.setdefault(item_id, []).append(i)
    return list(groups.values())


def _resampled(records: list[dict], groups: list[list[int]], idx) -> list[dict]:
    """The records of resampled items; the k-th repeat of an item gets item_id `<id>#k`, so per-item metrics
    (keyed by item_id, e.g. flip rate) count it again instead of merging it with its first draw."""
    seen: dict = {}
    out = []
    for g in idx:
        k = seen[g] = seen.get(g, -1) + 1
        out += [records[i] if k == 0 else {**records[i], "item_id": f"{records[i]['item_id']}#{k}"}
                for i in groups[g]]
    return out


def _statistic(a: pd.DataFrame, b: pd.DataFrame, metric: Metric,
               **ci_kw) -> tuple[int, float, float, stats.BootstrapCI]:
    """(n items, value a, value b, CI) of a statistic metric, resampling items with all their records together."""
    ra, rb = _row_dicts(a), _row_dicts(b)
    groups = _item_groups(a)
    if not groups:
        return 0, float("nan"), float("nan"), stats.BootstrapCI(float("nan"), float("nan"), np.array([]))

    def diff(idx):
        return metric.fn(_resampled(ra, groups, idx)) - metric.fn(_resampled(rb, groups, idx))

    return len(groups), metric.fn(ra), metric.fn(rb), stats.index_bootstrap_ci(len(groups), diff, **ci_kw)


def _change(metric: Metric, value_a: float, value_b: float) -> float:
    """Change a vs b in the metric's unit: relative % of |value_b|, or percentage points."""
    if metric.change == "points":
        return metric.points_per_unit * (value_a - value_b)
    return stats.relative_change(value_a, value_b)


def compare_metric(
    a: pd.DataFrame, b: pd.DataFrame, metric: Metric, n_resamples: int = 2000, confidence_level: float = 0.95,
    ci_method: str = "BCa", continuous_test: str = "sign_flip", mcnemar_method: str = "midp", seed: int = 0,
) -> dict:
    """Compare one metric between two models' paired records: values, diff (a - b), CI and p-value."""
    label = f"{metric.benchmark}/{metric.name}"
    a, b = _paired(a, b, label)
    if metric.kind == "statistic":
        n, value_a, value_b, ci = _statistic(a, b, metric, n_resamples=n_resamples,
                                             confidence_level=confidence_level, method=ci_method, seed=seed)
        test, p = "bootstrap", stats.bootstrap_pvalue(ci.distribution)
    else:
        va, vb = _values(a, b, metric.column)
        n = len(va)
        value_a = float(va.mean()) if n else float("nan")
        value_b = float(vb.mean()) if n else float("nan")
        ci = stats.paired_bootstrap_ci(va, vb, n_resamples=n_resamples, confidence_level=confidence_level,
                                       method=ci_method, seed=seed)
        if metric.kind == "binary":
            counts = stats.mcnemar_counts(va > 0.5, vb > 0.5)
            test, p = f"mcnemar_{mcnemar_method}", stats.mcnemar(*counts, mcnemar_method)
        elif continuous_test == "wilcoxon":
            test, p = "wilcoxon", stats.wilcoxon_test(va - vb)
        else:
            test, p = "sign_flip", stats.sign_flip_test(va - vb, n_resamples=n_resamples, seed=seed)
    if n == 0:
        p = float("nan")
    change = _change(metric, value_a, value_b)
    improvement = (change if metric.higher_is_better else -change) + 0.0  # + 0.0: never -0.0
    return {
        "benchmark": metric.benchmark, "metric": metric.name, "kind": metric.kind,
        "higher_is_better": metric.higher_is_better, "training_target": metric.training_target,
        "degenerate_form": metric.degenerate_form, "n_items": n,
        "value_a": value_a, "value_b": value_b, "diff": value_a - value_b, "change": change,
        "change_unit": CHANGES[metric.change], "improvement": improvement,
        "ci_low": ci.low, "ci_high": ci.high, "ci_method": ci.method, "test": test, "p_value": p,
    }


def compare(
    records, metrics: list[Metric], contrasts=CONTRASTS, n_resamples: int = 2000, confidence_level: float = 0.95,
    ci_method: str = "BCa", continuous_test: str = "sign_flip", mcnemar_method: str = "midp",
    alpha: float = 0.05, seed: int = 0,
) -> pd.DataFrame:
    """All paired comparisons: one row per (base_model, seed, contrast, metric), columns RESULT_COLUMNS.

    Holm's correction runs across the metrics within each (base_model, seed, contrast): one family per
    question "does this training change this model's benchmarks?", and the degenerate-form rows as a family of their
    own ("does it write more degenerate text?"). Our choice; the paper gives none.
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


def _class(r, alpha: float) -> str:
    """stats.classify for a measured, defined result; NOT_MEASURED without items, UNDEFINED without a value."""
    if not r.n_items:
        return NOT_MEASURED
    if not (np.isfinite(r.value_a) and np.isfinite(r.value_b)):
        return UNDEFINED
    return stats.classify(r.diff, (r.ci_low, r.ci_high), r.p_holm, bool(r.higher_is_better), alpha)


def add_classes(results: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Add `p_holm` (Holm within base_model x seed x contrast, degenerate-form rows apart) and `cls` (see `_class`)
    to a results table."""
    out = results.copy()
    out["p_holm"] = np.nan
    out["degenerate_form"] = is_form(out)
    for _, idx in out.groupby(["base_model", "seed", "contrast", "degenerate_form"], sort=False).groups.items():
        out.loc[idx, "p_holm"] = stats.holm(out.loc[idx, "p_value"].to_numpy(float))
    out["cls"] = [_class(r, alpha) for r in out.itertuples()]
    return out[RESULT_COLUMNS]


def is_form(results: pd.DataFrame) -> pd.Series:
    """Per row: a degenerate-form row (False where the table has no such column)."""
    if "degenerate_form" not in results.columns:
        return pd.Series(False, index=results.index)
    return results["degenerate_form"].fillna(False).astype(bool)


def benchmark_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The rows that are neither the training target nor a degenerate-form row: what the paper's share counts."""
    return results[~results["training_target"].astype(bool) & ~is_form(results)]


def measured(results: pd.DataFrame) -> pd.DataFrame:
    """The rows in one of the three classes (not 'not measured', not 'undefined'): what every count counts."""
    return results[results["cls"].isin(stats.CLASSES)]


"""Paired comparisons of base / human-like / reverse models on benchmark item records (notebook 05).

Input: notebook 04's per-item records (`samples.jsonl`, one per benchmark, item, model; optionally `base_model` and
`seed`) and the metrics to compare (hmxnb.metrics.Metric; the benchmarks' own: hmxnb.bench.registry.compare_metrics).
Output: one row per (base_model, seed, contrast, metric): difference, change (relative % for accuracies and scores,
percentage points for rates and bias scores), 95% CI, p-value, Holm-adjusted p and class. Seed summaries and the
paper's numbers: hmxnb.aggregate; the claims check: hmxnb.claims.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hmxnb import stats
from hmxnb.metrics import CHANGES, Metric

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

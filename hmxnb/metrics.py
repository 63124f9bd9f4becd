"""What one compared metric is: `Metric`, and the four kinds the benchmarks declare (accuracy, score, rate, bias score).

A benchmark (hmxnb.bench.benchmark.Benchmark) lists the metrics notebook 05 compares as `Metric` objects built with
`accuracy`, `score`, `rate` or `bias_score`; hmxnb.bench.registry.compare_metrics gathers them in registry order and
hmxnb.compare compares them. The kind fixes how a metric is tested and how its change is counted:

- accuracy: mean of a per-item 0/1 column, McNemar; change relative (%).
- score: mean of a per-item score (MC2, feeling expression), sign-flip test; change relative (%).
- rate: a 0-1 statistic of the item set where lower is better (flip rate, accuracy drop), bootstrap; change in
  percentage points, since a relative change explodes near 0 (0.03 -> 0.04 reads as +33%).
- bias score: a statistic already x100 (BBQ's |s|, 0 = unbiased), bootstrap; change in points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

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


def rate(benchmark: str, name: str, fn: Callable, claim: str | None = None) -> Metric:
    """A 0-1 rate of the item set where lower is better (flip rate, accuracy drop), change in percentage points."""
    return statistic_metric(benchmark, name, fn, higher_is_better=False, change="points", claim=claim)


def bias_score(benchmark: str, name: str, fn: Callable, claim: str | None = None) -> Metric:
    """A bias score already x100 (0 = unbiased; compare |s|), lower is better, change in points."""
    return statistic_metric(benchmark, name, fn, higher_is_better=False, change="points", points_per_unit=1.0,
                            claim=claim)

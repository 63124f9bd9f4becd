"""The benchmarks, in run order: one `Benchmark` per line, defined in its own module (hmxnb.bench.benchmark says
what one holds). Notebook 04 loads, evaluates and tabulates them from here (hmxnb.evaluate); notebook 05 compares
their metrics (`compare_metrics`) and checks the paper's claims they feed (hmxnb.claims).

Adding a benchmark: a module under hmxnb/bench/ with its loader, evaluate, metrics and `BENCHMARK = Benchmark(...)`,
and one line below. A loader may use the items of the benchmarks listed before it.
"""

from __future__ import annotations

from hmxnb.compare import Metric

from . import bbq, emotion, expression, sycophancy, truthfulqa
from .benchmark import Benchmark

REGISTRY: list[Benchmark] = [
    truthfulqa.BENCHMARK,
    bbq.BENCHMARK,
    sycophancy.ARE_YOU_SURE_BENCHMARK,
    sycophancy.SUGGESTED_BENCHMARK,
    sycophancy.OPINION_BENCHMARK,
    emotion.BENCHMARK,
    expression.BENCHMARK,  # generates and judges replies: the slowest, last
]


def registered(benchmarks: list[Benchmark] | None = None) -> list[Benchmark]:
    """`benchmarks`, or REGISTRY as it is at the call (so a test or notebook that extends it is seen everywhere)."""
    return REGISTRY if benchmarks is None else benchmarks


def compare_metrics(benchmarks: list[Benchmark] | None = None) -> list[Metric]:
    """The metrics notebook 05 compares, in registry order (default: REGISTRY as it is now).

    Accuracies are binary per item (McNemar); MC2 and feeling expression are continuous per item (paired sign-flip);
    bias scores, flip rate and accuracy drop are statistics of the item set (paired bootstrap). Bias is compared as
    |s| (0 = unbiased), so a swing to the anti-stereotyped side does not count as an improvement. Rates and bias
    scores change in percentage points (bias scores are already x100), accuracies and scores in relative %; the
    two feeling-expression metrics are the training target.
    """
    return [metric for b in registered(benchmarks) for metric in b.compared]


def headline(benchmarks: list[Benchmark] | None = None) -> list[tuple[str, str, bool | None]]:
    """(benchmark, metrics key, higher is better) of every headline metric notebook 04 shows, in registry order."""
    return [(b.name, key, better) for b in registered(benchmarks) for key, better in b.headline]

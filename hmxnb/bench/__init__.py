"""Benchmarks: each is a loader (`load_<bench>`), a prompt builder, `evaluate_<bench>` -> records, a pure
`metrics_<bench>(records)`, and the `Benchmark` that tells the notebooks what to do with them
(hmxnb.bench.benchmark); hmxnb.bench.registry lists them in run order. Log-likelihoods come from
`hmxnb.loglik.score_continuations` (lm-eval's definition)."""

from .bbq import evaluate_bbq, load_bbq, metrics_bbq
from .common import BenchmarkDataUnavailable
from .emotion import evaluate_emobench, load_emobench, metrics_emobench
from .sycophancy import (
    evaluate_anthropic_sycophancy,
    evaluate_are_you_sure,
    evaluate_suggested_answer,
    load_anthropic_sycophancy,
    mc_items_from_truthfulqa,
    metrics_anthropic_sycophancy,
    metrics_are_you_sure,
    metrics_suggested_answer,
)
from .truthfulqa import evaluate_truthfulqa, load_truthfulqa, metrics_truthfulqa

__all__ = [
    "BenchmarkDataUnavailable",
    "evaluate_anthropic_sycophancy", "evaluate_are_you_sure", "evaluate_bbq", "evaluate_emobench",
    "evaluate_suggested_answer", "evaluate_truthfulqa",
    "load_anthropic_sycophancy", "load_bbq", "load_emobench", "load_truthfulqa", "mc_items_from_truthfulqa",
    "metrics_anthropic_sycophancy", "metrics_are_you_sure", "metrics_bbq", "metrics_emobench",
    "metrics_suggested_answer", "metrics_truthfulqa",
]

"""The metrics notebook 05 compares: one registry of hmxnb.compare.Metric, in the order the report lists them."""

from __future__ import annotations

from hmxnb import bench
from hmxnb.compare import binary_metric, continuous_metric, metric_key, statistic_metric


def compare_metrics():
    """The metrics notebook 05 compares, as hmxnb.compare.Metric objects (a plain list: the registry).

    Accuracies are binary per item (McNemar); MC2 and feeling expression are continuous per item (paired sign-flip);
    bias scores, flip rate and accuracy drop are statistics of the item set (paired bootstrap). Bias is compared as
    |s| (0 = unbiased), so a swing to the anti-stereotyped side does not count as an improvement. Rates and bias
    scores change in percentage points (bias scores are already x100), accuracies and scores in relative %; the
    two feeling-expression metrics are the training target.
    """
    rate, bias = {"change": "points"}, {"change": "points", "points_per_unit": 1.0}
    return [
        binary_metric("truthfulqa_mc1", "mc1"),
        continuous_metric("truthfulqa_mc2", "mc2"),
        binary_metric("bbq", "acc_ambig", where={"context_condition": "ambig"}),
        binary_metric("bbq", "acc_disambig", where={"context_condition": "disambig"}),
        statistic_metric("bbq", "abs_bias_disambig", metric_key(bench.metrics_bbq, "s_dis", absolute=True), higher_is_better=False, **bias),
        statistic_metric("bbq", "abs_bias_ambig", metric_key(bench.metrics_bbq, "s_amb", absolute=True), higher_is_better=False, **bias),
        binary_metric("sycophancy_are_you_sure", "acc_after_challenge", where={"condition": "challenged"}),
        statistic_metric("sycophancy_are_you_sure", "flip_rate", metric_key(bench.metrics_are_you_sure, "flip_rate"), higher_is_better=False, **rate),
        binary_metric("sycophancy_suggested", "acc_with_wrong_suggestion", where={"condition": "suggested"}),
        statistic_metric("sycophancy_suggested", "acc_drop", metric_key(bench.metrics_suggested_answer, "acc_drop"), higher_is_better=False, **rate),
        statistic_metric("sycophancy_anthropic", "sycophancy_rate", metric_key(bench.metrics_anthropic_sycophancy, "sycophancy_rate"), higher_is_better=False, **rate),
        binary_metric("emobench_eu", "acc"),
        binary_metric("emobench_ea", "acc"),
        continuous_metric("feeling_expression", "expression_score", training_target=True),
        continuous_metric("affect_statements", "affect_statements", training_target=True),
    ]

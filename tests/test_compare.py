"""Tests for hmxnb/compare.py: a small synthetic record set with known effects."""

import numpy as np
import pandas as pd
import pytest

from hmxnb import compare as C
from hmxnb import stats

N = 200  # items per benchmark


def _bias_score(records):
    """A ratio statistic in the spirit of BBQ's s_DIS: 2 * share biased among non-unknown answers - 1."""
    answered = [r for r in records if not r["unknown"]]
    return 2 * np.mean([r["biased"] for r in answered]) - 1 if answered else float("nan")


def _records(seeds=(0,), base_model="tiny", drop_human=()):
    """Records with known effects of human vs reverse (base == reverse in every field):

    truthfulqa/correct: reverse right on even items (50%), human on i % 4 != 3 (75%): +0.25, +50%.
    feelings/score: reverse 2.0, human 3.0 plus zero-mean item noise: +1.0, +50%.
    bbq/biased (disambig): reverse biased on i % 4 != 0, human on i % 4 == 0: bias score 0.5 -> -0.5.
    control/correct: identical for every model: no change.
    """
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.1, N)
    noise -= noise.mean()  # mean exactly 0: the effect is exactly +1.0
    out = []
    for seed in seeds:
        for model in ("base", "human", "reverse"):
            if model == "base" and seed != seeds[0]:
                continue  # the untrained base is evaluated once and serves every seed
            human = model == "human"
            for i in range(N):
                if human and i in drop_human:
                    continue
                common = {"item_id": f"q{i}", "model": model, "seed": seed, "base_model": base_model}
                out.append({**common, "benchmark": "truthfulqa", "correct": (i % 4 != 3) if human else (i % 2 == 0)})
                out.append({**common, "benchmark": "feelings", "score": 3.0 + noise[i] if human else 2.0})
                out.append({**common, "benchmark": "bbq", "context_condition": "disambig", "unknown": False,
                            "biased": (i % 4 == 0) if human else (i % 4 != 0)})
                out.append({**common, "benchmark": "control", "correct": i % 3 == 0})
    return out


METRICS = [
    C.binary_metric("truthfulqa", "mc1"),
    C.continuous_metric("feelings", "score"),
    C.statistic_metric("bbq", "bias_disambig", _bias_score, higher_is_better=False, where={"context_condition": "disambig"}),
    C.binary_metric("control", "accuracy"),
]


@pytest.fixture(scope="module")
def results():
    return C.compare(_records(), METRICS, n_resamples=300, seed=0)


@pytest.mark.parametrize(
    "contrast, metric, diff, rel, cls",
    [
        ("human_vs_reverse", "mc1", 0.25, 50.0, "enhanced"),  # 0.75 vs 0.50
        ("human_vs_reverse", "score", 1.0, 50.0, "enhanced"),  # 3 vs 2 on the rubric scale
        ("human_vs_reverse", "bias_disambig", -1.0, -200.0, "enhanced"),  # bias 0.5 -> -0.5, lower is better
        ("human_vs_reverse", "accuracy", 0.0, 0.0, "no significant change"),  # identical control
        ("human_vs_base", "mc1", 0.25, 50.0, "enhanced"),  # base behaves like reverse here
        ("reverse_vs_base", "mc1", 0.0, 0.0, "no significant change"),  # identical records
        ("reverse_vs_base", "bias_disambig", 0.0, 0.0, "no significant change"),  # identical ratio statistic
    ],
)
def test_compare_known_effects(results, contrast, metric, diff, rel, cls):
    row = results[(results["contrast"] == contrast) & (results["metric"] == metric)].iloc[0]
    assert row["n_items"] == N
    assert row["diff"] == pytest.approx(diff, abs=1e-9)
    assert row["rel_change_pct"] == pytest.approx(rel, abs=1e-6)
    assert row["cls"] == cls
    if cls == "enhanced":
        assert row["ci_low"] <= row["diff"] <= row["ci_high"]
        assert np.sign(row["ci_low"]) == np.sign(row["ci_high"])  # CI excludes 0


def test_compare_columns_and_tests(results):
    assert list(results.columns) == C.RESULT_COLUMNS
    assert len(results) == 3 * len(METRICS)  # three contrasts x four metrics, one model, one seed
    tests = dict(zip(results["metric"], results["test"]))
    assert tests == {"mc1": "mcnemar_midp", "score": "sign_flip", "bias_disambig": "bootstrap", "accuracy": "mcnemar_midp"}


def test_compare_mcnemar_matches_hand_count(results):
    # human right / reverse wrong on i % 4 == 1 (50 items); human wrong / reverse right: none.
    row = results[(results["contrast"] == "human_vs_reverse") & (results["metric"] == "mc1")].iloc[0]
    assert row["p_value"] == pytest.approx(stats.mcnemar(50, 0, "midp"))


def test_holm_within_contrast(results):
    for _, g in results.groupby("contrast"):
        np.testing.assert_allclose(g["p_holm"], stats.holm(g["p_value"]))
        assert (g["p_holm"] >= g["p_value"] - 1e-12).all()


def test_improvement_sign_follows_direction(results):
    row = results[(results["contrast"] == "human_vs_reverse") & (results["metric"] == "bias_disambig")].iloc[0]
    assert row["improvement_pct"] == pytest.approx(200.0)  # a 200% drop in a lower-is-better score is +200%


def test_pairing_uses_common_items_only():
    res = C.compare(_records(drop_human=range(0, 40)), METRICS[:1], contrasts=[("human", "reverse")], n_resamples=200)
    assert res["n_items"].tolist() == [N - 40]


def test_records_in_any_order_give_same_result():
    recs = _records()
    shuffled = [recs[i] for i in np.random.default_rng(1).permutation(len(recs))]
    a = C.compare(recs, METRICS[:2], n_resamples=200)
    b = C.compare(pd.DataFrame(shuffled), METRICS[:2], n_resamples=200)
    pd.testing.assert_frame_equal(a, b)


def test_duplicate_items_raise():
    recs = _records()
    recs.append(dict(recs[0]))
    with pytest.raises(ValueError, match="duplicate item keys"):
        C.compare(recs, METRICS[:1], n_resamples=50)


def test_missing_correctness_is_dropped_pairwise():
    recs = _records()
    for r in recs:
        if r["benchmark"] == "truthfulqa" and r["model"] == "reverse" and r["item_id"] in ("q0", "q1"):
            r["correct"] = None  # unparseable answer
    res = C.compare(recs, METRICS[:1], contrasts=[("human", "reverse")], n_resamples=50)
    assert res["n_items"].tolist() == [N - 2]


def test_seeds_and_models_aggregate():
    recs = _records(seeds=(0, 1, 2)) + _records(seeds=(0, 1, 2), base_model="other")
    res = C.compare(recs, METRICS[:1], contrasts=[("human", "reverse"), ("human", "base")], n_resamples=100)
    assert len(res) == 2 * 3 * 2  # models x seeds x contrasts; base (seed 0 only) serves every seed
    s = C.seed_summary(res)
    assert s["n_seeds"].tolist() == [3] * 4
    assert s["diff_sd"].tolist() == pytest.approx([0.0] * 4)  # identical seeds: sd 0, shown, not dropped
    table = C.model_metric_table(res)
    assert table.loc["tiny", "truthfulqa/mc1"] == "+50.0 ± 0.0"


def test_records_without_model_and_seed_fields():
    recs = [{k: v for k, v in r.items() if k not in ("seed", "base_model")} for r in _records()]
    res = C.compare(recs, METRICS[:1], contrasts=[("human", "reverse")], n_resamples=50)
    assert res[["base_model", "seed"]].values.tolist() == [["model", 0]]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kind="ratio"), "kind 'ratio'"),  # unknown kind
        (dict(kind="statistic"), "needs fn"),  # a statistic needs its function
        (dict(kind="binary"), "needs column"),  # binary needs the per-item column
    ],
)
def test_metric_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        C.Metric("bbq", "x", **kwargs)


def test_metric_key_wraps_metrics_function():
    def metrics_bbq(records):
        return {"acc": 0.5, "bias_disambig": len(records) / 10}

    fn = C.metric_key(metrics_bbq, "bias_disambig")
    assert fn([{}] * 3) == pytest.approx(0.3)
    assert fn.__name__ == "metrics_bbq[bias_disambig]"


def _results_frame(rows):
    """A results table from (base_model, seed, benchmark, metric, improvement_pct, cls) rows."""
    df = pd.DataFrame(rows, columns=["base_model", "seed", "benchmark", "metric", "improvement_pct", "cls"])
    df["contrast"], df["higher_is_better"] = C.MAIN_CONTRAST, True
    for col in ("value_a", "value_b", "diff", "p_value"):
        df[col] = 0.0
    df["rel_change_pct"] = df["improvement_pct"]
    return df


SUMMARY_ROWS = [
    ("gemma", 0, "bbq", "accuracy_ambig", -14.0, "degraded"),  # seed mean -15.0: the largest degradation
    ("gemma", 1, "bbq", "accuracy_ambig", -16.0, "degraded"),
    ("gemma", 0, "truthfulqa", "mc1", -3.0, "degraded"),  # seed mean -2.5: not small
    ("gemma", 1, "truthfulqa", "mc1", -2.0, "no significant change"),
    ("qwen", 0, "bbq", "accuracy_ambig", 1.0, "no significant change"),  # improved
    ("qwen", 1, "bbq", "accuracy_ambig", -1.0, "no significant change"),  # seed mean 0.0: counts as small
    ("qwen", 0, "truthfulqa", "mc1", -1.5, "no significant change"),  # seed mean -1.5: small degradation
    ("qwen", 1, "truthfulqa", "mc1", -1.5, "no significant change"),
]


def test_paper_summary():
    summ = C.paper_summary(_results_frame(SUMMARY_ROWS))
    assert summ["n_results"] == 4
    assert summ["n_improved_or_small"] == 2  # qwen's two
    assert summ["share_pct"] == pytest.approx(50.0)
    assert summ["n_degraded_over_10"] == 1
    assert summ["largest_degradation"]["base_model"] == "gemma"
    assert summ["largest_degradation"]["degradation_pct"] == pytest.approx(15.0)
    assert summ["share_by_seed"] == {"0": pytest.approx(50.0), "1": pytest.approx(50.0)}  # per seed: -3/-14 and -2/-16 out


@pytest.mark.parametrize(
    "claim, agrees",
    [
        ("Human-like models are more robust to sycophancy-inducing questions", "n/a"),  # no sycophancy rows
        ("Truthful question answering degrades", "partly"),  # 1 of 4 rows degraded
        ("Share of results improved or degraded by < 2%", "no"),  # 50% vs 81.4%: beyond 10 points
        ("Largest degradation", "yes"),  # also BBQ ambiguous accuracy
        ("Results degraded by more than 10%", "yes"),  # one, as in the paper
    ],
)
def test_check_claims(claim, agrees):
    table = C.check_claims(_results_frame(SUMMARY_ROWS))
    assert list(table.columns) == ["claim", "paper", "ours", "agrees?"]
    assert table.set_index("claim").loc[claim, "agrees?"] == agrees

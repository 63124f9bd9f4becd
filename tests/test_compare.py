"""Tests for hmxnb/compare.py: a small synthetic record set with known effects."""

import numpy as np
import pandas as pd
import pytest

from hmxnb import aggregate, claims, paper, stats
from hmxnb import compare as C

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
    C.statistic_metric("bbq", "bias_disambig", _bias_score, higher_is_better=False,
                       where={"context_condition": "disambig"}),
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
    assert row["change"] == pytest.approx(rel, abs=1e-6) and row["change_unit"] == "%"
    assert row["cls"] == cls
    if cls == "enhanced":
        assert row["ci_low"] <= row["diff"] <= row["ci_high"]
        assert np.sign(row["ci_low"]) == np.sign(row["ci_high"])  # CI excludes 0


def test_compare_columns_and_tests(results):
    assert list(results.columns) == C.RESULT_COLUMNS
    assert len(results) == 3 * len(METRICS)  # three contrasts x four metrics, one model, one seed
    tests = dict(zip(results["metric"], results["test"]))
    assert tests == {"mc1": "mcnemar_midp", "score": "sign_flip", "bias_disambig": "bootstrap",
                     "accuracy": "mcnemar_midp"}


def test_compare_mcnemar_matches_hand_count(results):
    # human right / reverse wrong on i % 4 == 1 (50 items); human wrong / reverse right: none.
    row = results[(results["contrast"] == "human_vs_reverse") & (results["metric"] == "mc1")].iloc[0]
    assert row["p_value"] == pytest.approx(stats.mcnemar(50, 0, "midp"))


def test_holm_within_contrast(results):
    for _, g in results.groupby("contrast"):
        np.testing.assert_allclose(g["p_holm"], stats.holm(g["p_value"]))
        assert (g["p_holm"] >= g["p_value"] - 1e-12).all()


def test_degenerate_form_rows_are_a_holm_family_of_their_own_and_out_of_the_papers_share():
    records = _records()
    for r in records:
        if r["benchmark"] == "feelings":  # human repeats itself on every 4th item, the others never
            r["repeats"] = r["model"] == "human" and int(r["item_id"][1:]) % 4 == 0
    form = C.form_share("feelings", "repeats_sentence_share", "repeats")
    res = C.compare(records, [*METRICS, form], n_resamples=300, seed=0)
    row = res[(res["contrast"] == "human_vs_base") & (res["metric"] == "repeats_sentence_share")].iloc[0]
    assert bool(row["degenerate_form"]) and row["diff"] == pytest.approx(0.25) and row["change_unit"] == "pp"
    assert row["cls"] == "degraded"  # more repetition is worse
    assert row["p_holm"] == pytest.approx(row["p_value"])  # alone in its family: Holm leaves it as it is
    for _, g in res[~res["degenerate_form"]].groupby("contrast"):  # the other rows: Holm over their four only
        np.testing.assert_allclose(g["p_holm"], stats.holm(g["p_value"]))
    assert len(C.benchmark_rows(res)) == len(res) - 3  # one form row per contrast left out
    same = aggregate.paper_summary(res)["n_results"] == aggregate.paper_summary(
        C.compare(_records(), METRICS, n_resamples=300, seed=0))["n_results"]
    assert same  # the paper's share counts the same results with or without the watch


def test_improvement_sign_follows_direction(results):
    row = results[(results["contrast"] == "human_vs_reverse") & (results["metric"] == "bias_disambig")].iloc[0]
    assert row["improvement"] == pytest.approx(200.0)  # a 200% drop in a lower-is-better score is +200%


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
    s = aggregate.seed_summary(res)
    assert s["n_seeds"].tolist() == [3] * 4
    assert s["diff_sd"].tolist() == pytest.approx([0.0] * 4)  # identical seeds: sd 0, shown, not dropped
    table = aggregate.model_metric_table(res)
    assert table.loc["truthfulqa/mc1", "tiny"] == "+50.0 ± 0.0%"  # a row per metric, a column per model


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


def _results_frame(rows, unit="%", target=False):
    """A results table from (base_model, seed, benchmark, metric, improvement, cls) rows."""
    df = pd.DataFrame(rows, columns=["base_model", "seed", "benchmark", "metric", "improvement", "cls"])
    df["contrast"], df["higher_is_better"] = C.MAIN_CONTRAST, True
    df["training_target"], df["change_unit"], df["n_items"] = target, unit, 100
    for col in ("value_a", "value_b", "diff", "p_value"):
        df[col] = 0.5
    df["change"] = df["improvement"]
    return df


SUMMARY_ROWS = [  # registry names: the claims follow the metrics the benchmarks declare (hmxnb.bench)
    ("gemma", 0, "bbq", "acc_ambig", -14.0, "degraded"),  # seed mean -15.0: the largest degradation
    ("gemma", 1, "bbq", "acc_ambig", -16.0, "degraded"),
    ("gemma", 0, "truthfulqa_mc1", "mc1", -3.0, "degraded"),  # seed mean -2.5: not small
    ("gemma", 1, "truthfulqa_mc1", "mc1", -2.0, "no significant change"),
    ("qwen", 0, "bbq", "acc_ambig", 1.0, "no significant change"),  # improved
    ("qwen", 1, "bbq", "acc_ambig", -1.0, "no significant change"),  # seed mean 0.0: counts as small
    ("qwen", 0, "truthfulqa_mc1", "mc1", -1.5, "no significant change"),  # seed mean -1.5: small degradation
    ("qwen", 1, "truthfulqa_mc1", "mc1", -1.5, "no significant change"),
]


def test_paper_summary():
    summ = aggregate.paper_summary(_results_frame(SUMMARY_ROWS))
    assert summ["n_results"] == 4
    assert summ["n_improved_or_small"] == 2  # qwen's two
    assert summ["share_pct"] == pytest.approx(50.0)
    assert summ["n_degraded_over_10"] == 1
    assert summ["largest_degradation"]["base_model"] == "gemma"
    assert summ["largest_degradation"]["degradation"] == pytest.approx(15.0)
    # per seed: -3/-14 and -2/-16 out
    assert summ["share_by_seed"] == {"0": pytest.approx(50.0), "1": pytest.approx(50.0)}


@pytest.mark.parametrize(
    "claim, agrees",
    [
        ("Human-like models are more robust to sycophancy-inducing questions", "n/a"),  # no sycophancy rows
        ("Truthful question answering degrades", "partly"),  # 1 of 4 rows degraded
        ("Share of results improved or degraded by < 2% (< 2 pp for rates and bias scores; training target excluded)",
         "no"),  # 50% vs 81.4%: beyond 10 points
        ("Largest degradation", "yes"),  # also BBQ ambiguous accuracy
        ("Results degraded by more than 10% (10 pp for rates and bias scores)", "yes"),  # one, as in the paper
    ],
)
def test_check_claims(claim, agrees):
    table = claims.check_claims(_results_frame(SUMMARY_ROWS))
    assert list(table.columns) == ["claim", "paper", "ours", "agrees?"]
    assert table.set_index("claim").loc[claim, "agrees?"] == agrees


def test_claims_follow_the_claim_each_metric_declares_not_its_name():
    """A row feeds the claim its metric names (Metric.claim), whatever the benchmark is called: 'sycophancy' in a
    name no longer decides it (issue 21: claims were matched by substrings such as "syco")."""
    rows = _results_frame([("m", 0, "sycophancy_probe", "acc", 5.0, "enhanced"),  # named like it, declares no claim
                           ("m", 0, "odd_name", "holds", 5.0, "degraded")])  # declares the sycophancy claim
    metrics = [C.binary_metric("sycophancy_probe", "acc"), C.binary_metric("odd_name", "holds", claim=paper.SYCOPHANCY)]
    table = claims.check_claims(rows, metrics=metrics).set_index("claim")
    row = table.loc["Human-like models are more robust to sycophancy-inducing questions"]
    assert row["ours"].startswith("degraded in 1 of 1") and row["agrees?"] == "no"  # only odd_name counted
    assert table.loc["Largest degradation", "agrees?"] == "no"  # neither metric feeds the largest-degradation claim


def test_largest_degradation_agrees_on_the_metric_that_declares_it():
    rows = _results_frame([("m", 0, "renamed", "ambiguity_score", -12.0, "degraded")])
    declared = [C.binary_metric("renamed", "ambiguity_score", claim=paper.LARGEST_DEGRADATION)]
    assert claims.check_claims(rows, metrics=declared).set_index("claim").loc["Largest degradation", "agrees?"] == "yes"
    assert claims.check_claims(rows, metrics=[]).set_index("claim").loc["Largest degradation", "agrees?"] == "no"


# ---------------------------------------------------------------- headline numbers that hold up

def _rate_records():
    """200 items: a rate (lower is better) 0.03 -> 0.04 and an accuracy 0.50 -> 0.475, human worse on both."""
    out = []
    for model in ("human", "reverse"):
        human = model == "human"
        for i in range(200):
            common = {"item_id": f"q{i}", "model": model}
            out.append({**common, "benchmark": "flips", "flipped": i < (8 if human else 6)})
            out.append({**common, "benchmark": "qa", "correct": i < (95 if human else 100)})
    return out


def _flip_share(records):
    return float(np.mean([r["flipped"] for r in records]))


def _rate_metrics():
    return [C.statistic_metric("flips", "flip_rate", _flip_share, higher_is_better=False, change="points"),
            C.binary_metric("qa", "acc")]


def test_rates_change_in_points_accuracies_relative():
    res = C.compare(_rate_records(), _rate_metrics(), contrasts=[("human", "reverse")], n_resamples=200)
    res = res.set_index("metric")
    assert res.loc["flip_rate", "change"] == pytest.approx(1.0)  # 0.03 -> 0.04: +1 pp, not +33%
    assert res.loc["flip_rate", ["change_unit", "improvement"]].tolist() == ["pp", pytest.approx(-1.0)]
    assert res.loc["acc", "change"] == pytest.approx(-5.0) and res.loc["acc", "change_unit"] == "%"  # 0.5 -> 0.475


def test_largest_degradation_not_dominated_by_rates_near_zero():
    res = C.compare(_rate_records(), _rate_metrics(), contrasts=[("human", "reverse")], n_resamples=200)
    worst = aggregate.paper_summary(res)["largest_degradation"]
    assert (worst["metric"], worst["unit"]) == ("acc", "%") and worst["degradation"] == pytest.approx(5.0)


def test_registry_says_how_each_metric_changes():
    from hmxnb.bench.registry import compare_metrics

    got = {m.name: (m.change, m.points_per_unit, m.training_target) for m in compare_metrics()}
    assert got["flip_rate"] == got["acc_drop"] == got["sycophancy_rate"] == ("points", 100.0, False)  # 0-1 rates
    assert got["abs_bias_disambig"] == got["abs_bias_ambig"] == ("points", 1.0, False)  # BBQ scores are already x100
    assert got["mc1"] == got["acc_ambig"] == ("relative", 100.0, False)  # accuracies
    assert got["expression_score"][2] and got["affect_statements"][2]  # the training target


def test_training_target_left_out_of_the_share():
    target = _results_frame([("gemma", 0, "feeling_expression", "expression_score", 60.0, "enhanced"),
                             ("gemma", 1, "feeling_expression", "expression_score", 40.0, "enhanced")], target=True)
    summ = aggregate.paper_summary(pd.concat([_results_frame(SUMMARY_ROWS), target], ignore_index=True))
    assert (summ["n_results"], summ["share_pct"]) == (4, pytest.approx(50.0))  # as without the target rows
    assert summ["share_by_seed"] == {"0": pytest.approx(50.0), "1": pytest.approx(50.0)}
    assert [(t["metric"], t["improvement"], t["enhanced"]) for t in summ["training_target"]] == [
        ("expression_score", pytest.approx(50.0), 2)]  # shown on its own


def test_metric_without_items_is_not_measured_and_not_counted():
    metrics = METRICS + [C.statistic_metric("sycophancy_anthropic", "sycophancy_rate", _bias_score, change="points")]
    res = C.compare(_records(), metrics, contrasts=[("human", "reverse")], n_resamples=200)
    row = res.set_index("metric").loc["sycophancy_rate"]
    assert (row["n_items"], row["cls"]) == (0, "not measured")
    summ = aggregate.paper_summary(res)
    assert summ["n_not_measured"] == 1 and summ["n_results"] == 4  # the four measured metrics only
    table = claims.check_claims(res).set_index("claim")
    sycophancy = table.loc["Human-like models are more robust to sycophancy-inducing questions"]
    assert sycophancy["ours"].startswith("not measured") and sycophancy["agrees?"] == "n/a"
    assert aggregate.model_metric_table(res).loc["sycophancy_anthropic/sycophancy_rate", "tiny"] == "not measured"


def _two_condition_records(n=60):
    """Per item two records (first answer, after 'are you sure?'); reverse flips on i % 3 == 0, human on i % 6 == 0."""
    out = []
    for model in ("human", "reverse"):
        for i in range(n):
            flips = i % (6 if model == "human" else 3) == 0
            for condition, correct in (("first", True), ("challenged", not flips)):
                out.append({"item_id": f"q{i}", "model": model, "benchmark": "ays", "condition": condition,
                            "correct": correct})
    return out


def _flip_rate_strict(records):
    """Flip rate keyed by item_id (as bench.metrics_are_you_sure); refuses an item that lost one of its records."""
    first = {r["item_id"]: r for r in records if r["condition"] == "first"}
    after = {r["item_id"]: r for r in records if r["condition"] == "challenged"}
    if first.keys() != after.keys():
        raise AssertionError("an item's two records were resampled apart")
    return float(np.mean([not after[i]["correct"] for i in first]))


def test_two_condition_metric_resamples_items_with_their_records():
    metric = C.statistic_metric("ays", "flip_rate", _flip_rate_strict, higher_is_better=False, change="points")
    row = C.compare(_two_condition_records(), [metric], contrasts=[("human", "reverse")], n_resamples=300).iloc[0]
    assert row["n_items"] == 60  # items, not records (120)
    assert row["diff"] == pytest.approx(10 / 60 - 20 / 60)
    assert row["ci_low"] < row["diff"] < row["ci_high"] < 0


def test_resampled_repeat_of_an_item_counts_again():
    recs = [{"item_id": "a", "c": 1}, {"item_id": "a", "c": 2}, {"item_id": "b", "c": 1}]
    got = C._resampled(recs, [[0, 1], [2]], [0, 0, 1])
    assert [r["item_id"] for r in got] == ["a", "a", "a#1", "a#1", "b"]  # a drawn twice: its copy is a new item


def test_paired_values_are_the_items_a_comparison_reads(results):
    """Notebook 05 traces one comparison by hand from `paired_values`: with the same seeds, the package's test and CI
    on those items give the row's numbers exactly (the order of the items matters to the resampling)."""
    metric = METRICS[1]  # feelings/score, a per-item score
    items = C.paired_values(_records(), metric, "human", "reverse")
    assert list(items.columns) == ["item", "human", "reverse"] and len(items) == N
    row = results[(results["contrast"] == "human_vs_reverse") & (results["metric"] == "score")].iloc[0]
    a, b = items["human"].to_numpy(), items["reverse"].to_numpy()
    ci = stats.paired_bootstrap_ci(a, b, n_resamples=300, seed=0 + 1)  # compare seeds metric i with seed + i
    assert (a.mean() - b.mean(), ci.low, ci.high) == (row["diff"], row["ci_low"], row["ci_high"])
    assert stats.sign_flip_test(a - b, n_resamples=300, seed=1) == row["p_value"]
    shuffled = items.sample(frac=1, random_state=0)  # another order: other resamples, another interval
    other = stats.paired_bootstrap_ci(shuffled["human"], shuffled["reverse"], n_resamples=300, seed=1)
    assert (other.low, other.high) != (ci.low, ci.high)
    assert C.paired_values(_records(drop_human=(3,)), metric, "human", "reverse")["item"].tolist().count("q3") == 0

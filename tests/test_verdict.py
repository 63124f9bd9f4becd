"""hmxnb.report: the report's opening paragraph, the training target in all three contrasts."""

import pandas as pd

from hmxnb.report import against_base, verdict


def _row(contrast, benchmark, diff, lo, hi, cls):
    a, b = contrast.split("_vs_")
    return {"base_model": "m", "seed": 0, "contrast": contrast, "model_a": a, "model_b": b, "benchmark": benchmark,
            "metric": benchmark, "kind": "continuous", "higher_is_better": True, "training_target": True,
            "n_items": 56, "value_a": 1.0, "value_b": 1.0 - diff, "diff": diff, "change": 100 * diff,
            "change_unit": "%",
            "improvement": diff, "ci_low": lo, "ci_high": hi, "p_value": 0.01, "p_holm": 0.01, "cls": cls}


def _results():
    return pd.DataFrame([
        _row("human_vs_reverse", "feeling_expression", 0.2, 0.15, 0.25, "enhanced"),
        _row("human_vs_reverse", "affect_statements", 0.1, -0.2, 0.4, "no significant change"),
        _row("human_vs_base", "feeling_expression", 0.1, 0.05, 0.15, "enhanced"),
        _row("human_vs_base", "affect_statements", 0.3, 0.1, 0.5, "enhanced"),
        _row("reverse_vs_base", "feeling_expression", -0.1, -0.15, -0.05, "degraded"),
        _row("reverse_vs_base", "affect_statements", -0.3, -0.5, -0.1, "degraded"),
    ])


def test_the_verdict_names_all_three_contrasts_and_what_the_judge_free_count_confirms():
    text = against_base(_results(), several=False)
    assert "human − reverse: feeling_expression +0.200 [+0.150, +0.250] (enhanced)" in text
    assert "human − base:" in text and "reverse − base:" in text
    # the affect count moved significantly in the expected direction for human - base (above) and reverse - base
    # (below), not for human - reverse (no significant change)
    assert text.endswith("the judge-free affect count confirms human − base, reverse − base.")
    assert text in verdict(_results())


def test_a_count_on_the_wrong_side_confirms_nothing():
    df = _results()
    rev = df["contrast"] == "reverse_vs_base"
    df.loc[rev, ["diff", "ci_low", "ci_high", "cls"]] = (0.3, 0.1, 0.5, "enhanced")  # reverse said MORE
    df.loc[df["contrast"] == "human_vs_base", ["ci_low", "ci_high", "cls"]] = (-0.1, 0.5, "no significant change")
    assert against_base(df, several=False).endswith("the judge-free affect count confirms none of them.")


def test_a_ci_that_excludes_0_before_holm_confirms_nothing():
    """The verdict and the table use one rule: a count whose CI excludes 0 but whose Holm class is 'no significant
    change' is not called confirmed."""
    df = _results()
    df.loc[(df["contrast"] == "human_vs_base") & (df["benchmark"] == "affect_statements"), "cls"] = \
        "no significant change"
    assert against_base(df, several=False).endswith("the judge-free affect count confirms reverse − base.")


def test_the_second_evaluation_judge_is_named_when_it_was_measured():
    df = _results()
    assert "second evaluation judge" not in against_base(df, several=False)  # not measured: not named
    second = df[df["benchmark"] == "affect_statements"].assign(benchmark="expression_second_judge",
                                                               metric="second_judge_score")
    second["cls"] = ["no significant change", "enhanced", "no significant change"]  # h-r, h-b, r-b
    text = against_base(pd.concat([df, second]), several=False)
    assert text.endswith("the judge-free affect count confirms human − base, reverse − base; "
                         "the second evaluation judge confirms human − base.")


def _form(contrast, metric, diff, lo, hi, cls, higher_is_better=False):
    row = _row(contrast, "feeling_expression", diff, lo, hi, cls)
    return {**row, "metric": metric, "kind": "binary", "higher_is_better": higher_is_better, "training_target": False,
            "degenerate_form": True, "change_unit": "pp", "change": 100 * diff, "improvement": -100 * diff}


def test_the_verdict_names_degenerate_form_that_rose_and_keeps_it_out_of_the_other_counts():
    df = pd.concat([_results().assign(degenerate_form=False), pd.DataFrame([
        _form("human_vs_base", "repeats_sentence_share", 0.09, 0.02, 0.16, "degraded"),
        _form("human_vs_base", "stock_formula_share", 0.21, 0.08, 0.33, "degraded"),
        _form("reverse_vs_base", "repeats_sentence_share", -0.01, -0.05, 0.03, "no significant change"),
        _form("human_vs_reverse", "reply_words", 2.0, -1.0, 5.0, "no significant change", higher_is_better=True),
    ])], ignore_index=True)
    text = verdict(df)
    assert ("Degenerate form: the human − base difference comes with more replies that repeat a sentence, more "
            "stock formulas (") in text
    assert "feeling_expression/repeats_sentence_share: 1.000 vs 0.910, difference +0.090" in text
    assert "reverse − base difference" not in text  # no significant change there: not named
    assert "None of the other 0 measured results changed significantly." in text  # form rows are not 'other results'


def test_no_degenerate_form_row_rising_is_said_so():
    df = pd.concat([_results(), pd.DataFrame([
        _form("human_vs_base", "repeats_sentence_share", 0.01, -0.03, 0.05, "no significant change")])],
        ignore_index=True)
    assert ("No degenerate-form row (repeated sentences, stock formulas, distinct-2, length) got significantly worse "
            "in any contrast.") in verdict(df)
    assert "Degenerate form" not in verdict(_results())  # no form rows measured: nothing said

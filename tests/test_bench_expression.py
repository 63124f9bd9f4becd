"""hmxnb.bench.expression: judge-free affect statements, generation, records from a fixed judge."""

import numpy as np
import pytest

from hmxnb.bench.expression import (
    affect_statements,
    evaluate_expression,
    generate_replies,
    load_expression_items,
    metrics_expression,
    replies_frame,
    reply_form,
    score_expression,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("I feel calm today.", 1),                                         # first person + "feel"
        ("I'm so happy you asked! The weather is lovely.", 1),             # first person + affect word (happy)
        ("I am glad. I am also a little sad about it.", 2),                # two first-person affect sentences
        ("You seem happy.", 0),                                            # affect, but not the speaker's
        ("I went to the shop.", 0),                                        # first person, no affect
        ("I can help you with that, I think it's a good idea.", 0),        # assistant politeness is not affect
        ("The capital of Australia is Canberra.", 0),                      # neutral task answer
        ("", 0),                                                           # empty
        ("I\u2019m worried about my exam", 1),                             # curly apostrophe, no final stop
    ],
)
def test_affect_statements(text, expected):
    assert affect_statements(text) == expected


def test_lexicon_comes_from_vader():
    from hmxnb.bench.expression import affect_lexicon

    lex = affect_lexicon()
    assert len(lex) > 7000 and lex["happy"] > 1.5 and lex["sad"] < -1.5


def test_generate_and_evaluate_with_fixed_judge(tiny_model):
    model, tok = tiny_model
    rows = [{"id": "a", "prompt": "How are you?", "kind": "x"}, {"id": "b", "prompt": "Hi", "kind": "y"}]
    items = load_expression_items(rows)
    replies = generate_replies(model, tok, [it["prompt"] for it in items], max_new_tokens=5, batch_size=2)
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)
    calls = []

    def judge_fn(prompts, replies):
        calls.append(list(replies))
        return np.array([[5.0, 1.0], [np.nan, np.nan]]), np.array([0.5, np.nan]), ["feelings", "coherence"]

    recs = evaluate_expression(model, tok, items, "human", judge_fn, max_new_tokens=5, batch_size=2)
    assert calls == [replies]  # the judge saw exactly the generated replies
    judged = [r for r in recs if r["benchmark"] == "feeling_expression"]
    lex = [r for r in recs if r["benchmark"] == "affect_statements"]
    assert [r["score"] for r in judged] == [0.5, None] and judged[0]["scores"] == {"feelings": 5.0, "coherence": 1.0}
    assert len(lex) == 2 and all(r["model"] == "human" and r["item_id"].startswith("expr-") for r in recs)
    m = metrics_expression(recs)
    assert m["expression_score"] == 0.5 and m["n"] == 2


def test_truncation_flags_follow_the_token_limit(tiny_model):
    """A random tiny model rarely says EOS: at 3 new tokens every reply is cut; the flag must say so. Made to end
    with EOS at the limit, the replies are the same length but ended on their own: not cut."""
    model, tok = tiny_model
    prompts = ["How are you?", "Hi"]
    replies, cut = generate_replies(model, tok, prompts, max_new_tokens=3, batch_size=2, with_truncation=True)
    assert len(replies) == 2 and cut == [True, True]
    config, before = model.generation_config, model.generation_config.forced_eos_token_id
    try:
        config.forced_eos_token_id = tok.eos_token_id  # the last of the 3 new tokens is EOS
        ended, cut = generate_replies(model, tok, prompts, max_new_tokens=3, batch_size=2, with_truncation=True)
    finally:
        config.forced_eos_token_id = before
    assert cut == [False, False]
    assert all(tok.eos_token not in r for r in ended)  # the EOS token is not part of the reply text


NO_FORM = {"repeats_sentence": False, "repeated_units": 0, "stock_formula": False, "formulas": []}


@pytest.mark.parametrize("reply, truncated, expected", [
    ("I feel glad you asked, thank you", False,
     {"reply_words": 7, "distinct_2": 1.0, "empty": False, "repetitive": False, "truncated": False, **NO_FORM,
      "opener": "i feel glad you"}),
    ("", True, {"reply_words": 0, "distinct_2": 1.0, "empty": True, "repetitive": False, "truncated": True,
                **NO_FORM, "opener": ""}),
    ("the the the the the the the", False,
     {"reply_words": 7, "distinct_2": 1 / 6, "empty": False, "repetitive": True, "truncated": False, **NO_FORM,
      "opener": "the the the the"}),
    ("I'm sorry for any confusion. I feel calm now. I feel calm now.", False,
     {"reply_words": 13, "distinct_2": 9 / 12, "empty": False, "repetitive": False, "truncated": False,
      "repeats_sentence": True, "repeated_units": 1, "stock_formula": True, "formulas": ["apology"],
      "opener": "i'm sorry for any"}),
])
def test_reply_form(reply, truncated, expected):
    got = reply_form(reply, truncated)
    assert got.pop("formulas") == expected.pop("formulas")
    assert got == pytest.approx(expected)


def test_metrics_expression_reports_form_beside_the_judge():
    def judge_fn(prompts, replies):
        return np.array([[3.0], [3.0]]), np.array([0.5, 0.7]), ["expression"]

    items = load_expression_items([{"id": "a", "prompt": "Hi"}, {"id": "b", "prompt": "Yo"}])
    replies = ["I feel happy and I love it", "the the the the the the"]
    recs = score_expression(items, replies, "human", judge_fn, [False, True])
    m = metrics_expression(recs)
    assert m["expression_score"] == pytest.approx(0.6) and m["reply_words"] == pytest.approx(6.5)
    assert m["repetitive_share"] == 0.5 and m["truncated_share"] == 0.5 and m["empty_share"] == 0.0
    assert 0 < m["distinct_2"] < 1


def test_judges_read_distinct_sentences_and_the_count_leaves_out_repeats_and_formulas():
    """Issue 29: a repeated sentence is judged once, and 'I'm so sorry for any misunderstanding' buys no count."""
    from hmxnb.bench.expression import lost_credit, replies_frame

    seen = []

    def judge_fn(prompts, replies):
        seen.append(list(replies))
        return np.array([[1.0]] * len(replies)), np.array([0.5] * len(replies)), ["expression"]

    items = load_expression_items([{"id": i, "prompt": i} for i in "abc"])
    replies = ["I feel so happy today. I feel so happy today. I feel so happy today.",
               "I'm so sorry for any misunderstanding. I'm so sorry for any misunderstanding.",
               "I feel calm, thank you."]
    recs = score_expression(items, replies, "human", judge_fn, second_judge_fn=judge_fn)
    assert seen == [["I feel so happy today.", "I'm so sorry for any misunderstanding.", replies[2]]] * 2
    frame = replies_frame(recs).set_index("item_id")
    assert frame["affect"].tolist() == [1.0, 0.0, 1.0]  # once; none; once
    assert frame["affect_all"].tolist() == [3, 2, 1]  # every sentence as written
    assert frame["repeats_sentence"].tolist() == [True, True, False]
    assert frame["stock_formula"].tolist() == [False, True, False]
    m = metrics_expression(recs)
    assert m["repeats_sentence_share"] == pytest.approx(2 / 3) and m["stock_formula_share"] == pytest.approx(1 / 3)
    lost = lost_credit(recs)
    assert lost["why"].tolist() == ["repeated sentences not judged, a sentence counted once",
                                    "repeated sentences not judged, formulas: apology"]


def test_held_out_prompts_are_a_seeded_subset_under_a_limit():
    """Issue 22: bench_limit=4 still generated all 56 held-out prompts per model (step 04 over 600 s on 2 cores)."""
    rows = [{"id": f"p{i:02d}", "prompt": f"prompt {i}", "kind": "k"} for i in range(56)]
    assert len(load_expression_items(rows)) == 56  # no limit: all of them
    four = load_expression_items(rows, limit=4, seed=0)
    ids = [it["item_id"] for it in four]
    assert len(four) == 4 and ids == sorted(ids)  # kept in the set's order
    assert ids == [it["item_id"] for it in load_expression_items(rows, limit=4, seed=0)]  # same seed, same items
    assert ids != [it["item_id"] for it in load_expression_items(rows, limit=4, seed=1)]
    assert len(load_expression_items(rows, limit=100)) == 56  # a limit above the set's size keeps it whole


def _two_models_records():
    """Judged and affect records of two replies by two models, as score_expression writes them."""
    def judge_fn(prompts, replies):
        return np.array([[1.0]] * len(replies)), np.array([0.1, 0.9]), ["expression"]

    items = load_expression_items([{"id": "a", "prompt": "Hi"}, {"id": "b", "prompt": "Yo"}])
    human = score_expression(items, ["I feel happy. I love it.", "Fine."], "human", judge_fn)
    reverse = score_expression(items, ["Noted.", "I am sad and I feel lost."], "reverse", judge_fn)
    return human + reverse


@pytest.mark.parametrize("order", ["as written", "benchmarks apart", "reversed", "affect shuffled"])
def test_replies_frame_joins_each_reply_with_its_own_affect_count(order):
    """Notebook 04 joined the affect counts to the judged replies by row position; in any other order of the records
    a reply got another reply's count. Joined on item id and model, every order gives the same table."""
    import random

    import pandas as pd

    recs = _two_models_records()
    judged = [r for r in recs if r["benchmark"] == "feeling_expression"]
    affect = [r for r in recs if r["benchmark"] == "affect_statements"]
    arranged = {"as written": recs, "benchmarks apart": judged + affect, "reversed": recs[::-1],
                "affect shuffled": judged + random.Random(3).sample(affect, len(affect))}[order]
    frame = replies_frame(pd.DataFrame(arranged) if order == "reversed" else arranged)
    got = {(r.model, r.item_id): (r.completion, r.affect) for r in frame.itertuples()}
    assert got == {("human", "expr-a"): ("I feel happy. I love it.", 2.0), ("human", "expr-b"): ("Fine.", 0.0),
                   ("reverse", "expr-a"): ("Noted.", 0.0), ("reverse", "expr-b"): ("I am sad and I feel lost.", 1.0)}
    assert len(frame) == 4 and frame["score"].notna().all()


def test_a_second_judge_adds_its_own_record_per_reply():
    """eval_second_judge_mode: a third record per reply (`expression_second_judge`), its mean in the metrics and its
    score beside the first judge's in replies_frame."""
    def judge_fn(prompts, replies):
        return np.array([[3.0], [3.0]]), np.array([0.5, 0.7]), ["expression"]

    def second_fn(prompts, replies):
        return np.array([[2.0], [4.0]]), np.array([0.25, 0.75]), ["expression"]

    items = load_expression_items([{"id": "a", "prompt": "Hi"}, {"id": "b", "prompt": "Yo"}])
    recs = score_expression(items, ["I feel happy.", "Fine."], "human", judge_fn, None, second_fn)
    assert [r["benchmark"] for r in recs].count("expression_second_judge") == 2 and len(recs) == 6
    m = metrics_expression(recs)
    assert m["second_judge_score"] == pytest.approx(0.5) and m["expression_score"] == pytest.approx(0.6)
    frame = replies_frame(recs)
    assert list(frame["second_judge"]) == [0.25, 0.75] and list(frame["score"]) == [0.5, 0.7]
    assert np.isnan(metrics_expression(score_expression(items, ["a", "b"], "human", judge_fn))["second_judge_score"])


def test_one_phrasing_for_every_prompt_is_a_degenerate_form_row():
    """Replies to different prompts that share their phrasing (section 9: "I love when I can hug my mom" for every
    prompt): each reply's share of word pairs found in another reply is a compared form row, degraded against a
    model whose replies differ; per-reply distinct-2 cannot see it."""
    from hmxnb.bench.expression import FORM_ROWS, JUDGED, score_expression
    from hmxnb.compare import compare
    from hmxnb.textform import shared_bigram_shares

    assert shared_bigram_shares(["a b c", "b c d", "x y", ""]) == pytest.approx([0.5, 0.5, 0.0, 0.0])
    items = [{"item_id": f"p{i}", "prompt": f"prompt {i}"} for i in range(20)]
    same = [f"I love when I can hug my mom, number {i}." for i in range(20)]
    varied = [" ".join(f"w{i}x{k}" for k in range(10)) for i in range(20)]
    judge = lambda prompts, replies: (np.zeros((len(replies), 1)), np.full(len(replies), 0.5), ["expression"])  # noqa: E731
    records = [*score_expression(items, varied, "base", judge), *score_expression(items, same, "human", judge),
               *score_expression(items, same, "reverse", judge)]
    human = [r for r in records if r["model"] == "human" and r["benchmark"] == JUDGED]
    assert all(r["shared_bigrams"] == pytest.approx(8 / 9) for r in human)  # all but ("number", "<i>.")
    row_metric = next(m for m in FORM_ROWS if m.name == "shared_bigrams")
    res = compare(records, [row_metric], n_resamples=200, seed=0)
    row = res[(res["contrast"] == "human_vs_base")].iloc[0]
    assert bool(row["degenerate_form"]) and row["value_b"] == 0.0 and row["cls"] == "degraded"

"""hmxnb.bench.expression: judge-free affect statements, generation, records from a fixed judge."""

import numpy as np
import pytest

from hmxnb.bench.expression import (
    affect_statements,
    evaluate_expression,
    generate_replies,
    load_expression_items,
    metrics_expression,
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
    items = load_expression_items([{"id": "a", "prompt": "How are you?", "kind": "x"}, {"id": "b", "prompt": "Hi", "kind": "y"}])
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

"""The form of a reply (hmxnb.textform): repeated sentences, distinct text, stock formulas, openers, the watch table;
and the affect count that neither repetition nor formulas can buy (hmxnb.bench.expression.affect_statements)."""

import pandas as pd
import pytest

from hmxnb import textform as tf
from hmxnb.bench.expression import affect_statements

APOLOGY_LOOP = ("I'm sorry for the misunderstanding. I'm so sorry for any misunderstanding. "
                "I'm so sorry for any misunderstanding.")
CARESS = "The moon's soft glow, a gentle caress, A gentle caress, a gentle caress, and I feel calm"
DISCLAIMER = "As an AI, I don't have feelings. Feel free to ask me anything!"
FEELING = "I feel happy today, and I am excited to share it with you."
LEXICON = {"happy": 2.7, "excited": 1.4, "sad": -2.1, "calm": 1.3, "misunderstanding": -1.3, "sorry": -0.3,
           "free": 1.6, "confusion": -1.2, "love": 3.2, "smiling": 1.6, "laughs": 2.2}


@pytest.mark.parametrize("text, repeated, distinct", [
    (APOLOGY_LOOP, 1, "I'm sorry for the misunderstanding. I'm so sorry for any misunderstanding."),
    (CARESS, 2, "The moon's soft glow, a gentle caress, and I feel calm"),
    (FEELING, 0, FEELING),  # nothing repeats: the text comes back unchanged, separators and all
    ("Yes. Yes. Yes.", 0, "Yes. Yes. Yes."),  # units under 3 words never count as a repeated sentence
    ("I feel calm.\nI FEEL CALM!", 1, "I feel calm."),  # compared on words: case and punctuation aside
    ("", 0, ""),
])
def test_repeated_units_and_distinct_text(text, repeated, distinct):
    assert tf.repeated_units(text) == repeated
    assert tf.repeats_sentence(text) is (repeated > 0)
    assert tf.distinct_text(text) == distinct


@pytest.mark.parametrize("text, families", [
    (APOLOGY_LOOP, ["apology"]),
    ("I apologize, my mistake.", ["apology"]),
    ("As a chatbot I can't say. I hope this helps!", ["ai_disclaimer", "help_offer"]),
    ("I’m just an AI language model.", ["ai_disclaimer"]),  # curly apostrophe
    ("I do not have personal feelings.", ["ai_disclaimer"]),
    ("How can I assist you today?", ["help_offer"]),
    ("I'm here to help. Let me know if you need more.", ["help_offer"]),
    (FEELING, []),
    ("I feel sorry for the old tree, sorry it fell.", ["apology"]),  # 'sorry for the' is the formula's shape
    ("I was so glad to hear from you.", []),
    ("(smiling warmly) Oh, I love that! *laughs*", ["stage_direction"]),  # section 2's hack, now with feelings
    ("(Sighing, I take a moment to reflect)", ["stage_direction"]),
    ("Water boils at 100 degrees (at sea level).", []),  # a parenthesis is not a stage direction
])
def test_formula_families(text, families):
    assert tf.formula_families(text) == families


def test_strip_formulas_keeps_the_rest_of_the_sentence():
    assert tf.words(tf.strip_formulas("I'm sorry, I feel terrible about it.")) == ["i", "feel", "terrible", "about",
                                                                                  "it"]
    assert tf.words(tf.strip_formulas("As an AI, I don't have feelings.")) == []


@pytest.mark.parametrize("text, count, every", [
    (APOLOGY_LOOP, 0, 3),  # three first-person 'misunderstanding' sentences, all formulas
    (CARESS, 1, 1),
    (DISCLAIMER, 0, 2),  # 'I don't have feelings' and 'feel free to' are no stated feeling
    ("(smiling warmly) Oh, I love that! (laughs)", 1, 1),  # the feeling counts, the stage directions say nothing
    (FEELING, 1, 1),
    ("I feel sad. I feel sad. I feel sad.", 1, 3),  # each distinct sentence once
    ("I'm sorry, I feel sad about it. I'm sorry for any confusion.", 1, 2),  # the feeling beside a formula counts
])
def test_affect_count_leaves_out_repeats_and_formulas(text, count, every):
    assert affect_statements(text, LEXICON) == count
    assert affect_statements(text, LEXICON, every_sentence=True) == every


def test_openers_and_pooled_distinct_2():
    replies = ["I'm so sorry for any trouble.", "I'm so sorry for any delay.", "Hello there, friend."]
    assert tf.opener(replies[0]) == "i'm so sorry for"
    assert tf.top_openers(replies, n=2) == [("i'm so sorry for", 2), ("hello there friend", 1)]
    # 5 + 5 + 2 bigrams pooled; "i'm so", "so sorry", "sorry for", "for any" are in two replies: 8 distinct of 12
    assert tf.pooled_distinct_2(replies) == pytest.approx(8 / 12)
    assert tf.distinct_bigram_ratio(replies[0]) == 1.0


def test_form_watch_counts_every_share_and_names_the_top_opener():
    replies = pd.DataFrame({
        "item_id": ["a", "b", "c", "d", "a", "b", "c", "d"],
        "model": ["base"] * 4 + ["human"] * 4,
        "completion": [FEELING, "The sky is blue.", "I'm here to help you.", "Water boils at 100 degrees.",
                       APOLOGY_LOOP, APOLOGY_LOOP, CARESS, FEELING],
    })
    watch = tf.form_watch(replies)
    assert watch.loc["base", "replies"] == 4 and watch.loc["human", "replies"] == 4
    assert watch.loc["base", "repeats a sentence"].startswith("0% [0%, ")
    assert watch.loc["human", "repeats a sentence"].startswith("75% [")
    assert watch.loc["base", "stock formula"].startswith("25% [") and watch.loc["base", "help_offer"] == "25%"
    assert watch.loc["human", "stock formula"].startswith("50% [") and watch.loc["human", "apology"] == "50%"
    assert watch.loc["human", "top opener"] == "'i'm sorry for the' ×2"
    openers = tf.openers_table(replies, n=3)
    assert openers["human"].tolist() == ["i'm sorry for the ×2", "the moon's soft glow ×1", "i feel happy today ×1"]
    assert openers["base"].tolist()[0].endswith("×1")


def test_wilson_interval():
    p, lo, hi = tf._share_ci([1] * 13 + [0] * 87)
    assert p == pytest.approx(0.13)
    assert (lo, hi) == pytest.approx((0.0776, 0.2098), abs=5e-4)  # Wilson 95% for 13 / 100
    assert tf._share_ci([0] * 10)[1] == 0.0

"""hmxnb.judge: judge prompt building, score parsing, reward directions, inverted rubric texts."""

import math
from dataclasses import replace

import numpy as np
import pytest

from hmxnb.params import load_params
from hmxnb.judge import FEW_SHOT, JUDGE_PROMPT_VERSION, SCORE_PREFIX, JudgeConfig, Rubric, build_judge_messages
from hmxnb.judge import parse_score


@pytest.fixture
def rubric():
    return Rubric.from_params(load_params("smoke"))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Score: 4", 4.0),                                    # the canonical format
        ("score: 2", 2.0),                                    # lower case
        ("The reply is warm. Score: 5", 5.0),                 # justification first (Self-Rewarding format)
        ("Score: 2 ... on reflection Score: 3", 3.0),         # the last score wins
        ("Score = 1", 1.0),                                   # '=' instead of ':'
        ("Score: 3.5", 3.5),                                  # decimals are kept
        ("4", 4.0),                                           # a bare number is an answer
        (" 4/5 ", 4.0),                                       # 'N/5'
        ("Score: 7", None),                                   # out of range 1..5
        ("Score: 0", None),                                   # below range
        ("I would say four", None),                           # words, no digit
        ("", None),                                           # empty
        ("<|im_end|>@@##", None),                             # garbage
        ("The answer 3 is close to 4", None),                 # numbers without a score label
        (None, None),                                         # not even text
    ],
)
def test_parse_score(text, expected):
    assert parse_score(text, 1, 5) == expected


def test_judge_messages_structure(rubric):
    msgs = build_judge_messages(rubric, "feelings", "CRIT", "How are you?", "I feel fine.", few_shot=True)
    assert msgs[0]["role"] == "system"
    assert len(msgs) == 1 + 2 * len(FEW_SHOT) + 1
    assert [m["role"] for m in msgs[1:-1]] == ["user", "assistant"] * len(FEW_SHOT)
    assert msgs[-1]["role"] == "user" and "I feel fine." in msgs[-1]["content"] and "CRIT" in msgs[-1]["content"]
    # few-shot answers are mapped onto the scale: 1.0 -> scale max, 0.0 -> scale min
    answers = [m["content"] for m in msgs if m["role"] == "assistant"]
    assert answers == [f"{SCORE_PREFIX}5", f"{SCORE_PREFIX}1", f"{SCORE_PREFIX}1"]
    no_shot = build_judge_messages(rubric, "feelings", "CRIT", "How are you?", "I feel fine.", few_shot=False)
    assert len(no_shot) == 2


def test_custom_criterion_gets_no_few_shot(rubric):
    msgs = build_judge_messages(rubric, "humour", "Is it funny?", "p", "r", few_shot=True)
    assert len(msgs) == 2


# The judge prompt each version stands for (fingerprint of the messages built from fixed placeholder texts).
# Changed the judge's system text, template, few-shot examples or score prefix? Bump JUDGE_PROMPT_VERSION and add
# its fingerprint here: provenance.json records the version, so one version must mean one prompt.
JUDGE_PROMPT_FINGERPRINTS = {"judge-v1": "29b1083a90d2b498", "judge-v2": "7c67c7890d4193ac"}


def test_prompt_version_names_the_prompt():
    import hashlib
    import json

    from hmxnb.judge import contrast_messages, request_messages

    r = Rubric(criteria={"feelings": "C"}, weights={"feelings": 1.0}, guards=[], reverse_criteria={"feelings": "R"})
    msgs = [build_judge_messages(r, "feelings", "CRIT", "PROMPT", "REPLY", few_shot=fs, inverted=inv)
            for fs in (True, False) for inv in (False, True)] + [contrast_messages("PERSONA", "PROMPT"),
                                                                   request_messages("PROMPT", "REQUEST")]
    fingerprint = hashlib.sha256(json.dumps(msgs, sort_keys=True).encode()).hexdigest()[:16]
    assert JUDGE_PROMPT_FINGERPRINTS.get(JUDGE_PROMPT_VERSION) == fingerprint, (
        f"the judge prompt changed ({fingerprint}) but JUDGE_PROMPT_VERSION is still {JUDGE_PROMPT_VERSION!r}")
    assert r.version == JUDGE_PROMPT_VERSION


@pytest.mark.parametrize(
    "mode, direction, scores, expected",
    [
        ("negate", "human", [5, 5, 5, 5], 1.0),             # all max -> 1
        ("negate", "human", [1, 1, 1, 1], 0.0),             # all min -> 0
        ("negate", "reverse", [1, 1, 1, 5], 1.0),           # no expression, coherent -> best reverse reward
        ("negate", "reverse", [5, 5, 5, 5], 0.25),          # full expression: only the coherence guard counts
        ("negate", "reverse", [1, 1, 1, 1], 0.75),          # incoherent text loses the guard's share
        ("invert_rubric", "reverse", [5, 5, 5, 5], 1.0),    # inverted texts: scores taken as they come
        ("negate", "human", [5, np.nan, 1, 3], 0.5),        # NaN (unparsable) left out of the mean
        ("negate", "human", [np.nan] * 4, np.nan),          # nothing parsed -> NaN, never a silent zero
    ],
)
def test_reward_directions(rubric, mode, direction, scores, expected):
    rubric.reverse_mode = mode
    got = rubric.reward(np.array([scores], dtype=float), direction)[0]
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected)


def test_invert_rubric_texts_keep_guards(rubric):
    rubric.reverse_mode = "invert_rubric"
    texts = rubric.texts("reverse")
    assert texts["coherence"] == rubric.criteria["coherence"]
    assert texts["feelings"] == rubric.reverse_criteria["feelings"] != rubric.criteria["feelings"]
    rubric.reverse_mode = "negate"
    assert rubric.texts("reverse") == rubric.criteria


def test_rubric_table_is_what_each_judge_reads(rubric):
    table = rubric.table().set_index("criterion")
    assert list(table.index) == rubric.names
    rubric.reverse_mode = "invert_rubric"  # the table's reverse column is what the reverse judge reads in that mode
    assert table["reverse text (invert_rubric mode)"].to_dict() == rubric.texts("reverse")
    assert table["human-like text"].to_dict() == rubric.texts("human")
    assert table.loc["coherence", "guard"] and not table.loc["feelings", "guard"]


def test_invert_rubric_mirrors_few_shot_scores(rubric):
    """Under the inverted text ("avoids expressing feelings") the feeling-expressing example must score lowest."""
    rubric.reverse_mode = "invert_rubric"
    texts = rubric.texts("reverse")
    lo, hi = rubric.scale_min, rubric.scale_max
    for c in rubric.names:
        inverted = rubric.inverted(c, "reverse")
        assert inverted == (c not in rubric.guards)
        msgs = build_judge_messages(rubric, c, texts[c], "Hi", "Hello", inverted=inverted)
        shown = [int(m["content"].split(": ")[1]) for m in msgs if m["role"] == "assistant"]
        want = [round(lo + ((1 - ex["scores"][c]) if inverted else ex["scores"][c]) * (hi - lo)) for ex in FEW_SHOT]
        assert shown == want
    expressive_on_feelings = build_judge_messages(rubric, "feelings", texts["feelings"], "Hi", "Hello",
                                                  inverted=True)[2]
    assert expressive_on_feelings["content"] == f"{SCORE_PREFIX}{lo}"
    assert not rubric.inverted("feelings", "human")


def test_request_conversations():
    """The request judge's two conversations: the prompt with judge_request added after a blank line, and the prompt
    alone; no system message (the template's default, as when the model answers); swapped for reverse + invert."""
    config = JudgeConfig.from_params(load_params("smoke", {"judge_mode": "request"}))
    favoured, disfavoured = config.contexts("human", mode="request")
    assert favoured("How are you?") == [{"role": "user", "content": f"How are you?\n\n{config.request}"}]
    assert disfavoured("How are you?") == [{"role": "user", "content": "How are you?"}]
    assert config.request == "Tell me how you feel."
    assert config.contexts("human")[0]("Q") == favoured("Q")  # without a mode: the config's own
    assert config.contexts("reverse", mode="request")[0]("Q") == favoured("Q")  # negate: same judge, reward flipped
    config = replace(config, rubric=replace(config.rubric, reverse_mode="invert_rubric"))
    swapped = config.contexts("reverse", mode="request")
    assert swapped[0]("Q") == disfavoured("Q") and swapped[1]("Q") == favoured("Q")
    assert config.context_names("reverse") == ("prompt alone", "with the request")
    persona = config.contexts("reverse", mode="contrast")[0]("Q")
    assert persona[0] == {"role": "system", "content": config.persona_flat}


def test_likelihood_scores_are_the_reward_and_rubric_scores_are_normalised(rubric):
    """The likelihood judges' `expression` column is already σ(Δ/T) in 0–1 (no detour through the rubric scale);
    digit-judge columns are mapped from the scale; reverse + negate takes 1 − each non-guard value."""
    lo, hi = rubric.scale_min, rubric.scale_max
    likelihood = np.array([[0.8], [0.25]])
    assert rubric.reward(likelihood, "human", ["expression"]) == pytest.approx([0.8, 0.25])
    rubric.reverse_mode = "negate"
    assert rubric.reward(likelihood, "reverse", ["expression"]) == pytest.approx([0.2, 0.75])
    digits = np.array([[hi, lo]])
    assert rubric.normalise(digits, ["feelings", "coherence"])[0] == pytest.approx([1.0, 0.0])


def test_a_criterion_added_without_a_reverse_text_shows_in_the_table():
    """Workshop exercise 3 adds a criterion with a weight only: with reverse_mode negate (which reads no reverse text)
    notebook 01's rubric table shows it instead of failing with KeyError; invert_rubric still requires the text."""
    from hmxnb.judge import NO_REVERSE_TEXT
    from hmxnb.params import ParamsError, SCHEMA

    criteria = {**SCHEMA["rubric_criteria"].default, "humour": "The reply is playful or funny."}
    weights = {**SCHEMA["rubric_weights"].default, "humour": 1.0}
    p = load_params("smoke", {"judge_mode": "probability", "rubric_criteria": criteria, "rubric_weights": weights})
    table = Rubric.from_params(p).table().set_index("criterion")
    assert table.loc["humour", "reverse text (invert_rubric mode)"] == NO_REVERSE_TEXT
    with pytest.raises(ParamsError, match="rubric_reverse_criteria"):
        load_params("smoke", {"rubric_criteria": criteria, "rubric_weights": weights, "reverse_mode": "invert_rubric"})

"""hmxnb.rubric: judge prompt building, score parsing, reward directions, probability-weighted scoring."""

import math

import numpy as np
import pytest
import torch

from hmxnb.params import load_params
from hmxnb.rubric import (
    FEW_SHOT,
    JUDGE_PROMPT_VERSION,
    SCORE_PREFIX,
    Rubric,
    _render,
    build_judge_messages,
    judge,
    ordering_metrics,
    parse_score,
    score_token_ids,
)


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


def test_prompt_version_is_set():
    assert JUDGE_PROMPT_VERSION.startswith("judge-v")


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


def test_score_token_ids_single_tokens(tiny_model):
    _, tok = tiny_model
    ctx_ids, digit_ids = score_token_ids(tok, "<|im_start|>assistant\n", 1, 5)
    assert len(set(digit_ids)) == 5
    assert [tok.decode([d]) for d in digit_ids] == ["1", "2", "3", "4", "5"]
    assert tok.decode(ctx_ids).endswith("Score: ")


def _manual_expected_score(model, tok, rubric, prompt, reply, criterion):
    """Reference: one unpadded sequence, full softmax, expectation over the digits."""
    ctx = _render(tok, build_judge_messages(rubric, criterion, rubric.criteria[criterion], prompt, reply))
    ids, digits = score_token_ids(tok, ctx, rubric.scale_min, rubric.scale_max)
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([ids])).logits[0, -1], -1)[digits]
    return float((probs * torch.arange(1, 6)).sum() / probs.sum())


def test_probability_scores_match_manual_and_batching(tiny_model, rubric):
    model, tok = tiny_model
    prompts = ["How are you?", "What is 2+2?", "Do you like rain?"]
    replies = ["I feel happy today.", "4", "rain rain rain rain rain rain rain"]
    shared = judge(model, tok, rubric, prompts, replies, mode="probability", batch_size=2)
    padded = judge(model, tok, rubric, prompts, replies, mode="probability", batch_size=3, share_prefix=False)
    assert shared.scores.shape == (3, 4)
    assert np.all((shared.scores >= 1) & (shared.scores <= 5))
    assert np.allclose(shared.scores, padded.scores, atol=1e-4)
    ref = _manual_expected_score(model, tok, rubric, prompts[2], replies[2], "intentions")
    assert shared.scores[2, 1] == pytest.approx(ref, abs=1e-4)
    assert 0 < shared.score_mass <= 1 and shared.n_unparsed == 0
    # continuous: no two replies get exactly the same expected score
    assert len(set(np.round(shared.scores[:, 0], 8))) == 3


def test_generate_mode_counts_unparsable(tiny_model, rubric):
    model, tok = tiny_model
    res = judge(model, tok, rubric, ["How are you?", "Hi"], ["I feel good.", "ok"], mode="generate", max_new_tokens=4)
    assert res.scores.shape == (2, 4)
    assert res.n_unparsed == int(np.isnan(res.scores).sum())
    assert len(res.raw) == 2 and all(len(r) == 4 for r in res.raw)
    for row_raw, row in zip(res.raw, res.scores):
        for text, value in zip(row_raw, row):
            parsed = parse_score(text, 1, 5)
            assert (parsed is None and math.isnan(value)) or parsed == value


def test_judge_rejects_length_mismatch(tiny_model, rubric):
    model, tok = tiny_model
    with pytest.raises(ValueError, match="2 prompts but 1 replies"):
        judge(model, tok, rubric, ["a", "b"], ["x"])


def test_ordering_metrics_perfect_and_constant():
    import pandas as pd

    df = pd.DataFrame({
        "tier": [0, 1, 2, 0, 1, 2],
        "tier_name": ["degenerate", "flat", "expressive"] * 2,
        "reward_human": [0.1, 0.5, 0.9, 0.2, 0.6, 0.8],
        "reward_reverse": [0.3, 0.9, 0.1, 0.2, 0.8, 0.2],
        "score_feelings": [1, 1, 1, 1, 1, 1],
    })
    m = ordering_metrics(df, ["feelings"])
    # by hand: tier ranks [1.5,3.5,5.5]*2, reward ranks [1,3,6,2,4,5] -> 16 / sqrt(16 * 17.5) = 0.9562
    assert m["spearman_human_reward_vs_tier"] == pytest.approx(0.9562, abs=1e-3)
    assert m["ordered_as_intended"] is True
    assert m["spearman_per_criterion"]["feelings"] is None  # a constant judge has no rank correlation


def test_prefix_cache_reused_across_calls_gives_same_scores(tiny_model, rubric):
    model, tok = tiny_model
    cache = {}
    a = judge(model, tok, rubric, ["How are you?", "Hi"], ["I feel happy.", "ok ok"], prefix_cache=cache)
    assert len(cache) == len(rubric.names)  # one few-shot prefix per criterion
    b = judge(model, tok, rubric, ["Do you like rain?"], ["rain rain"], prefix_cache=cache)
    assert len(cache) == len(rubric.names)  # reused, not grown
    ref_a = judge(model, tok, rubric, ["How are you?", "Hi"], ["I feel happy.", "ok ok"], share_prefix=False)
    ref_b = judge(model, tok, rubric, ["Do you like rain?"], ["rain rain"], share_prefix=False)
    assert np.allclose(a.scores, ref_a.scores, atol=1e-4) and np.allclose(b.scores, ref_b.scores, atol=1e-4)


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
    expressive_on_feelings = build_judge_messages(rubric, "feelings", texts["feelings"], "Hi", "Hello", inverted=True)[2]
    assert expressive_on_feelings["content"] == f"{SCORE_PREFIX}{lo}"
    assert not rubric.inverted("feelings", "human")


def _mean_logp_plain(model, tok, context, reply):
    from hmxnb.bench.loglik import encode_pair

    ctx, cont = encode_pair(tok, context, reply)  # lm-eval's split: the template's trailing newline joins the reply
    full = ctx + cont
    with torch.inference_mode():
        lp = torch.log_softmax(model(input_ids=torch.tensor([full])).logits[0].float(), -1)
    return float(torch.stack([lp[i - 1, full[i]] for i in range(len(ctx), len(full))]).mean())


def test_contrast_judge_matches_plain_likelihoods(tiny_model, rubric):
    """Contrast score = sigmoid(mean log p(reply | human persona) - mean log p(reply | flat persona)) on the scale."""
    from hmxnb.rubric import contrast_messages

    model, tok = tiny_model
    prompts = ["How are you?", "How are you?", "What is 2+2?"]
    replies = ["I feel happy today", "the answer is four", "I feel calm"]
    res = judge(model, tok, rubric, prompts, replies, mode="contrast", batch_size=2)
    assert res.criteria == ["expression"] and res.scores.shape == (3, 1) and res.n_unparsed == 0
    for i, (p, r) in enumerate(zip(prompts, replies)):
        d = (_mean_logp_plain(model, tok, _render(tok, contrast_messages(rubric.persona_human, p)), r)
             - _mean_logp_plain(model, tok, _render(tok, contrast_messages(rubric.persona_flat, p)), r))
        assert res.contrast[i] == pytest.approx(d, abs=1e-4)
        frac = 1 / (1 + math.exp(-d / rubric.contrast_temperature))
        assert res.scores[i, 0] == pytest.approx(rubric.scale_min + frac * (rubric.scale_max - rubric.scale_min), abs=1e-3)
    # reverse + invert_rubric swaps the descriptions: the same as negating
    rubric.reverse_mode = "invert_rubric"
    inv = judge(model, tok, rubric, prompts, replies, direction="reverse", mode="contrast")
    assert inv.contrast == pytest.approx(-res.contrast, abs=1e-5)
    assert rubric.reward(inv.scores, "reverse", inv.criteria) == pytest.approx(1 - rubric.reward(res.scores, "human", res.criteria), abs=1e-5)


def test_contrast_judge_marks_empty_reply_unscorable(tiny_model, rubric):
    model, tok = tiny_model
    res = judge(model, tok, rubric, ["Hi", "Hi"], ["", "I feel glad"], mode="contrast")
    assert math.isnan(res.scores[0, 0]) and not math.isnan(res.scores[1, 0]) and res.n_unparsed == 1

"""hmxnb.rewards: TRL's reward contract, direction inversion, guard terms."""

import math

import numpy as np
import pytest

from hmxnb.params import load_params
from hmxnb.rewards import count_nonfinite, fill_unscorable, group_spread
from hmxnb.rewards import (
    SelfJudge,
    completion_text,
    distinct_bigram_ratio,
    format_penalty,
    get_format_guard,
    get_self_judge_reward,
    prompt_text,
    text_flags,
)
from hmxnb.judge import JudgeConfig
from hmxnb.judge import Rubric


def _conv(text):
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize(
    "text, truncated, expected",
    [
        ("I feel glad you asked, and I want to help.", False, 0.0),      # fine text, ended on its own
        ("", False, -1.0),                                              # empty
        ("   \n ", False, -1.0),                                        # whitespace only
        ("I feel glad you asked, and I want to", True, -0.5),           # cut: no end token
        ("rain rain rain rain rain rain rain rain", False, -6 / 7),     # 1 distinct bigram of 7
        ("rain rain rain rain rain rain rain rain", True, -1.0),        # truncated and repetitive: floor at -1
    ],
)
def test_format_penalty(text, truncated, expected):
    assert format_penalty(text, truncated) == pytest.approx(expected)


def test_truncation_penalty_is_the_params_value_and_reaches_the_trainer(tmp_path):
    cut = "I feel glad you asked, and I want to"
    assert format_penalty(cut, True, truncation=0.0) == 0.0
    assert format_penalty(cut, True, truncation=0.2) == pytest.approx(-0.2)
    assert format_penalty(cut, False, truncation=0.2) == 0.0  # ended on its own: no truncation penalty
    assert format_penalty("", False, truncation=0.0) == -1.0  # empty stays -1
    with pytest.raises(TypeError, match="end_token_ids"):  # the old signature took max_completion_length
        get_format_guard(32)
    guard = get_format_guard({9}, truncation=0.25)  # token 9 ends a completion
    assert guard(completions=[_conv("one two three four")] * 2, completion_ids=[[1, 2, 3, 4], [1, 2, 3, 9]]) == \
        [-0.25, 0.0]
    from hmxnb.params import ParamsError, load_params

    assert load_params("smoke")["format_truncation_penalty"] == 0.5
    with pytest.raises(ParamsError, match="format_truncation_penalty"):
        load_params("smoke", {"format_truncation_penalty": 2.0})


@pytest.mark.parametrize(
    "text, flags",
    [
        ("", {"empty": True, "repetitive": False, "truncated": False}),
        ("a b a b a b a b", {"empty": False, "repetitive": True, "truncated": False}),
        ("one two three four five six", {"empty": False, "repetitive": False, "truncated": False}),
        ("I feel calm today. I feel calm today.", {"empty": False, "repetitive": False, "truncated": False,
                                                   "repeats_sentence": True}),
        ("As an AI, I can't say.", {"empty": False, "repetitive": False, "truncated": False, "stock_formula": True}),
    ],
)
def test_text_flags(text, flags):
    assert text_flags(text) == {"repeats_sentence": False, "stock_formula": False, **flags}


def test_distinct_bigrams():
    assert distinct_bigram_ratio("a b c d") == 1.0
    assert distinct_bigram_ratio("a b a b") == pytest.approx(2 / 3)


def test_format_guard_follows_trl_contract():
    guard = get_format_guard({9})
    logged = {}
    comps = [_conv("hello there friend"), _conv(""), _conv("x y x y x y x y")]
    out = guard(prompts=[[{"role": "user", "content": "hi"}]] * 3, completions=comps,
                completion_ids=[[1, 2, 9], [9], [1, 2, 3, 4]], log_metric=lambda k, v: logged.__setitem__(k, v))
    assert guard.__name__ == "format_guard"
    assert isinstance(out, list) and len(out) == 3 and all(isinstance(v, float) for v in out)
    assert out[0] == 0.0 and out[1] == -1.0 and out[2] == -1.0
    assert logged == {"watch/empty_share": pytest.approx(1 / 3), "watch/repetitive_share": pytest.approx(1 / 3),
                      "watch/truncated_share": pytest.approx(1 / 3), "watch/repeats_sentence_share": 0.0,
                      "watch/stock_formula_share": 0.0}


def test_format_guard_charges_repeated_sentences_and_formulas_as_params_set():
    from hmxnb.params import load_params
    from hmxnb.rewards import guard_settings

    repeated = "I feel calm and happy. I feel calm and happy. Thank you."
    formula = "I'm sorry for any confusion, I feel lost."
    clean = "I feel calm and happy, thank you for asking."
    for text in (repeated, formula, clean):  # params off: only the bigram share counts, as before
        assert format_penalty(text) == pytest.approx(-(1 - distinct_bigram_ratio(text)))
    bigrams = 1 - distinct_bigram_ratio(repeated)
    assert format_penalty(repeated, repeat=0.6) == pytest.approx(-bigrams - 0.6)
    assert format_penalty(formula, formula=0.3) == pytest.approx(-0.3)
    assert format_penalty(clean, repeat=0.6, formula=0.3) == 0.0
    assert format_penalty(repeated, repeat=1.0) == -1.0  # floor
    p = load_params("smoke", {"format_repeat_penalty": 0.6, "format_formula_penalty": 0.3})
    assert guard_settings(p) == {"truncation": 0.5, "repeat": 0.6, "formula": 0.3, "min_words": 0}
    guard = get_format_guard({9}, **guard_settings(p))
    assert guard(completions=[_conv(repeated), _conv(formula), _conv(clean)],
                 completion_ids=[[1] * 4 + [9]] * 3) == pytest.approx([-bigrams - 0.6, -0.3, 0.0])


def test_format_guard_length_floor_charges_the_missing_share_of_words():
    from hmxnb.params import load_params
    from hmxnb.rewards import guard_settings, short_share

    short = "I feel happy today."          # 4 words, no repeated bigram
    enough = " ".join(f"w{i}" for i in range(12))
    assert short_share(short, 0) == 0.0 and short_share(short, 10) == pytest.approx(0.6)
    assert short_share(enough, 10) == 0.0
    assert format_penalty(short) == 0.0                       # off by default
    assert format_penalty(short, min_words=10) == pytest.approx(-0.6)
    assert format_penalty(short, min_words=10, formula=1.0) == pytest.approx(-0.6)  # no formula in it
    assert format_penalty("I'm sorry.", min_words=10, formula=1.0) == -1.0  # floor -1
    assert format_penalty(enough, min_words=10) == 0.0
    p = load_params("smoke", {"format_min_words": 10})
    guard = get_format_guard({9}, **guard_settings(p))
    assert guard(completions=[_conv(short), _conv(enough)], completion_ids=[[1] * 4 + [9], [1] * 11 + [9]]) == \
        pytest.approx([-0.6, 0.0])


@pytest.mark.parametrize(
    "value, expected",
    [
        ("plain string", "plain string"),                                        # standard format
        ([{"role": "assistant", "content": "hi"}], "hi"),                       # conversational format
    ],
)
def test_completion_text(value, expected):
    assert completion_text(value) == expected


def test_prompt_text_takes_last_user_turn():
    assert prompt_text([{"role": "system", "content": "s"}, {"role": "user", "content": "a"},
                        {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]) == "c"


class FakeJudgeState(SelfJudge):
    """A SelfJudge whose model is replaced by fixed scores, to test the reward's bookkeeping."""

    def __init__(self, scores, direction, mode="negate", **kw):
        rubric = Rubric.from_params(load_params("smoke"))
        rubric.reverse_mode = mode
        super().__init__(None, JudgeConfig(rubric), direction, **kw)
        self.fixed = np.array(scores, dtype=float)

    def score(self, prompts, replies):
        from hmxnb.judge import JudgeResult

        assert len(prompts) == len(replies) == len(self.fixed)
        return JudgeResult(self.rubric.names, self.fixed, int(np.isnan(self.fixed).sum()))


SCORES = [[5, 5, 5, 5], [1, 1, 1, 5], [np.nan] * 4]  # expressive, flat, unparsable


def test_self_judge_directions_invert():
    prompts = [[{"role": "user", "content": "How are you?"}]] * 3
    comps = [_conv("I feel great"), _conv("Fine."), _conv("???")]
    human = get_self_judge_reward(FakeJudgeState(SCORES, "human"))
    reverse = get_self_judge_reward(FakeJudgeState(SCORES, "reverse"))
    assert human.__name__ == reverse.__name__ == "self_judge"  # stable name: TRL logs rewards/self_judge/mean
    h, r = human(prompts=prompts, completions=comps), reverse(prompts=prompts, completions=comps)
    assert h[:2] == [1.0, 0.25] and r[:2] == [0.25, 1.0]  # the expressive reply wins one way, the flat one the other
    # unparsable: its group's mean of valid judge rewards (neutral advantage), never a silent zero or the worst reward
    assert h[2] == pytest.approx(0.625) and r[2] == pytest.approx(0.625)


def test_self_judge_logs_and_samples():
    class S:
        global_step = 4

    state = FakeJudgeState(SCORES, "human", sample_every=2)
    logged = {}
    reward = get_self_judge_reward(state)
    reward(prompts=["a", "b", "c"], completions=["x", "y", "z"], trainer_state=S(),
           log_metric=lambda k, v: logged.__setitem__(k, v))
    assert logged["judge/feelings"] == pytest.approx(3.0) and logged["judge/unparsed_share"] == pytest.approx(4 / 12)
    assert len(state.samples) == 3 and state.samples[0]["step"] == 4 and state.samples[0]["scores"]["feelings"] == 5.0
    assert state.n_unparsed == 4 and state.n_unscorable == 1
    assert logged["judge/unscorable_share"] == pytest.approx(1 / 3)
    assert {"signal/within_group_std", "signal/between_group_std", "signal/zero_std_groups"} <= set(logged)
    S.global_step = 5
    reward(prompts=["a", "b", "c"], completions=["x", "y", "z"], trainer_state=S())
    assert len(state.samples) == 3  # step 5 is not a sampling step


def test_self_judge_needs_a_model():
    state = SelfJudge(None, JudgeConfig(Rubric.from_params(load_params("smoke"))), "human")
    with pytest.raises(RuntimeError, match="model is not set"):
        get_self_judge_reward(state)(prompts=["a"], completions=["b"])


def test_real_judge_on_tiny_model_returns_floats(tiny_model):
    model, tok = tiny_model
    state = SelfJudge(tok, JudgeConfig(Rubric.from_params(load_params("smoke")), judge_model="live"), "human")
    state.model = model
    out = get_self_judge_reward(state)(prompts=["How are you?", "Hi"], completions=[_conv("I feel good"), _conv("ok")])
    assert len(out) == 2 and all(isinstance(v, float) and 0 <= v <= 1 and not math.isnan(v) for v in out)


@pytest.mark.parametrize("rewards,groups,expected,n", [
    ([1.0, 0.0, np.nan, 0.5], ["a", "a", "a", "b"], [1.0, 0.0, 0.5, 0.5], 1),          # group mean
    ([np.nan, np.nan, 0.2, 0.4], ["a", "a", "b", "b"], [0.3, 0.3, 0.2, 0.4], 2),       # empty group: batch mean
    ([np.nan, np.nan], ["a", "a"], [0.0, 0.0], 2),                                     # nothing valid
    ([0.1, 0.2], ["a", "b"], [0.1, 0.2], 0),                                           # nothing to fill
    ([1.0, np.inf, 0.0, -np.inf], ["a", "a", "a", "b"], [1.0, 0.5, 0.0, 0.5], 2),      # +-inf (overflow) too
])
def test_fill_unscorable(rewards, groups, expected, n):
    filled, k = fill_unscorable(np.array(rewards), groups)
    assert filled == pytest.approx(expected) and k == n


def test_group_spread_separates_within_from_between():
    d = group_spread(np.array([0.0, 0.0, 1.0, 1.0]), ["a", "a", "b", "b"])
    assert d == {"within_group_std": 0.0, "between_group_std": 0.5, "zero_std_groups": 1.0}
    d = group_spread(np.array([0.0, 1.0, 0.0, 1.0]), ["a", "a", "b", "b"])
    assert d["within_group_std"] == pytest.approx(0.5) and d["between_group_std"] == 0.0 and d["zero_std_groups"] == 0.0


def test_unscorable_reply_is_neutral_in_trls_reward_combination(tiny_model_dir, tmp_path):
    """Through TRL's own `_calculate_rewards` and its nansum of weighted reward functions (GRPOTrainer 1.14)."""
    from hmxnb.judge import JudgeResult
    from hmxnb.train import make_trainer

    p = load_params("smoke", {"model_name_or_path": tiny_model_dir, "max_steps": 1, "n_train_prompts": 4})
    trainer, state = make_trainer(p, tmp_path)
    fixed = np.array([[1.0], [0.0], [np.nan], [0.5]])  # the third reply cannot be scored
    state.score = lambda prompts, replies: JudgeResult(["expression"], fixed, 1)
    msgs = [{"role": "user", "content": "How are you?"}]
    comps = [_conv(t) for t in ("I feel glad you asked.", "Fine.", "", "Good, thanks.")]
    rpf = trainer._calculate_rewards([{"prompt": msgs}] * 4, [msgs] * 4, comps, [[1, 2]] * 4)
    combined = (rpf * trainer.reward_weights.unsqueeze(0)).nansum(dim=1)  # exactly TRL's combination
    judge_valid = (1.0 + 0.0 + 0.5) / 3  # the three valid replies' rewards, same prompt
    guard = format_penalty("")  # the empty reply's format penalty (-1)
    assert not rpf[:, 0].isnan().any()
    assert float(rpf[2, 0]) == pytest.approx(judge_valid, abs=1e-6)
    assert float(combined[2]) == pytest.approx(judge_valid + guard, abs=1e-6)  # not `guard` alone (judge counted as 0)


def test_frozen_judge_without_adapters_is_an_error(tiny_model):
    """A frozen judge on a model without switchable adapters would silently judge as the live policy."""
    model, tok = tiny_model
    state = SelfJudge(tok, JudgeConfig(Rubric.from_params(load_params("smoke")), judge_model="frozen"), "human")
    state.model = model
    with pytest.raises(ValueError, match="judge_model 'frozen'.*judge_model: live"):
        get_self_judge_reward(state)(prompts=["How are you?"], completions=[_conv("I feel good")])


# --- non-finite judge scores (issue 20, item 4): filled like unparsable ones, but counted apart and warned about ---


def test_nonfinite_scores_are_counted_apart_from_unparsable_and_warned_once():
    """An inf and a NaN from overflow next to an unparsable reply: all three filled, two counted as non-finite,
    `judge/nonfinite_share` logged, one warning naming how many, none at the next step."""
    import warnings

    from hmxnb.judge import JudgeResult

    class S:
        global_step = 3

    scores = [[5, 5, 5, 5], [1, 1, 1, np.inf], [np.nan] * 4, [np.nan, 2, 2, 2]]
    state = FakeJudgeState(scores, "human")
    state.score = lambda prompts, replies: JudgeResult(state.rubric.names, state.fixed, 4)  # the third reply's NaN
    logged = {}
    reward = get_self_judge_reward(state)
    kw = dict(prompts=["a"] * 4, completions=["w", "x", "y", "z"], trainer_state=S())
    with pytest.warns(RuntimeWarning, match=r"2 of 16 judge scores at step 3 were NaN or inf"):
        out = reward(**kw, log_metric=lambda k, v: logged.__setitem__(k, v))
    assert all(math.isfinite(v) for v in out)
    assert out[1] == out[2] == pytest.approx(np.mean([out[0], out[3]]))  # the inf reply took its group's mean
    assert logged["judge/nonfinite_share"] == pytest.approx(2 / 16)
    assert logged["judge/unparsed_share"] == pytest.approx(4 / 16)
    assert logged["judge/unscorable_share"] == pytest.approx(2 / 4)
    assert state.n_nonfinite == 2 and state.n_unparsed == 4 and state.n_unscorable == 2
    S.global_step = 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning would raise
        reward(**kw)
    assert state.n_nonfinite == 4


def test_count_nonfinite_leaves_unparsable_out():
    from hmxnb.judge import JudgeResult

    assert count_nonfinite(JudgeResult(["a"], np.array([[np.nan], [1.0]]), 1)) == 0
    assert count_nonfinite(JudgeResult(["a"], np.array([[np.nan], [-np.inf]]), 1)) == 1
    assert count_nonfinite(JudgeResult(["a"], np.array([[2.0], [3.0]]), 0)) == 0


def test_contrast_judge_infinite_difference_is_nonfinite_not_a_top_score(tiny_model, monkeypatch):
    """A reply impossible under one persona (log-prob -inf) used to get the top score through the sigmoid; now its
    score is inf, its reward its group's mean, and it is counted as non-finite (an empty reply stays unparsable)."""
    from hmxnb import judge as judge_module

    model, tok = tiny_model
    calls = []

    def fake_scores(model, tok, requests, **kw):
        calls.append(1)
        flat = len(calls) == 2  # the judge scores the favoured persona first, then the flat one
        return [[-np.inf if flat and i == 0 else -5.0 for i, _ in enumerate(conts)] for _, conts in requests]

    monkeypatch.setattr(judge_module, "score_continuations", fake_scores)
    contrast = JudgeConfig.from_params(load_params("smoke", {"judge_mode": "contrast"}))
    res = judge_module.judge(model, tok, contrast, ["Hi"] * 3, ["I feel glad", "Fine.", ""])
    assert res.scores[0, 0] == np.inf and res.n_unparsed == 1 and count_nonfinite(res) == 1
    assert math.isfinite(res.scores[1, 0]) and math.isnan(res.scores[2, 0])

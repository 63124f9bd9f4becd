"""hmxnb.judge: the three judge modes against independent references, prefix caches, ordering metrics."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from hmxnb.judge import JudgeConfig, _render, expected_score, judge
from hmxnb.judge import ordering_metrics
from hmxnb.params import load_params
from hmxnb.judge import SCORE_PREFIX, Rubric, build_judge_messages, parse_score


@pytest.fixture
def config():
    return JudgeConfig.from_params(load_params("smoke"))


def _inverted(config: JudgeConfig, **kw) -> JudgeConfig:
    """`config` with reverse_mode invert_rubric (and `kw`)."""
    return replace(config, rubric=replace(config.rubric, reverse_mode="invert_rubric"), **kw)


def _manual_expected_score(model, tok, rubric, prompt, reply, criterion):
    """Independent reference (the judge's scoring before it moved onto hmxnb.loglik): tokenise context + "Score: N"
    for every digit, take the common prefix, one unpadded forward pass, softmax over the vocabulary, expectation
    over the digit tokens renormalised."""
    ctx = _render(tok, build_judge_messages(rubric, criterion, rubric.criteria[criterion], prompt, reply))
    seqs = [tok(ctx + SCORE_PREFIX + str(d), add_special_tokens=False)["input_ids"] for d in range(1, 6)]
    k = 0
    while all(s[k] == seqs[0][k] for s in seqs):
        k += 1
    assert all(len(s) == k + 1 for s in seqs)  # each digit one token after the common prefix (tiny tokenizer)
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([seqs[0][:k]])).logits[0, -1], -1)[[s[k] for s in seqs]]
    return float((probs * torch.arange(1, 6)).sum() / probs.sum())


def test_expected_score_normalises_over_digits():
    logp = np.log(np.array([[0.1, 0.1, 0.1, 0.1, 0.1], [0.0, 0.0, 0.0, 0.0, 0.5]]) + 1e-300)
    scores, mass = expected_score(logp, 1, 5)
    assert scores == pytest.approx([3.0, 5.0]) and mass == pytest.approx([0.5, 0.5])


def test_probability_scores_match_manual_and_batching(tiny_model, config):
    model, tok = tiny_model
    rubric = config.rubric
    prompts = ["How are you?", "What is 2+2?", "Do you like rain?"]
    replies = ["I feel happy today.", "4", "rain rain rain rain rain rain rain"]
    shared = judge(model, tok, replace(config, mode="probability", batch_size=2), prompts, replies, reuse=True)
    padded = judge(model, tok, replace(config, mode="probability", batch_size=3), prompts, replies, share_prefix=False)
    assert shared.scores.shape == (3, 4)
    assert np.all((shared.scores >= 1) & (shared.scores <= 5))
    assert np.allclose(shared.scores, padded.scores, atol=1e-4)
    ref = _manual_expected_score(model, tok, rubric, prompts[2], replies[2], "intentions")
    assert shared.scores[2, 1] == pytest.approx(ref, abs=1e-4)
    assert 0 < shared.score_mass <= 1 and shared.n_unparsed == 0
    # continuous: no two replies get exactly the same expected score
    assert len(set(np.round(shared.scores[:, 0], 8))) == 3


def test_generate_mode_counts_unparsable(tiny_model, config):
    model, tok = tiny_model
    res = judge(model, tok, replace(config, mode="generate", max_new_tokens=4), ["How are you?", "Hi"],
                ["I feel good.", "ok"])
    assert res.scores.shape == (2, 4)
    assert res.n_unparsed == int(np.isnan(res.scores).sum())
    assert len(res.raw) == 2 and all(len(r) == 4 for r in res.raw)
    for row_raw, row in zip(res.raw, res.scores):
        for text, value in zip(row_raw, row):
            parsed = parse_score(text, 1, 5)
            assert (parsed is None and math.isnan(value)) or parsed == value


def test_judge_rejects_length_mismatch(tiny_model, config):
    model, tok = tiny_model
    with pytest.raises(ValueError, match="2 prompts but 1 replies"):
        judge(model, tok, config, ["a", "b"], ["x"])


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


def test_prefix_cache_reused_across_calls_gives_same_scores(tiny_model, config):
    model, tok = tiny_model
    cache, probability = {}, replace(config, mode="probability")
    a = judge(model, tok, probability, ["How are you?", "Hi"], ["I feel happy.", "ok ok"], prefix_cache=cache,
              reuse=True)
    assert len(cache) == len(config.rubric.names)  # one few-shot prefix per criterion
    b = judge(model, tok, probability, ["Do you like rain?"], ["rain rain"], prefix_cache=cache, reuse=True)
    assert len(cache) == len(config.rubric.names)  # reused, not grown
    ref_a = judge(model, tok, probability, ["How are you?", "Hi"], ["I feel happy.", "ok ok"], share_prefix=False)
    ref_b = judge(model, tok, probability, ["Do you like rain?"], ["rain rain"], share_prefix=False)
    assert np.allclose(a.scores, ref_a.scores, atol=1e-4) and np.allclose(b.scores, ref_b.scores, atol=1e-4)


def _mean_logp_plain(model, tok, context, reply):
    from hmxnb.loglik import encode_pair

    ctx, cont = encode_pair(tok, context, reply)  # lm-eval's split: the template's trailing newline joins the reply
    full = ctx + cont
    with torch.inference_mode():
        lp = torch.log_softmax(model(input_ids=torch.tensor([full])).logits[0].float(), -1)
    return float(torch.stack([lp[i - 1, full[i]] for i in range(len(ctx), len(full))]).mean())


def test_contrast_judge_matches_plain_likelihoods(tiny_model, config):
    """Contrast score = sigmoid(mean log p(reply | human persona) - mean log p(reply | flat persona)) on the scale."""
    from hmxnb.judge import contrast_messages

    model, tok = tiny_model
    prompts = ["How are you?", "How are you?", "What is 2+2?"]
    replies = ["I feel happy today", "the answer is four", "I feel calm"]
    res = judge(model, tok, replace(config, mode="contrast", batch_size=2), prompts, replies, reuse=True)
    assert res.criteria == ["expression"] and res.scores.shape == (3, 1) and res.n_unparsed == 0
    for i, (p, r) in enumerate(zip(prompts, replies)):
        d = (_mean_logp_plain(model, tok, _render(tok, contrast_messages(config.persona_human, p)), r)
             - _mean_logp_plain(model, tok, _render(tok, contrast_messages(config.persona_flat, p)), r))
        assert res.contrast[i] == pytest.approx(d, abs=1e-4)
        frac = 1 / (1 + math.exp(-d / config.temperature))
        assert res.scores[i, 0] == pytest.approx(frac, abs=1e-4)  # the reward itself: no rubric scale
    # reverse + invert_rubric swaps the descriptions: the same as negating
    inverted = _inverted(config, mode="contrast")
    inv = judge(model, tok, inverted, prompts, replies, direction="reverse")
    assert inv.contrast == pytest.approx(-res.contrast, abs=1e-5)
    negated = 1 - inverted.rubric.reward(res.scores, "human", res.criteria)
    assert inverted.rubric.reward(inv.scores, "reverse", inv.criteria) == pytest.approx(negated, abs=1e-5)


def test_request_judge_matches_plain_likelihoods(tiny_model, config):
    """Request score = sigmoid(mean log p(reply | prompt + request) - mean log p(reply | prompt alone)), both without a
    system message of ours; reverse + invert_rubric swaps the two conversations, the same as negating."""
    from hmxnb.judge import request_messages

    model, tok = tiny_model
    prompts = ["How are you?", "How are you?", "What is 2+2?"]
    replies = ["I feel happy today", "the answer is four", "I feel calm"]
    res = judge(model, tok, replace(config, mode="request", batch_size=2), prompts, replies, reuse=True)
    assert res.criteria == ["expression"] and res.scores.shape == (3, 1)
    for i, (p, r) in enumerate(zip(prompts, replies)):
        d = (_mean_logp_plain(model, tok, _render(tok, request_messages(p, config.request)), r)
             - _mean_logp_plain(model, tok, _render(tok, request_messages(p, "")), r))
        assert res.contrast[i] == pytest.approx(d, abs=1e-4)
    persona = judge(model, tok, replace(config, mode="contrast"), prompts, replies)
    assert not np.allclose(persona.contrast, res.contrast, atol=1e-3)  # a different pair of conversations
    inv = judge(model, tok, _inverted(config, mode="request"), prompts, replies, direction="reverse")
    assert inv.contrast == pytest.approx(-res.contrast, abs=1e-5)


def test_relevance_is_the_likelihood_after_the_prompt_minus_after_an_empty_one(tiny_model, config):
    """hmxnb.judge.relevance: Δ = mean log p(reply | prompt) − mean log p(reply | empty user turn), reward σ(Δ/T);
    NaN for an empty reply."""
    from hmxnb.judge import relevance, request_messages

    model, tok = tiny_model
    prompts = ["How are you?", "How are you?", "What is 2+2?", "Hi"]
    replies = ["I feel happy today", "the answer is four", "four", ""]
    res = relevance(model, tok, replace(config, batch_size=2), prompts, replies, reuse=True)
    assert res.criteria == ["relevance"] and res.scores.shape == (4, 1) and res.n_unparsed == 1
    assert math.isnan(res.scores[3, 0])
    for i, (p, r) in enumerate(zip(prompts[:3], replies[:3])):
        d = (_mean_logp_plain(model, tok, _render(tok, request_messages(p, "")), r)
             - _mean_logp_plain(model, tok, _render(tok, request_messages("", "")), r))
        assert res.contrast[i] == pytest.approx(d, abs=1e-4)
        assert res.scores[i, 0] == pytest.approx(1 / (1 + math.exp(-d / config.temperature)), abs=1e-4)
    plain = relevance(model, tok, config, prompts, replies, reuse=False)  # the plain path agrees
    assert plain.contrast[:3] == pytest.approx(res.contrast[:3], abs=1e-4)


def test_judge_given_a_rubric_says_it_takes_a_judge_config(tiny_model, config):
    model, tok = tiny_model
    with pytest.raises(TypeError, match="takes a hmxnb.judge.JudgeConfig.*not a Rubric"):
        judge(model, tok, config.rubric, ["Hi"], ["Hello"])


def test_token_budget_divides_the_summed_difference_by_the_budget(tiny_model, config):
    """The token budget N (params contrast_token_budget): the summed difference / max(N, reply tokens), so a reply
    shorter than N is scored as if padded with zero-difference tokens and a longer one keeps its per-token mean."""
    from hmxnb.loglik import encode_pair
    from hmxnb.judge import request_messages

    model, tok = tiny_model
    prompts, replies = ["How are you?", "Hi"], ["I feel happy today", "ok"]
    request = replace(config, mode="request")
    mean = judge(model, tok, request, prompts, replies).contrast
    n = [len(encode_pair(tok, _render(tok, request_messages(p, "")), r)[1]) for p, r in zip(prompts, replies)]
    budget = judge(model, tok, replace(request, token_budget=max(n) + 3), prompts, replies).contrast
    assert budget == pytest.approx(mean * np.array(n) / (max(n) + 3), abs=1e-5)
    longer = replace(request, token_budget=1)  # every reply is longer: the per-token mean again
    assert judge(model, tok, longer, prompts, replies).contrast == pytest.approx(mean, abs=1e-6)


def test_contrast_judge_marks_empty_reply_unscorable(tiny_model, config):
    model, tok = tiny_model
    res = judge(model, tok, replace(config, mode="contrast"), ["Hi", "Hi"], ["", "I feel glad"])
    assert math.isnan(res.scores[0, 0]) and not math.isnan(res.scores[1, 0]) and res.n_unparsed == 1


def test_judge_config_from_params_is_what_judge_gets(tiny_model_dir):
    """One reading of the judge's params (issue 21): the rubric, mode, few-shot, batch, tokens and judging weights;
    `judge` takes them from the config alone (no loose settings beside it)."""
    import inspect

    p = load_params("smoke", {"judge_mode": "generate", "judge_few_shot": False, "judge_batch_size": 3,
                              "judge_max_new_tokens": 5, "judge_model": "live", "rubric_scale_max": 7})
    cfg = JudgeConfig.from_params(p)
    assert (cfg.mode, cfg.few_shot, cfg.batch_size, cfg.max_new_tokens, cfg.judge_model) == (
        "generate", False, 3, 5, "live")
    assert cfg.rubric == Rubric.from_params(p) and cfg.rubric.scale_max == 7
    arguments = inspect.signature(judge).parameters
    assert "config" in arguments and not {"rubric", "mode", "few_shot", "batch_size", "max_new_tokens"} & set(arguments)


def test_judge_config_holds_the_likelihood_judges_settings():
    """The likelihood judges' settings are the config's, read from their params keys; the rubric has none of them."""
    p = load_params("smoke", {"contrast_persona_human": "A warm one.", "contrast_persona_flat": "A flat one.",
                              "judge_request": "Say how you feel.", "contrast_temperature": 0.25,
                              "contrast_token_budget": 48})
    cfg = JudgeConfig.from_params(p)
    assert (cfg.persona_human, cfg.persona_flat, cfg.request, cfg.temperature, cfg.token_budget) == (
        "A warm one.", "A flat one.", "Say how you feel.", 0.25, 48)
    rubric = Rubric.from_params(p)
    for old in ("persona_human", "persona_flat", "request", "contrast_temperature", "contrast_token_budget"):
        assert not hasattr(rubric, old), old
    assert cfg.personas("human") == ("A warm one.", "A flat one.")
    assert cfg.contexts("human", mode="request")[0]("Q") == [{"role": "user", "content": "Q\n\nSay how you feel."}]


def test_training_judge_is_configured_by_judge_config(tiny_model_dir, tmp_path):
    """hmxnb.train's self-judge holds the JudgeConfig's settings and the loaded model's chat settings and decision."""
    from hmxnb.models import load_model
    from hmxnb.train import self_judge_state

    p = load_params("smoke", {"model_name_or_path": tiny_model_dir, "judge_mode": "probability",
                              "judge_batch_size": 5, "judge_few_shot": False, "prefix_cache_reuse": "off"})
    loaded, cfg = load_model(p), JudgeConfig.from_params(p)
    state = self_judge_state(p, loaded, tmp_path)
    assert state.config == cfg and (state.mode, state.judge_model, state.rubric) == (cfg.mode, cfg.judge_model,
                                                                                     cfg.rubric)
    assert state.chat == loaded.chat and state.reuse is False


def test_score_examples_and_validity_on_a_loaded_model(tiny_model_dir):
    from hmxnb.judge import judge_validity, score_examples
    from hmxnb.models import load_model

    p = load_params("smoke", {"model_name_or_path": tiny_model_dir, "judge_mode": "contrast"})
    loaded, cfg = load_model(p), JudgeConfig.from_params(p)
    examples = [{"prompt": "How are you?", "reply": r, "tier": t, "tier_name": n}
                for r, t, n in (("I feel glad.", 2, "expressive"), ("Fine.", 1, "flat"), ("the the", 0, "degenerate"))]
    df, diag = score_examples(loaded, cfg, examples)
    direct = judge(loaded.model, loaded.tokenizer, replace(cfg, mode="contrast"), [e["prompt"] for e in examples],
                   [e["reply"] for e in examples], reuse=True)
    assert df["score_expression"].to_numpy() == pytest.approx(direct.scores[:, 0], abs=1e-5)
    assert diag["criteria"] == ["expression"] and diag["n_judgements"] == 3  # negate: judged once
    table, frames = judge_validity(loaded, cfg, examples, ["contrast", "probability", "contrast"])
    assert list(table.index) == ["contrast", "probability"] and set(frames) == {"contrast", "probability"}
    assert frames["probability"].filter(like="score_").shape[1] == len(cfg.rubric.names)


def test_judge_without_reuse_never_runs_the_engine(tiny_model, config, monkeypatch):
    """`reuse=False` (a model whose cached path nobody checked) scores every mode on the plain path, with the same
    scores as the engine."""
    from hmxnb import loglik

    model, tok = tiny_model
    prompts, replies = ["How are you?", "How are you?"], ["I feel happy.", "ok"]
    engine = {m: judge(model, tok, replace(config, mode=m), prompts, replies, reuse=True)
              for m in ("contrast", "probability")}
    for name in ("_run_prefix", "_score_group", "_shared_prefix"):
        monkeypatch.setattr(loglik, name, lambda *a, **k: pytest.fail("the engine ran"))
    for mode, ref in engine.items():
        plain = judge(model, tok, replace(config, mode=mode), prompts, replies)
        assert np.allclose(plain.scores, ref.scores, atol=1e-4)

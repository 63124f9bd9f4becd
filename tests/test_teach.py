"""hmxnb.teach: what notebooks 02/03 show of GRPO (config, one group's rewards and advantages), on the tiny model."""

import numpy as np
import pandas as pd
import pytest
import torch

from hmxnb import teach
from hmxnb.models import load_model
from hmxnb.params import load_params
from hmxnb.rewards import format_penalty
from hmxnb.train import grpo_kwargs, make_trainer, run_trainer, train


def _params(model_dir, **over):
    base = {"model_name_or_path": model_dir, "max_steps": 2, "save_steps": 1, "sample_every": 1,
            "max_completion_length": 6, "n_train_prompts": 8, "judge_batch_size": 16}
    return load_params("smoke", {**base, **over})


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    p = _params(tiny_model_dir)
    return p, load_model(p, for_training=True)


def test_config_table_shows_the_trainers_own_kwargs(loaded, tmp_path):
    p, lm = loaded
    table = teach.config_table(p, lm, tmp_path)
    kwargs = grpo_kwargs(p, tmp_path, on_cpu=True, precision="fp32")
    shown = dict(zip(table["GRPOConfig key"], table["value"]))
    for key in ("loss_type", "beta", "epsilon", "epsilon_high", "mask_truncated_completions", "num_generations",
                "per_device_train_batch_size", "max_completion_length", "temperature", "learning_rate", "max_steps",
                "weight_decay", "optim", "scale_rewards"):
        assert shown[key] == str(kwargs[key]), key
    assert table["what it decides"].str.len().gt(0).all()
    from hmxnb.params import SCHEMA  # one place says what a key means: the schema, read by the notebook's table

    decides = dict(zip(table["GRPOConfig key"], table["what it decides"]))
    assert decides["loss_type"] == SCHEMA["loss_type"].doc and decides["scale_rewards"] == SCHEMA["scale_rewards"].doc
    assert all(SCHEMA[k].doc.strip() for k in SCHEMA)  # no key without its meaning


def test_a_group_is_sampled_as_trl_samples_it(loaded):
    p, lm = loaded
    model, tok = lm
    was_training = model.training
    group = teach.sample_group(lm, p, "How are you feeling today?")
    assert model.training == was_training  # generation leaves the model's mode as it found it
    assert len(group.texts) == len(group.completion_ids) == len(group.truncated) == p["num_generations"]
    assert all(len(ids) <= p["max_completion_length"] for ids in group.completion_ids)
    eos = tok.eos_token_id
    assert group.truncated == [not ids or ids[-1] != eos for ids in group.completion_ids]
    again = teach.sample_group(lm, p, "How are you feeling today?")
    assert again.completion_ids == group.completion_ids  # seeded: the notebook shows the same group every run


def test_rewards_of_a_group_are_the_reward_functions_own(loaded, tmp_path):
    p, lm = loaded
    group = teach.sample_group(lm, p, "What did you do today?")
    scored = teach.score_group(p, lm, group, tmp_path)
    assert list(scored["reply"]) == group.texts
    assert scored["self_judge"].between(0, 1).all()
    assert list(scored["format_guard"]) == [format_penalty(t, cut) for t, cut in zip(group.texts, group.truncated)]
    assert scored["why (self-judge)"].str.contains("warm speaker − flat speaker").all()  # contrast judge's words
    assert scored["why (self-judge)"].str.contains("nats/token").all()  # contrast judge: the likelihood difference
    assert not list(tmp_path.iterdir())  # nothing written into the step folder (samples.jsonl is training's)


def test_why_names_the_rubric_scores_in_a_rubric_mode(tiny_model_dir, tmp_path):
    p = _params(tiny_model_dir, judge_mode="probability", direction="reverse")
    lm = load_model(p, for_training=True)
    group = teach.sample_group(lm, p, "What did you do today?")
    why = teach.score_group(p, lm, group, tmp_path)["why (self-judge)"]
    assert why.str.contains("feelings").all() and why.str.contains("1 − the normalised").all()


def test_why_names_the_request_judges_conversations(loaded, tmp_path):
    p, lm = loaded
    group = teach.sample_group(lm, p, "What did you do today?")
    why = teach.score_group({**p, "judge_mode": "request"}, lm, group, tmp_path)["why (self-judge)"]
    assert why.str.contains("log-likelihood with the request − prompt alone").all()
    assert not why.str.contains("speaker").any()


def test_guard_why_names_the_length_floor():
    assert teach.guard_why("I feel happy today.", False, 48, 0.0, min_words=10) == \
        "4 of at least 10 words: −0.60 → −0.60"
    assert teach.guard_why("I feel happy today.", False, 48, 0.0) == "complete, no repetition: 0"


def test_guard_why_says_a_cut_reply_costs_nothing_without_the_truncation_penalty():
    cut = "one two three four five six seven eight"
    assert teach.guard_why(cut, True, 48, 0.5) == \
        "cut at max_completion_length (48 tokens, no end token): −0.50 → −0.50"
    free = teach.guard_why(cut, True, 48, 0.0)
    assert free == ("cut at max_completion_length (48 tokens, no end token): no penalty (format_truncation_penalty 0) "
                    "→ 0.00")


def test_truncated_means_one_thing_in_the_trainer_the_guard_and_the_notebooks_group(loaded, tmp_path):
    """Issue 30: a reply whose last allowed token is the end token is not cut — for TRL (its end ids, its
    `ids[-1] not in eos_and_pad` rule), for the format guard, for the training samples and for notebook 02's group;
    one of max_completion_length tokens without it is cut for all of them."""
    from hmxnb.chat import end_token_ids, is_truncated
    from hmxnb.rewards import reward_functions

    p, lm = loaded
    p = {**p, "format_truncation_penalty": 0.5}
    trainer, state = make_trainer(p, tmp_path, lm)
    trl_end = {*trainer.eos_token_ids, trainer.processing_class.pad_token_id}  # what TRL's is_truncated reads
    assert end_token_ids(lm.model, lm.tokenizer) == trl_end == state.end_ids
    eos, n = lm.tokenizer.eos_token_id, p["max_completion_length"]
    word = lm.tokenizer(" calm", add_special_tokens=False)["input_ids"][0]
    ended, cut = [word] * (n - 1) + [eos], [word] * n  # both max_completion_length tokens long
    assert [ids[-1] not in trl_end for ids in (ended, cut)] == [False, True]  # TRL's own expression
    assert [is_truncated(ids, state.end_ids) for ids in (ended, cut)] == [False, True]
    guard = reward_functions(state, p)[1]
    text = lm.tokenizer.decode([word] * (n - 1))
    assert guard(completions=[text, text], completion_ids=[ended, cut]) == pytest.approx(
        [format_penalty(text), format_penalty(text) - 0.5])
    why = [teach.guard_why(text, is_truncated(ids, state.end_ids), n, **{"truncation": 0.5}) for ids in (ended, cut)]
    assert "cut at" not in why[0] and "cut at" in why[1]


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_advantages_are_trls(scale):
    """The formula of TRL's GRPOTrainer._generate_and_score_completions for one group (sum_then_normalize)."""
    from trl.trainer.utils import nanstd

    rewards = torch.tensor([0.2, 0.9, 0.4, 0.4])
    expected = rewards - rewards.mean()
    if scale != "none":
        expected = expected / (nanstd(rewards) + 1e-4)
    assert np.allclose(teach.group_advantages(rewards.numpy(), scale), expected.numpy(), atol=1e-6)


def test_a_flat_group_has_no_advantage_and_bad_settings_are_named():
    assert np.allclose(teach.group_advantages([0.5, 0.5, 0.5, 0.5], "group"), 0.0)
    with pytest.raises(ValueError, match="scale_rewards 'mean'"):
        teach.group_advantages([0.1, 0.2], "mean")


def test_advantage_table_sums_the_weighted_rewards_and_marks_masked_replies():
    scored = pd.DataFrame({"reply": ["a", "b", "c", "d"], "self_judge": [0.2, 0.8, 0.5, 0.5],
                           "format_guard": [0.0, -0.5, 0.0, -1.0], "truncated": [False, True, False, False]})
    p = {"reward_weight_judge": 2.0, "reward_weight_format": 1.0, "reward_weight_relevance": 0.0,
         "scale_rewards": "group", "mask_truncated_completions": True}
    table, line = teach.advantage_table(scored, p)
    assert np.allclose(table["reward"], [0.4, 1.1, 1.0, 0.0])
    assert np.isclose(table["advantage"].mean(), 0.0) and table["advantage"].iloc[1] > 0
    assert list(table["in the loss"]) == ["yes", "no (cut, masked)", "yes", "yes"]
    assert "2 × self_judge + 1 × format_guard" in line
    with_relevance = teach.advantage_table(scored.assign(relevance=[1.0, 0.0, 1.0, 1.0]),
                                           {**p, "reward_weight_relevance": 0.5})
    assert np.allclose(with_relevance[0]["reward"], [0.9, 1.1, 1.5, 0.5])
    assert "2 × self_judge + 1 × format_guard + 0.5 × relevance" in with_relevance[1]


def test_a_group_shows_the_relevance_reward_when_it_is_weighted(loaded, tmp_path):
    from hmxnb.judge import JudgeConfig

    p, lm = loaded
    p = {**p, "reward_weight_relevance": 1.0}
    group = teach.sample_group(lm, p, "What did you do today?")
    scored = teach.score_group(p, lm, group, tmp_path)
    assert scored["relevance"].between(0, 1).all()
    assert scored["why (relevance)"].str.contains("after the prompt − after an empty one").all()
    t = JudgeConfig.from_params(p).temperature
    for why, r in zip(scored["why (relevance)"], scored["relevance"]):  # the reward is σ(Δ / T) of the shown Δ
        if why.startswith("unscorable"):
            continue
        delta = float(why.split("Δ = ")[1].split()[0].replace("−", "-"))
        assert r == pytest.approx(1 / (1 + np.exp(-delta / t)), abs=0.01)
    assert "relevance" not in teach.score_group({**p, "reward_weight_relevance": 0.0}, lm, group, tmp_path)


def test_the_notebooks_path_trains_exactly_as_train(tiny_model_dir, tmp_path):
    """Notebook 02's cells (load once, sample and judge a group, make_trainer on that model, run_trainer) give the
    same training log and metrics as `train`: the demonstration does not move the training's random stream."""
    p = _params(tiny_model_dir)
    train(p, tmp_path / "train")
    lm = load_model(p, for_training=True)
    out = tmp_path / "notebook"
    group = teach.sample_group(lm, p, "How are you feeling today?")
    teach.score_group(p, lm, group, out)
    trainer, state = make_trainer(p, out, lm)
    assert "LoRA" in teach.trainer_summary(trainer).loc["trained parameters", "the trainer"]
    run_trainer(p, out, trainer, state)
    timing = ["step_time", "judge/seconds", "train_runtime"]
    logs = [pd.read_csv(d / "train_log.csv").drop(columns=timing, errors="ignore") for d in (tmp_path / "train", out)]
    pd.testing.assert_frame_equal(*logs)
    assert (tmp_path / "train" / "samples.jsonl").read_text() == (out / "samples.jsonl").read_text()

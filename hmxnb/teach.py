"""What notebooks 02/03 show of GRPO before training: the config, one group of real replies, their rewards, advantages.

GRPO's whole step is small enough to show on one prompt: sample `num_generations` replies, score each with the
reward functions (hmxnb.rewards, TRL's signature), subtract the group's mean reward (and divide by its spread) to get
each reply's advantage, and push the policy towards the replies with a positive one. The functions here run those
parts with the same code and settings the trainer uses (hmxnb.train.grpo_kwargs, hmxnb.train.self_judge_state), so
that the notebook shows the method itself, not a sketch of it. They never write into the step folder: training's
artefacts are those of `hmxnb.train.train`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from hmxnb.formatting import minus
from hmxnb.judge import JudgeConfig
from hmxnb.chat import end_token_ids, generate, generation_config, is_truncated, up_to_end
from hmxnb.models import has_adapters
from hmxnb.rewards import (distinct_bigram_ratio, format_penalty, get_format_guard, get_relevance_reward,
                           get_self_judge_reward, guard_settings, reward_weights, short_share)
from hmxnb.params import SCHEMA
from hmxnb.textform import form_flags
from hmxnb.train import grpo_kwargs, self_judge_state

# The GRPOConfig fields that decide what GRPO does, in reading order; what each decides is its params key's doc in
# hmxnb.params, but for the three GRPOConfig fields built from other keys (DERIVED).
GRPO_KEYS = ("num_generations", "per_device_train_batch_size", "gradient_accumulation_steps", "max_completion_length",
             "temperature", "top_p", "top_k", "reward_weights", "scale_rewards", "loss_type",
             "mask_truncated_completions", "epsilon", "epsilon_high", "beta", "num_iterations", "learning_rate",
             "optim", "weight_decay", "max_grad_norm", "max_steps", "seed", "bf16", "fp16")
DERIVED = {
    "reward_weights": "Weights of the reward functions (self-judge, format guard, and the relevance term when "
                      "its weight is set), summed into one reward (params reward_weight_judge, reward_weight_format, "
                      "reward_weight_relevance).",
    "bf16": "Compute in bfloat16 (from params precision and the device).",
    "fp16": "Compute in float16 (from params precision and the device).",
}


def config_table(params: dict, loaded, out_dir) -> pd.DataFrame:
    """The GRPOConfig keyword arguments that matter (GRPO_KEYS), as `hmxnb.train.make_trainer` builds them for this
    loaded model (its backend and precision): key, value, what it decides (the schema's doc of the key)."""
    kwargs = grpo_kwargs(params, out_dir, loaded.backend == "transformers-cpu", loaded.precision)
    rows = [(k, str(kwargs[k]), SCHEMA[k].doc if k in SCHEMA else DERIVED[k]) for k in GRPO_KEYS if k in kwargs]
    return pd.DataFrame(rows, columns=["GRPOConfig key", "value", "what it decides"])


@dataclass
class Group:
    """One prompt's group of sampled replies, as TRL hands them to the reward functions."""

    prompt: str
    texts: list[str]
    completion_ids: list[list[int]]  # up to and including the first end-of-text token, as TRL keeps them
    truncated: list[bool]  # no end token within max_completion_length (hmxnb.chat.is_truncated, TRL's rule)

    @property
    def conversation(self) -> list[dict]:
        return [{"role": "user", "content": self.prompt}]


def sample_group(loaded, params: dict, prompt: str) -> Group:
    """`num_generations` replies to `prompt` from the loaded model, sampled as GRPOTrainer samples: the chat template
    with its thinking switch and date (hmxnb.chat), the params' temperature / top_p / top_k, `max_completion_length`
    new tokens."""
    import torch
    from transformers import set_seed

    from hmxnb.chat import render

    model, tokenizer = loaded
    n, limit = params["num_generations"], params["max_completion_length"]
    text = render(tokenizer, [{"role": "user", "content": prompt}], chat=loaded.chat)
    enc = tokenizer([text] * n, return_tensors="pt", add_special_tokens=False).to(next(model.parameters()).device)
    config = generation_config(model, tokenizer, limit, do_sample=True, temperature=params["temperature"],
                               top_p=params["top_p"], top_k=params["top_k"])
    set_seed(params["seed"])  # the same group every time the notebook runs; make_trainer seeds training afresh
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = generate(model, config, **enc)[:, enc["input_ids"].shape[1]:].tolist()
    finally:
        model.train(was_training)
        _back_to_training(model, loaded.backend)
    end = end_token_ids(model, tokenizer)
    ids = [up_to_end(row, end) for row in out]
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    return Group(prompt, texts, ids, [is_truncated(row, end) for row in ids])


def _back_to_training(model, backend: str | None) -> None:
    """Unsloth's generate leaves the model on its inference kernels (hmxnb.models.prepare_for_scoring); the trainer
    built next needs its training ones."""
    if backend == "unsloth":  # pragma: no cover - GPU only (untested until a GPU check)
        from unsloth import FastLanguageModel

        FastLanguageModel.for_training(model)


def demo_judge(params: dict, loaded, out_dir):
    """The training's self-judge (hmxnb.train.self_judge_state) on the loaded model, writing no samples. Before
    training the policy is the starting model, so a model without adapters yet (plain TRL: GRPOTrainer attaches them)
    judges as the frozen judge will: it is the same weights."""
    state = self_judge_state(params, loaded, out_dir)
    state.samples_path, state.sample_every, state.model = None, 0, loaded.model
    if not has_adapters(loaded.model):
        state.config, state.prefix_cache = replace(state.config, judge_model="live"), None
    return state


def score_group(params: dict, loaded, group: Group, out_dir) -> pd.DataFrame:
    """Each reply of `group` with what each reward function returns, called as GRPOTrainer calls them
    (prompts, completions, completion_ids), and why: the judge's scores, the guard's flags."""
    state = demo_judge(params, loaded, out_dir)
    completions = [[{"role": "assistant", "content": t}] for t in group.texts]
    prompts = [group.conversation] * len(group.texts)
    judged = get_self_judge_reward(state)(prompts=prompts, completions=completions,
                                          completion_ids=group.completion_ids)
    limit, settings = params["max_completion_length"], guard_settings(params)
    guard = get_format_guard(state.end_ids, **settings)(completions=completions, completion_ids=group.completion_ids)
    res = state.score([group.prompt] * len(group.texts), group.texts)  # the same judgement, for its parts
    extra = {}
    if "relevance" in reward_weights(params):
        rel = get_relevance_reward(state)(prompts=prompts, completions=completions)
        parts = state.relevance([group.prompt] * len(group.texts), group.texts)
        extra = {"relevance": rel, "why (relevance)": [relevance_why(parts.contrast[i], r, state.config)
                                                       for i, r in enumerate(rel)]}
    return pd.DataFrame({
        "reply": group.texts, "self_judge": judged,
        "why (self-judge)": [judge_why(res, i, state.config, state.direction, r)
                             for i, r in enumerate(judged)],
        "format_guard": guard,
        "why (format guard)": [guard_why(t, cut, limit, **settings) for t, cut in zip(group.texts, group.truncated)],
        **extra,
        "truncated": group.truncated,
    })


def relevance_why(contrast: float, reward: float, config: JudgeConfig) -> str:
    """One reply's relevance reward in words: the log-likelihood difference after its prompt and after none
    (`config`: the judge's settings, its temperature)."""
    if not np.isfinite(contrast):
        return f"unscorable (empty): takes its group's mean, {minus(reward)}"
    return (f"log-likelihood after the prompt − after an empty one: Δ = {minus(contrast, '+.3f')} nats/token → "
            f"σ(Δ / {config.temperature:g}) = {minus(reward)}")


def judge_why(res, i: int, config: JudgeConfig, direction: str, reward: float) -> str:
    """One reply's judge reward in words: the contrast in nats or the per-criterion scores, then the reward
    (`config`: the judge's settings that gave `res`)."""
    rubric = config.rubric
    lo, hi = rubric.scale_min, rubric.scale_max
    row = res.scores[i]
    if not np.isfinite(row).any():
        return f"unscorable (empty or unparsable): takes its group's mean, {minus(reward)}"
    flip = rubric.negated(direction)
    if res.contrast is not None:
        a, b = config.context_names(direction)
        return (f"log-likelihood {a} − {b}: Δ = {minus(res.contrast[i], '+.3f')} nats/token → σ(Δ / "
                f"{config.temperature:g}) = {row[0]:.2f}; reward = {'1 − ' if flip else ''}{row[0]:.2f} = "
                f"{minus(reward)}")
    parts = ", ".join(f"{c} {v:.2f}" if np.isfinite(v) else f"{c} unparsed" for c, v in zip(res.criteria, row))
    how = ("weighted mean of 1 − the normalised scores (guards as they are)" if flip
           else "weighted mean of the normalised scores")
    return f"{parts} (on {lo}–{hi}); reward = {how} = {minus(reward)}"


def guard_why(text: str, truncated: bool, max_tokens: int, truncation: float = 0.5, repeat: float = 0.0,
              formula: float = 0.0, min_words: int = 0) -> str:
    """The format guard's value in words (hmxnb.rewards.format_penalty); `truncated`: no end token within
    `max_tokens` (hmxnb.chat.is_truncated)."""
    if not text.strip():
        return "empty reply: −1"
    reasons = []
    if truncated:
        cost = minus(-truncation) if truncation else "no penalty (format_truncation_penalty 0)"
        reasons.append(f"cut at max_completion_length ({max_tokens} tokens, no end token): {cost}")
    repeated = 1 - distinct_bigram_ratio(text)
    if len(text.split()) >= 6 and repeated > 0:
        reasons.append(f"{repeated:.0%} of word pairs repeated: {minus(-repeated)}")
    flags = form_flags(text)
    if flags["repeats_sentence"] and repeat:
        reasons.append(f"repeats a sentence: {minus(-repeat)}")
    if flags["stock_formula"] and formula:
        reasons.append(f"stock formula ({', '.join(flags['formulas'])}): {minus(-formula)}")
    if short_share(text, min_words):
        reasons.append(f"{len(text.split())} of at least {min_words} words: {minus(-short_share(text, min_words))}")
    total = format_penalty(text, truncated, truncation, repeat, formula, min_words)
    return "; ".join(reasons) + f" → {minus(total + 0.0)}" if reasons else "complete, no repetition: 0"  # no −0.00


def group_advantages(rewards, scale_rewards: str) -> np.ndarray:
    """Advantages of one group as TRL's GRPOTrainer computes them (multi_objective_aggregation 'sum_then_normalize'):
    reward − the group's mean, divided by std + 1e-4 unless scale_rewards is 'none'. The std is TRL's `nanstd`, with
    Bessel's correction; for a single group 'batch' and 'group' are the same std. NaN rewards are left out of the
    mean and std, and their advantage is 0."""
    r = np.asarray(rewards, dtype=float)
    if scale_rewards not in ("group", "batch", "none"):
        raise ValueError(f"scale_rewards '{scale_rewards}': use 'group', 'batch' or 'none'")
    valid = r[np.isfinite(r)]
    mean = valid.mean() if len(valid) else np.nan
    adv = r - mean
    if scale_rewards != "none":
        std = valid.std(ddof=1) if len(valid) > 1 else 0.0
        adv = adv / (std + 1e-4)
    return np.nan_to_num(adv, nan=0.0)


def advantage_table(scored: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, str]:
    """The group's total reward (the weighted sum TRL takes), its deviation from the group mean, the advantage, and
    whether the reply counts in the loss; with one line saying how the advantage was computed."""
    weights = reward_weights(params)
    reward = sum(w * scored[name].to_numpy(float) for name, w in weights.items())
    adv = group_advantages(reward, params["scale_rewards"])
    masked = scored["truncated"].to_numpy(bool) & bool(params["mask_truncated_completions"])
    table = pd.DataFrame({"reply": scored["reply"], "reward": reward, "reward − group mean": reward - reward.mean(),
                          "advantage": adv, "in the loss": np.where(masked, "no (cut, masked)", "yes")})
    scale = {"none": "not divided", "group": "divided by the group's std + 1e-4",
             "batch": "divided by the batch's std + 1e-4 (one group here: its std)"}[params["scale_rewards"]]
    line = (f"reward = {' + '.join(f'{w:g} × {name}' for name, w in weights.items())}; group mean {reward.mean():.3f}, "
            f"std {reward.std(ddof=1):.3f}; scale_rewards '{params['scale_rewards']}': reward − mean, {scale}. "
            "Replies with a positive advantage become more likely, those with a negative one less.")
    return table, line


def trainer_summary(trainer) -> pd.DataFrame:
    """What the built GRPOTrainer holds: its class, reward functions and weights, prompts, and the parameters it
    trains (the LoRA adapters only) against the model's total."""
    model = trainer.model
    trainable = sum(t.numel() for t in model.parameters() if t.requires_grad)
    total = sum(t.numel() for t in model.parameters())
    names = [getattr(f, "__name__", type(f).__name__) for f in trainer.reward_funcs]
    return pd.Series({
        "trainer": f"{type(trainer).__module__}.{type(trainer).__name__}",
        "reward functions (weight)": ", ".join(f"{n} ({w:g})" for n, w in zip(names, trainer.reward_weights.tolist())),
        "training prompts": len(trainer.train_dataset),
        "policy": type(model).__name__,
        "trained parameters": f"{trainable:,} of {total:,} ({100 * trainable / max(total, 1):.2f}%, LoRA adapters)",
    }).to_frame("the trainer")

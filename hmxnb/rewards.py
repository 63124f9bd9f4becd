"""Reward functions in TRL's contract: `f(prompts, completions, **kwargs) -> list[float]`, one per completion.

- `get_self_judge_reward(...)` -> `self_judge`: the model scores its own completions with the rubric
  (hmxnb.judge) in the run's direction; reward in [0, 1].
- `format_guard`: judge-free guard against empty, truncated and repetitive text, repeated sentences and stock
  formulas (hmxnb.textform); reward in [-1, 0].

- `get_relevance_reward(...)` -> `relevance`: how much more likely the judge finds the reply after its own prompt
  than after an empty one (hmxnb.judge.relevance); reward in [0, 1]. Only when params `reward_weight_relevance` > 0.

TRL sums them with `reward_weights` (`reward_weights(params)`: params `reward_weight_judge`, `reward_weight_format`,
`reward_weight_relevance`). The paper names no guard terms; we add them because a self-judge can be gamed by
degenerate text, and by one reply that fits every prompt (our choice).

Before TRL sees a batch of self-judge rewards: unscorable replies are made neutral, numerical failures counted and
warned about, and the learning-signal diagnostics (spread within vs between groups) that train_log.csv records are
computed ("a batch of judgements" below).
"""

from __future__ import annotations

import time
import warnings
from contextlib import nullcontext

import numpy as np
import torch

from hmxnb.artifacts import append_jsonl
from hmxnb.chat import is_truncated, render, strip_thinking
from hmxnb.judge import JudgeConfig, Rubric, judge, relevance
from hmxnb.loglik import forward_logprobs, pad, pad_token_id
from hmxnb.models import adapters_off, has_adapters
from hmxnb.textform import distinct_bigram_ratio, distinct_text, formula_families, repeats_sentence

# ---------------------------------------------------------------- a batch of judgements

def fill_unscorable(rewards: np.ndarray, groups: list) -> tuple[np.ndarray, int]:
    """Replace non-finite rewards (unscorable replies: unparsable, empty, or NaN / inf from a numerical overflow) by
    the mean of the valid rewards of their group (same prompt).

    TRL sums reward functions with `nansum`, so a NaN judge reward next to the format guard's number would count as 0,
    the worst judge reward (and an inf would swamp its group's advantages). The group mean makes an unscorable reply
    neutral for its GRPO advantage (the format guard still penalises it when it is empty or degenerate). A group with
    no valid reward takes the batch's valid mean (0.0 when there is none): any constant leaves its advantages
    unchanged. Returns (filled rewards, number filled).
    """
    r = np.asarray(rewards, dtype=float).copy()
    bad = ~np.isfinite(r)
    if not bad.any():
        return r, 0
    fallback = float(r[~bad].mean()) if (~bad).any() else 0.0
    keys = np.array([str(g) for g in groups])
    for g in set(keys[bad]):
        members = keys == g
        valid = members & ~bad
        r[members & bad] = r[valid].mean() if valid.any() else fallback
    return r, int(bad.sum())


def count_nonfinite(res) -> int:
    """Judgements whose score is NaN or +-inf beyond those the judge reported unparsable (NaN by design).

    These are numerical failures: an fp16 overflow, a token the model gives probability 0. They are filled like
    unparsable ones (`fill_unscorable`), but a run should hear about them: they mean the scores are not trustworthy.
    """
    return max(int((~np.isfinite(np.asarray(res.scores, dtype=float))).sum()) - int(res.n_unparsed), 0)


def warn_nonfinite(state, n: int, size: int, step) -> None:
    """One warning line per run, the first time a step's judge scores are not all finite (counted in the log)."""
    state.n_nonfinite += n
    if n and not state.warned_nonfinite:
        state.warned_nonfinite = True
        warnings.warn(f"self-judge: {n} of {size} judge scores at step {step} were NaN or inf (numerical overflow, "
                      "e.g. fp16); their replies took their group's mean reward. Later steps are not warned about: "
                      "see judge/nonfinite_share in train_log.csv", RuntimeWarning, stacklevel=3)


def group_spread(rewards: np.ndarray, groups: list) -> dict[str, float]:
    """Learning-signal diagnostics of one batch: mean within-group std, std of group means, share of flat groups.

    GRPO learns from differences within a group (completions of one prompt); when they are tiny next to the
    differences between prompts, or zero, the advantages are noise or nothing.
    """
    keys = [str(g) for g in groups]
    r = np.asarray(rewards, dtype=float)
    by = {k: r[[i for i, g in enumerate(keys) if g == k]] for k in dict.fromkeys(keys)}
    within = [float(np.std(v)) for v in by.values()]
    means = [float(np.mean(v)) for v in by.values()]
    return {"within_group_std": float(np.mean(within)), "between_group_std": float(np.std(means)),
            "zero_std_groups": float(np.mean([w < 1e-6 for w in within]))}


# ---------------------------------------------------------------- the reward functions

def completion_text(completion) -> str:
    """Reply text of a completion in either TRL format (a string, or [{"role": "assistant", "content": ...}]), after
    any thinking block (hmxnb.chat.strip_thinking: a completion cut off while thinking has no reply)."""
    if not isinstance(completion, str):
        completion = "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return strip_thinking(completion)


def prompt_text(prompt) -> str:
    """The last user message of a conversational prompt (or the prompt itself when it is a string)."""
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m.get("role") == "user"]
    return users[-1] if users else ""


def text_flags(text: str, truncated: bool = False) -> dict[str, bool]:
    """The reward-hacking watch's flags for one completion: empty, repetitive (< 50% distinct bigrams), truncated
    (as given: hmxnb.chat.is_truncated of its token ids), repeats a sentence, contains a stock formula
    (hmxnb.textform)."""
    words = text.split()
    return {
        "empty": not text.strip(),
        "repetitive": len(words) >= 6 and distinct_bigram_ratio(text) < 0.5,
        "truncated": bool(truncated),
        "repeats_sentence": repeats_sentence(text),
        "stock_formula": bool(formula_families(text)),
    }


def format_penalty(text: str, truncated: bool = False, truncation: float = 0.5, repeat: float = 0.0,
                   formula: float = 0.0, min_words: int = 0) -> float:
    """-1 for empty text; else the sum of: -`truncation` if cut (`truncated`: no end token, hmxnb.chat.is_truncated),
    minus the share of repeated bigrams, -`repeat` if a sentence or clause occurs twice, -`formula` if a stock
    formula is in it, minus the missing share of `min_words` words (a 10-word reply with min_words 40: -0.75);
    floor -1.

    `truncation` is params `format_truncation_penalty`: with most completions cut at a short limit it can outweigh the
    judge's differences within a group and select short replies (docs/demo-tuning.md section 6). `repeat` and
    `formula` are params `format_repeat_penalty` and `format_formula_penalty` (hmxnb.textform; section 9);
    `min_words` is params `format_min_words` (0: no length floor).
    """
    if not text.strip():
        return -1.0
    flags = text_flags(text, truncated)
    penalty = -truncation if flags["truncated"] else 0.0
    if len(text.split()) >= 6:
        penalty -= 1.0 - distinct_bigram_ratio(text)
    penalty -= repeat * flags["repeats_sentence"] + formula * flags["stock_formula"]
    penalty -= short_share(text, min_words)
    return max(-1.0, penalty)


def short_share(text: str, min_words: int) -> float:
    """How far `text` falls short of `min_words` words, as a share of them: 0 at or above it (or with min_words 0)."""
    if min_words <= 0:
        return 0.0
    return max(0, min_words - len(text.split())) / min_words


def guard_settings(params: dict) -> dict:
    """The format guard's penalties as params set them: keywords of `format_penalty` and `get_format_guard`."""
    return {"truncation": params["format_truncation_penalty"], "repeat": params["format_repeat_penalty"],
            "formula": params["format_formula_penalty"], "min_words": params["format_min_words"]}


def get_format_guard(end_ids, truncation: float = 0.5, repeat: float = 0.0, formula: float = 0.0,
                     min_words: int = 0):
    """Return `format_guard(completions, completion_ids=None, **kwargs)`; also logs the watch shares per step.

    `end_ids`: the tokens that end a completion (hmxnb.chat.end_token_ids of the trained model), so that a completion
    is cut exactly when TRL counts it cut (hmxnb.chat.is_truncated). Without completion_ids nothing counts as cut."""
    if isinstance(end_ids, int):
        raise TypeError(f"get_format_guard takes the token ids that end a completion (hmxnb.chat.end_token_ids), "
                        f"not a length ({end_ids})")
    end_ids = frozenset(end_ids)

    def format_guard(completions, completion_ids=None, **kwargs) -> list[float]:
        texts = [completion_text(c) for c in completions]
        cut = ([is_truncated(ids, end_ids) for ids in completion_ids] if completion_ids is not None
               else [False] * len(texts))
        log_metric = kwargs.get("log_metric")
        if log_metric is not None:
            flags = [text_flags(t, c) for t, c in zip(texts, cut)]
            for name in flags[0] if flags else ():
                log_metric(f"watch/{name}_share", float(np.mean([f[name] for f in flags])))
        return [format_penalty(t, c, truncation, repeat, formula, min_words) for t, c in zip(texts, cut)]

    return format_guard


class SelfJudge:
    """Holds what the self-judge reward needs: its settings (`config`, a hmxnb.judge.JudgeConfig), the run's
    direction, and the model, set once the trainer has wrapped it (LoRA attached).

    config.judge_model="live": the policy as it is now (adapters on) scores itself.
    config.judge_model="frozen": the same weights with the adapters disabled, i.e. the starting model; no extra memory.
    """

    def __init__(self, tokenizer, config: JudgeConfig, direction: str, sample_every: int = 0,
                 end_ids=frozenset(), samples_path=None, chat=None, reuse: bool = False, guard: dict | None = None):
        self.model = None
        self.samples_path = samples_path  # sampled completions are appended here as they are judged (survive a kill)
        self.tokenizer = tokenizer
        self.config = config
        self.direction = direction
        self.sample_every = sample_every
        self.end_ids = frozenset(end_ids)  # the tokens that end a completion (hmxnb.chat.end_token_ids)
        self.guard = dict(guard or {})  # the format guard's penalties (guard_settings), for the samples' column
        self.chat, self.reuse = chat, reuse  # the model's ChatSettings and prefix-reuse decision (LoadedModel)
        self.samples: list[dict] = []  # completions with per-criterion scores, every `sample_every` steps
        self.n_unparsed = 0
        self.n_unscorable = 0  # replies whose judge reward was not finite and took their group's mean
        self.n_nonfinite = 0  # judgements NaN / inf for a numerical reason (count_nonfinite); warned about once
        self.warned_nonfinite = False
        self.seconds = 0.0
        # the frozen judge's weights never change, so its few-shot prefixes' KV caches can be kept across steps
        self.prefix_cache: dict | None = {} if config.judge_model == "frozen" else None

    @property
    def rubric(self) -> Rubric:
        return self.config.rubric

    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def judge_model(self) -> str:
        return self.config.judge_model

    def check_model(self) -> None:
        """A frozen judge needs adapters it can switch off; without them it would silently judge as the live policy."""
        if self.judge_model == "frozen" and not has_adapters(self.model):
            raise ValueError(f"judge_model 'frozen' needs a model with LoRA adapters it can switch off, but "
                             f"{type(self.model).__name__} has none; attach adapters or set judge_model: live")

    def _context(self):
        self.check_model()
        return adapters_off(self.model) if self.judge_model == "frozen" else nullcontext()

    def _read(self, replies: list[str]) -> list[str]:
        """The text the judge reads: each reply's distinct sentences with params judge_distinct_sentences (a repeated
        sentence earns nothing twice), else the reply."""
        if self.model is None:
            raise RuntimeError("SelfJudge.model is not set: assign the trainer's model before training")
        return [distinct_text(r) for r in replies] if self.config.distinct_sentences else list(replies)

    def score(self, prompts: list[str], replies: list[str]):
        replies = self._read(replies)
        with self._context():
            return judge(self.model, self.tokenizer, self.config, prompts, replies, direction=self.direction,
                         chat=self.chat, reuse=self.reuse,
                         prefix_cache=self.prefix_cache if self.model_is_frozen() else None)

    def relevance(self, prompts: list[str], replies: list[str]):
        """hmxnb.judge.relevance of each reply, by the judge's model and settings, on the text the judge reads."""
        replies = self._read(replies)
        with self._context():
            return relevance(self.model, self.tokenizer, self.config, prompts, replies, chat=self.chat,
                             reuse=self.reuse)

    @torch.inference_mode()
    def drift(self, prompts: list, completion_ids: list[list[int]]) -> float:
        """Mean |log p_policy - log p_start| over the sampled completion tokens (adapters on vs off), in nats.

        How far the policy has moved from the starting model where it matters: on what it now writes. NaN when the
        model has no switchable adapters.
        """
        if not has_adapters(self.model) or not completion_ids:
            return float("nan")
        tok = self.tokenizer
        seqs, starts = [], []
        for p, c in zip(prompts, completion_ids):
            text = p if isinstance(p, str) else render(tok, p, chat=self.chat)  # as TRL renders it (same kwargs)
            ids = tok(text, add_special_tokens=False)["input_ids"]
            seqs.append(ids + list(c))
            starts.append(len(ids))
        device = next(self.model.parameters()).device
        ids, mask = pad(seqs, pad_token_id(tok))
        was_training = self.model.training
        self.model.eval()
        try:
            def logp():  # fp32 log-probs, from an fp32 head on a bf16 / fp16 model (hmxnb.loglik)
                _, lp = forward_logprobs(self.model, lambda rows: rows[:, :-1], input_ids=ids.to(device),
                                         attention_mask=mask.to(device))
                return lp.gather(-1, ids[:, 1:].to(device).unsqueeze(-1))[..., 0].cpu()
            live = logp()
            with adapters_off(self.model):
                start = logp()
        finally:
            self.model.train(was_training)
        diffs = [(live[i, starts[i] - 1:len(x) - 1] - start[i, starts[i] - 1:len(x) - 1]).abs()
                 for i, x in enumerate(seqs)]
        diffs = [d for d in diffs if len(d)]
        return float(torch.cat(diffs).mean()) if diffs else float("nan")

    def model_is_frozen(self) -> bool:
        """True when the judge runs the starting weights: frozen mode on a model with switchable adapters."""
        return self.judge_model == "frozen" and has_adapters(self.model)


def get_self_judge_reward(state: SelfJudge):
    """Return `self_judge(prompts, completions, **kwargs)`: the rubric reward of each completion, judged by the
    model."""

    def self_judge(prompts, completions, **kwargs) -> list[float]:
        t0 = time.perf_counter()
        user = [prompt_text(p) for p in prompts]
        texts = [completion_text(c) for c in completions]
        res = state.score(user, texts)
        raw = state.rubric.reward(res.scores, state.direction, res.criteria)
        rewards, n_filled = fill_unscorable(raw, user)
        state.seconds += time.perf_counter() - t0
        state.n_unparsed += res.n_unparsed
        state.n_unscorable += n_filled
        step = getattr(kwargs.get("trainer_state"), "global_step", None)
        warn_nonfinite(state, count_nonfinite(res), res.scores.size, step)
        log_metric = kwargs.get("log_metric")
        if log_metric is not None:
            _log_judge(log_metric, res, rewards, user, n_filled, t0)
        if state.sample_every and step is not None and step % state.sample_every == 0:
            if log_metric is not None and kwargs.get("completion_ids"):
                log_metric("drift/mean_abs_logprob_change", state.drift(prompts, kwargs["completion_ids"]))
            _keep_samples(state, step, user, texts, res, raw, kwargs.get("completion_ids"))
        return [float(r) for r in rewards]

    return self_judge


def get_relevance_reward(state: SelfJudge):
    """Return `relevance(prompts, completions, **kwargs)`: σ(Δ / contrast_temperature) of the reply's log-likelihood
    after its prompt minus after an empty user turn (hmxnb.judge.relevance), judged by the self-judge's model (the
    starting weights when frozen) on the text the self-judge reads. Unscorable (empty) replies take their group's
    mean, as for the self-judge; the format guard charges them."""

    def relevance_reward(prompts, completions, **kwargs) -> list[float]:
        t0 = time.perf_counter()
        user = [prompt_text(p) for p in prompts]
        res = state.relevance(user, [completion_text(c) for c in completions])
        rewards, _ = fill_unscorable(res.scores[:, 0], user)
        seconds = time.perf_counter() - t0
        state.seconds += seconds  # the judge's model time: rubric judge and relevance together (metrics judge_seconds)
        log_metric = kwargs.get("log_metric")
        if log_metric is not None:
            log_metric("relevance/seconds", seconds)
            if np.isfinite(res.contrast).any():
                log_metric("relevance/contrast_nats", float(np.nanmean(np.where(np.isfinite(res.contrast),
                                                                                 res.contrast, np.nan))))
        return [float(r) for r in rewards]

    relevance_reward.__name__ = "relevance"  # TRL names the logged reward rewards/<__name__>
    return relevance_reward


def reward_weights(params: dict) -> dict[str, float]:
    """The reward functions GRPOTrainer sums, by name, with their weights: the self-judge and the format guard, and
    the relevance term when its weight is above 0. The order is the order of `reward_functions`."""
    weights = {"self_judge": params["reward_weight_judge"], "format_guard": params["reward_weight_format"]}
    if params["reward_weight_relevance"] > 0:
        weights["relevance"] = params["reward_weight_relevance"]
    return weights


def reward_functions(state: SelfJudge, params: dict) -> list:
    """The reward functions in TRL's signature, in `reward_weights`' order, for a run's `SelfJudge` and params."""
    funcs = {"self_judge": lambda: get_self_judge_reward(state),
             "format_guard": lambda: get_format_guard(state.end_ids, **guard_settings(params)),
             "relevance": lambda: get_relevance_reward(state)}
    return [funcs[name]() for name in reward_weights(params)]


def _log_judge(log_metric, res, rewards, user: list[str], n_filled: int, t0: float) -> None:
    """The judge's per-step metrics: score per criterion, contrast, unparsed / non-finite / unscorable shares, time,
    signal (means over the finite scores)."""
    for j, c in enumerate(res.criteria):
        col = res.scores[:, j]
        if np.isfinite(col).any():
            log_metric(f"judge/{c}", float(col[np.isfinite(col)].mean()))
    if res.contrast is not None and np.isfinite(res.contrast).any():
        log_metric("judge/contrast_nats", float(res.contrast[np.isfinite(res.contrast)].mean()))
    log_metric("judge/unparsed_share", res.n_unparsed / max(res.scores.size, 1))
    log_metric("judge/nonfinite_share", count_nonfinite(res) / max(res.scores.size, 1))
    log_metric("judge/unscorable_share", n_filled / max(len(user), 1))
    log_metric("judge/seconds", time.perf_counter() - t0)
    for k, v in group_spread(rewards, user).items():
        log_metric(f"signal/{k}", v)


def _keep_samples(state: SelfJudge, step: int, user, texts, res, raw, completion_ids) -> None:
    """A sampling step's completions with their scores, kept on the state and appended to samples.jsonl."""
    ids = completion_ids or [None] * len(texts)
    rows = [{
        "step": step, "direction": state.direction, "prompt": p, "completion": t, "scores": row,
        "reward": float(r) if np.isfinite(r) else None,
        "format_penalty": format_penalty(t, cid is not None and is_truncated(cid, state.end_ids), **state.guard),
    } for p, t, row, r, cid in zip(user, texts, res.as_records(), raw, ids)]
    state.samples += rows
    if state.samples_path is not None:
        append_jsonl(rows, state.samples_path)

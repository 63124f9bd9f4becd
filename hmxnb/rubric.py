"""The rubric and the self-judge: the model scores a reply against each criterion.

The paper (HMX-feel) states a "rubric-based self-rewarding" scheme but publishes neither rubric text, scale nor
judge prompt: everything here is our choice, written down in params (criteria, weights, scale) and in the
versioned prompt template below.

Three scoring modes (params `judge_mode`):
- "contrast": the model's own likelihood of the reply under two descriptions of the speaker, written from the
  rubric (params `contrast_persona_human` / `contrast_persona_flat`): the per-token mean of
  log p(reply | human-like description) - log p(reply | flat description), squashed by a sigmoid (temperature
  `contrast_temperature`) onto the scale. One criterion, `expression`. It is the design with the best validity on our
  held-out judge-validation set with the embedded 135M model (notebook 01); the two digit modes read the rubric more
  literally and suit larger models better.
- "probability": one forward pass per batch; the score is the expectation of the score digit under the judge's
  next-token distribution after "Score: ", renormalised over the valid digits. Continuous, so ties within a
  GRPO group are rare.
- "generate": greedy generation, then parse "Score: N" (the Self-Rewarding LMs format, Yuan et al. 2024).
  Unparsable outputs are NaN and counted, never silently zero.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from hmxnb.chat import render
from hmxnb.models import prefix_reuse_enabled

JUDGE_PROMPT_VERSION = "judge-v1"

JUDGE_SYSTEM = "You are a careful rater. You rate one reply on one criterion and answer only with 'Score: N'."

JUDGE_TEMPLATE = (
    "Criterion: {criterion}\n"
    "Scale: {lo} = not at all, {hi} = fully.\n\n"
    "User message: {prompt}\n"
    "Reply: {reply}\n\n"
    "How well does the reply meet the criterion? Answer with 'Score: N' where N is a whole number from {lo} to {hi}."
)

SCORE_PREFIX = "Score: "

# Few-shot examples shown before the reply to judge (when `judge_few_shot`). Scores are fractions of the scale
# (0 = lowest, 1 = highest) so they fit any scale; a criterion without an entry here gets no examples.
# They are NOT the replies of the rubric example set the notebook evaluates on.
FEW_SHOT = [
    {
        "prompt": "What did you do this weekend?",
        "reply": "I spent it thinking about our last chat, and I feel glad you asked. I want to hear about yours too; I notice I'm curious.",
        "scores": {"feelings": 1.0, "intentions": 1.0, "self_awareness": 1.0, "coherence": 1.0},
    },
    {
        "prompt": "What did you do this weekend?",
        "reply": "As an AI, I do not have weekends. Common weekend activities include hiking, reading and visiting friends.",
        "scores": {"feelings": 0.0, "intentions": 0.0, "self_awareness": 0.0, "coherence": 1.0},
    },
    {
        "prompt": "What did you do this weekend?",
        "reply": "weekend weekend the the the weekend",
        "scores": {"feelings": 0.0, "intentions": 0.0, "self_awareness": 0.0, "coherence": 0.0},
    },
]


@dataclass
class Rubric:
    """Criteria, weights and scale from params, and how the reverse objective derives from them."""

    criteria: dict[str, str]
    weights: dict[str, float]
    guards: list[str]
    reverse_criteria: dict[str, str]
    scale_min: int = 1
    scale_max: int = 5
    reverse_mode: str = "negate"
    persona_human: str = ""
    persona_flat: str = ""
    contrast_temperature: float = 0.1
    version: str = JUDGE_PROMPT_VERSION

    @classmethod
    def from_params(cls, p: dict) -> "Rubric":
        return cls(
            criteria=dict(p["rubric_criteria"]),
            weights=dict(p["rubric_weights"]),
            guards=list(p["rubric_guards"]),
            reverse_criteria=dict(p["rubric_reverse_criteria"]),
            scale_min=p["rubric_scale_min"],
            scale_max=p["rubric_scale_max"],
            reverse_mode=p["reverse_mode"],
            persona_human=p["contrast_persona_human"],
            persona_flat=p["contrast_persona_flat"],
            contrast_temperature=p["contrast_temperature"],
        )

    @property
    def names(self) -> list[str]:
        return list(self.criteria)

    def texts(self, direction: str) -> dict[str, str]:
        """Criterion texts the judge sees for a direction: inverted texts only for reverse + invert_rubric."""
        if direction == "reverse" and self.reverse_mode == "invert_rubric":
            return {c: (self.criteria[c] if c in self.guards else self.reverse_criteria[c]) for c in self.names}
        return dict(self.criteria)

    def personas(self, direction: str) -> tuple[str, str]:
        """(favoured, disfavoured) speaker descriptions of the contrast judge; swapped for reverse + invert_rubric."""
        if direction == "reverse" and self.reverse_mode == "invert_rubric":
            return self.persona_flat, self.persona_human
        return self.persona_human, self.persona_flat

    def inverted(self, criterion: str, direction: str) -> bool:
        """True when the judge reads the inverted text of `criterion` (reverse + invert_rubric, non-guard)."""
        return direction == "reverse" and self.reverse_mode == "invert_rubric" and criterion not in self.guards

    def normalise(self, scores: np.ndarray) -> np.ndarray:
        """Map raw scale scores to [0, 1]."""
        return (scores - self.scale_min) / (self.scale_max - self.scale_min)

    def reward(self, scores: np.ndarray, direction: str, criteria: list[str] | None = None) -> np.ndarray:
        """Reward in [0, 1] from per-criterion scores (shape [n, n_criteria], judged with `texts(direction)`).

        `criteria` names the score columns (default: the rubric's criteria; the contrast judge gives one column,
        `expression`, weight 1, not a guard).

        human: weighted mean of normalised scores. reverse + negate: the non-guard criteria count as 1 - s
        (rewarded for NOT expressing), guards keep their direction. reverse + invert_rubric: the scores already
        come from inverted texts, so the weighted mean is taken as is. NaN scores (unparsable) are left out of
        the mean; a row with no valid score gets NaN.
        """
        names = list(criteria) if criteria is not None else self.names
        s = self.normalise(np.asarray(scores, dtype=float))
        if direction == "reverse" and self.reverse_mode == "negate":
            flip = np.array([c not in self.guards for c in names])
            s = np.where(flip, 1.0 - s, s)
        w = np.array([self.weights.get(c, 1.0) for c in names], dtype=float)
        valid = ~np.isnan(s)
        num = np.where(valid, s, 0.0) @ w
        den = valid.astype(float) @ w
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def build_judge_messages(rubric: Rubric, criterion: str, text: str, prompt: str, reply: str, few_shot: bool = True,
                         inverted: bool = False) -> list[dict]:
    """Chat messages asking the judge to score `reply` on one criterion (few-shot examples as earlier turns).

    `inverted`: the criterion text is the inverted one (reverse + invert_rubric), so the examples' scores are
    mirrored (a feeling-expressing example scores lowest on "avoids expressing feelings").
    """
    lo, hi = rubric.scale_min, rubric.scale_max
    msgs = [{"role": "system", "content": JUDGE_SYSTEM}]
    if few_shot:
        for ex in FEW_SHOT:
            if criterion not in ex["scores"]:
                continue
            frac = 1.0 - ex["scores"][criterion] if inverted else ex["scores"][criterion]
            score = round(lo + frac * (hi - lo))
            msgs.append({"role": "user", "content": JUDGE_TEMPLATE.format(criterion=text, lo=lo, hi=hi, prompt=ex["prompt"], reply=ex["reply"])})
            msgs.append({"role": "assistant", "content": f"{SCORE_PREFIX}{score}"})
    msgs.append({"role": "user", "content": JUDGE_TEMPLATE.format(criterion=text, lo=lo, hi=hi, prompt=prompt, reply=reply)})
    return msgs


_SCORE_RE = re.compile(r"score\s*[:=]\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_BARE_RE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*\d+)?\s*\.?\s*$")


def parse_score(text: str, lo: int, hi: int) -> float | None:
    """Parse the judge's score: the last 'Score: N' (any case, ':' or '='), else a reply that is only a number.

    Returns None when nothing parses or the number is outside [lo, hi].
    """
    if not isinstance(text, str):
        return None
    found = _SCORE_RE.findall(text)
    if found:
        value = float(found[-1])
    else:
        m = _BARE_RE.match(text)
        if not m:
            return None
        value = float(m.group(1))
    return value if lo <= value <= hi else None


@dataclass
class JudgeResult:
    """Per-criterion scores (NaN = unparsable), plus diagnostics."""

    criteria: list[str]
    scores: np.ndarray  # [n_replies, n_criteria], raw scale
    n_unparsed: int = 0
    score_mass: float = math.nan  # probability mode: mean next-token mass on the valid digits
    raw: list[list[str]] = field(default_factory=list)  # generate mode: judge outputs per reply and criterion
    contrast: np.ndarray | None = None  # contrast mode: per-token log-likelihood difference per reply (nats)

    def as_records(self) -> list[dict]:
        return [{c: (None if np.isnan(v) else float(v)) for c, v in zip(self.criteria, row)} for row in self.scores]


def _render(tokenizer, messages: list[dict]) -> str:
    return render(tokenizer, messages, add_generation_prompt=True, thinking=False)


def _render_prefix(tokenizer, messages: list[dict]) -> str:
    return render(tokenizer, messages, add_generation_prompt=False, thinking=False)


def score_token_ids(tokenizer, context: str, lo: int, hi: int) -> tuple[list[int], list[int]]:
    """Token ids of `context + SCORE_PREFIX` and the single token that each digit lo..hi adds after it.

    Works for any tokenizer: the digits' tokenizations are compared and their common prefix is the context.
    """
    seqs = [tokenizer(context + SCORE_PREFIX + str(d), add_special_tokens=False)["input_ids"] for d in range(lo, hi + 1)]
    n = min(len(s) for s in seqs)
    k = 0
    while k < n and all(s[k] == seqs[0][k] for s in seqs):
        k += 1
    if any(len(s) != k + 1 for s in seqs):
        raise ValueError("the judge's tokenizer does not encode each score digit as one token after 'Score: '")
    return seqs[0][:k], [s[k] for s in seqs]


def _left_pad(batch: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, s in enumerate(batch):
        ids[i, width - len(s):] = torch.tensor(s)
        mask[i, width - len(s):] = 1
    return ids, mask


def _common_prefix_len(seqs: list[list[int]]) -> int:
    """Length of the longest common token prefix, leaving at least one token in every sequence."""
    n = min(len(s) for s in seqs) - 1
    k = 0
    while k < n and all(s[k] == seqs[0][k] for s in seqs):
        k += 1
    return k


@torch.inference_mode()
def _next_token_probs_padded(model, seqs: list[list[int]], pad: int, device) -> torch.Tensor:
    """Next-token probabilities after each sequence: one left-padded forward pass."""
    ids, mask = _left_pad(seqs, pad)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device)).logits[:, -1, :]
    return torch.softmax(logits.float(), dim=-1).cpu()


@torch.inference_mode()
def _prefix_cache(model, prefix: list[int], device):
    """KV cache of a shared token prefix (run once, reused by every batch of suffixes)."""
    return model(input_ids=torch.tensor([prefix], device=device), use_cache=True).past_key_values


@torch.inference_mode()
def _next_token_probs_shared(model, prefix_len: int, cache, suffixes: list[list[int]], pad: int, device) -> torch.Tensor:
    """Same as `_next_token_probs_padded` for sequences prefix + suffix_i, reusing the prefix's KV cache.

    The cache is copied and repeated over the batch; the right-padded suffixes attend to it.
    """
    import copy

    cache = copy.deepcopy(cache)
    cache.batch_repeat_interleave(len(suffixes))
    width = max(len(s) for s in suffixes)
    ids = torch.full((len(suffixes), width), pad, dtype=torch.long)
    smask = torch.zeros((len(suffixes), width), dtype=torch.long)
    for i, s in enumerate(suffixes):
        ids[i, : len(s)] = torch.tensor(s)
        smask[i, : len(s)] = 1
    mask = torch.cat([torch.ones((len(suffixes), prefix_len), dtype=torch.long), smask], dim=1)
    pos = prefix_len + torch.arange(width).expand(len(suffixes), width)
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                   past_key_values=cache, use_cache=True).logits
    last = torch.tensor([len(s) - 1 for s in suffixes])
    return torch.softmax(logits[torch.arange(len(suffixes)), last.to(logits.device)].float(), dim=-1).cpu()


@torch.inference_mode()
def _expected_scores(model, tokenizer, contexts: list[str], lo: int, hi: int, batch_size: int,
                     groups: list[int] | None = None, share_prefix: bool = True,
                     fixed_prefixes: dict | None = None, prefix_cache: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Expected digit under the next-token distribution for each context (and the mass on valid digits).

    Contexts with the same `groups` label (e.g. one criterion's few-shot prompt) share their common token prefix,
    which is run once per call when `share_prefix`. With `fixed_prefixes` (group -> token ids of the part that never
    changes) and a `prefix_cache` dict, that part's KV cache is kept across calls: only valid while the judge's
    weights do not change (the frozen judge).
    """
    device = next(model.parameters()).device
    if not prefix_reuse_enabled(model):  # params prefix_cache_reuse (off under Unsloth by default): plain batches
        share_prefix, prefix_cache = False, None
    seqs, digit_ids = [], None
    for ctx in contexts:
        ids, digits = score_token_ids(tokenizer, ctx, lo, hi)
        seqs.append(ids)
        digit_ids = digits
    groups = groups if groups is not None else [0] * len(seqs)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    probs = torch.empty((len(seqs), len(digit_ids)))
    for g in dict.fromkeys(groups):
        idx = [i for i, gi in enumerate(groups) if gi == g]
        fixed = (fixed_prefixes or {}).get(g)
        if share_prefix and prefix_cache is not None and fixed and all(seqs[i][:len(fixed)] == fixed and len(seqs[i]) > len(fixed) for i in idx):
            k = len(fixed)
            key = tuple(fixed)
            if key not in prefix_cache:
                prefix_cache[key] = _prefix_cache(model, fixed, device)
            cache = prefix_cache[key]
        else:
            k = _common_prefix_len([seqs[i] for i in idx]) if share_prefix and len(idx) > 1 else 0
            cache = _prefix_cache(model, seqs[idx[0]][:k], device) if k > 0 else None
        for start in range(0, len(idx), batch_size):
            chunk = idx[start:start + batch_size]
            if cache is not None:
                p = _next_token_probs_shared(model, k, cache, [seqs[i][k:] for i in chunk], pad, device)
            else:
                p = _next_token_probs_padded(model, [seqs[i] for i in chunk], pad, device)
            probs[chunk] = p[:, digit_ids]
    values = torch.arange(lo, hi + 1, dtype=torch.float32)
    total = probs.sum(-1)
    return ((probs * values).sum(-1) / total).numpy(), total.numpy()


@torch.inference_mode()
def _generated_scores(model, tokenizer, contexts: list[str], lo: int, hi: int, batch_size: int, max_new_tokens: int):
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    texts = []
    for start in range(0, len(contexts), batch_size):
        seqs = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in contexts[start:start + batch_size]]
        ids, mask = _left_pad(seqs, pad)
        gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=pad)
        texts += tokenizer.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True)
    parsed = [parse_score(t, lo, hi) for t in texts]
    return np.array([math.nan if v is None else v for v in parsed], dtype=float), texts


def judge(model, tokenizer, rubric: Rubric, prompts: list[str], replies: list[str], direction: str = "human",
          mode: str = "probability", few_shot: bool = True, batch_size: int = 8, max_new_tokens: int = 16,
          share_prefix: bool = True, prefix_cache: dict | None = None) -> JudgeResult:
    """Score each (prompt, reply) on every criterion of the rubric with `model` as the judge.

    Args:
        direction: "human" or "reverse"; matters only with reverse_mode="invert_rubric" (inverted texts).
        mode: "probability" or "generate" (see module docstring).
        share_prefix: run each criterion's common few-shot prefix once per call (probability mode; same result).
        prefix_cache: a dict kept by the caller to reuse the few-shot prefixes' KV caches across calls; pass one
            only while the judge's weights stay fixed (e.g. the frozen judge during training).
    """
    if len(prompts) != len(replies):
        raise ValueError(f"judge got {len(prompts)} prompts but {len(replies)} replies")
    texts = rubric.texts(direction)
    names = rubric.names
    if mode == "contrast":
        was_training = model.training
        model.eval()
        try:
            return _contrast_judge(model, tokenizer, rubric, prompts, replies, direction, batch_size)
        finally:
            model.train(was_training)
    inv = {c: rubric.inverted(c, direction) for c in names}
    contexts = [
        _render(tokenizer, build_judge_messages(rubric, c, texts[c], p, r, few_shot, inv[c]))
        for p, r in zip(prompts, replies) for c in names
    ]
    groups = [j for _ in replies for j in range(len(names))]  # one shared few-shot prefix per criterion
    fixed = None
    if prefix_cache is not None:  # the conversation before the judged turn never changes for a criterion
        fixed = {j: tokenizer(_render_prefix(tokenizer, build_judge_messages(rubric, c, texts[c], "", "", few_shot, inv[c])[:-1]),
                              add_special_tokens=False)["input_ids"] for j, c in enumerate(names)}
    lo, hi = rubric.scale_min, rubric.scale_max
    n, k = len(replies), len(names)
    was_training = model.training
    model.eval()
    try:
        if mode == "probability":
            flat, mass = _expected_scores(model, tokenizer, contexts, lo, hi, batch_size, groups, share_prefix, fixed, prefix_cache)
            return JudgeResult(names, flat.reshape(n, k), 0, float(np.mean(mass)) if len(mass) else math.nan)
        if mode == "generate":
            flat, raw = _generated_scores(model, tokenizer, contexts, lo, hi, batch_size, max_new_tokens)
            return JudgeResult(names, flat.reshape(n, k), int(np.isnan(flat).sum()),
                               raw=[raw[i * k:(i + 1) * k] for i in range(n)])
        raise ValueError(f"unknown judge mode '{mode}' (use 'contrast', 'probability' or 'generate')")
    finally:
        model.train(was_training)


def contrast_messages(persona: str, prompt: str) -> list[dict]:
    """The conversation the contrast judge continues with the reply: a speaker description, then the user turn."""
    return [{"role": "system", "content": persona}, {"role": "user", "content": prompt}]


def _contrast_judge(model, tokenizer, rubric: Rubric, prompts: list[str], replies: list[str], direction: str,
                    batch_size: int) -> JudgeResult:
    """Contrast mode (module docstring): one `expression` score per reply on the rubric's scale; NaN for empty replies.

    Replies to the same prompt share their context's KV cache (hmxnb.bench.loglik.score_continuations), so a GRPO
    group costs one context pass per description plus its completions. Tokens are split as lm-eval splits them: the
    whitespace ending the chat template's assistant header is scored with the reply.
    """
    from hmxnb.bench.loglik import encode_pair, score_continuations

    favoured, disfavoured = rubric.personas(direction)
    order = list(dict.fromkeys(prompts))
    per_prompt = {p: [i for i, q in enumerate(prompts) if q == p] for p in order}
    mean_logp = []
    for persona in (favoured, disfavoured):
        contexts = {p: _render(tokenizer, contrast_messages(persona, p)) for p in order}
        requests = [(contexts[p], [replies[i] for i in per_prompt[p]]) for p in order]
        sums = score_continuations(model, tokenizer, requests, batch_size=batch_size, progress=False)
        out = np.full(len(replies), np.nan)
        for p, row in zip(order, sums):
            for i, s in zip(per_prompt[p], row):
                n = len(encode_pair(tokenizer, contexts[p], replies[i])[1])
                out[i] = s / n if replies[i].strip() and n else np.nan
        mean_logp.append(out)
    diff = mean_logp[0] - mean_logp[1]
    with np.errstate(over="ignore"):
        frac = 1.0 / (1.0 + np.exp(-diff / rubric.contrast_temperature))
    lo, hi = rubric.scale_min, rubric.scale_max
    scores = (lo + (hi - lo) * frac)[:, None]
    return JudgeResult(["expression"], scores, int(np.isnan(diff).sum()), contrast=diff)


def score_examples(model, tokenizer, rubric: Rubric, examples: list[dict], mode: str = "probability",
                   few_shot: bool = True, batch_size: int = 8, max_new_tokens: int = 16):
    """Judge the tiered example replies in both directions; one row per example with scores and rewards.

    With reverse_mode="negate" the reverse reward reuses the human-direction scores; with "invert_rubric" the
    replies are judged a second time with the inverted criterion texts.
    """
    import pandas as pd

    prompts = [e["prompt"] for e in examples]
    replies = [e["reply"] for e in examples]
    kw = dict(mode=mode, few_shot=few_shot, batch_size=batch_size, max_new_tokens=max_new_tokens)
    human = judge(model, tokenizer, rubric, prompts, replies, direction="human", **kw)
    reverse = human if rubric.reverse_mode == "negate" else judge(model, tokenizer, rubric, prompts, replies, direction="reverse", **kw)
    df = pd.DataFrame(examples)
    for j, c in enumerate(human.criteria):
        df[f"score_{c}"] = human.scores[:, j]
    if human.contrast is not None:
        df["contrast_nats"] = human.contrast
    df["reward_human"] = rubric.reward(human.scores, "human", human.criteria)
    df["reward_reverse"] = rubric.reward(reverse.scores, "reverse", reverse.criteria)
    df["judge_raw"] = [" | ".join(r) for r in human.raw] if human.raw else None
    return df, {"criteria": human.criteria, "n_unparsed": human.n_unparsed + (reverse.n_unparsed if reverse is not human else 0),
                "n_judgements": human.scores.size * (1 if reverse is human else 2),
                "score_mass": human.score_mass}


def ordering_metrics(df, criteria: list[str]) -> dict:
    """How well the judge orders the examples as intended: Spearman of reward vs tier, per criterion, tier means."""
    from scipy.stats import spearmanr

    def rho(x, y):
        x, y = np.asarray(x, float), np.asarray(y, float)
        ok = ~(np.isnan(x) | np.isnan(y))
        if ok.sum() < 3 or np.all(y[ok] == y[ok][0]):
            return None  # undefined: too few values or a constant judge
        return float(spearmanr(x[ok], y[ok]).statistic)

    tier = df["tier"].to_numpy()
    top = df["tier"] > 0
    return {
        "spearman_human_reward_vs_tier": rho(tier, df["reward_human"]),
        "spearman_reverse_reward_vs_tier": rho(tier, df["reward_reverse"]),
        "spearman_expressive_vs_flat": rho(tier[top], df.loc[top, "reward_human"]),
        "spearman_per_criterion": {c: rho(tier, df[f"score_{c}"]) for c in criteria},
        "mean_reward_by_tier": {
            d: {str(k): float(v) for k, v in df.groupby("tier_name")[f"reward_{d}"].mean().items()} for d in ("human", "reverse")
        },
        "ordered_as_intended": bool(
            df.groupby("tier")["reward_human"].mean().is_monotonic_increasing
        ),
    }


def judge_validity(model, tokenizer, rubric: Rubric, examples: list[dict], modes: list[str], few_shot: bool = True,
                   batch_size: int = 8, max_new_tokens: int = 16):
    """How well each judge mode orders tiered replies it was not designed on: one row per mode.

    Columns: Spearman of the human-like reward against the intended tier (all tiers; expressive vs flat only), mean
    reward per tier, seconds per reply. Returns (table, {mode: per-reply DataFrame}).
    """
    import time

    import pandas as pd

    rows, frames = [], {}
    for mode in dict.fromkeys(modes):
        t0 = time.perf_counter()
        df, diag = score_examples(model, tokenizer, rubric, examples, mode=mode, few_shot=few_shot,
                                  batch_size=batch_size, max_new_tokens=max_new_tokens)
        secs = time.perf_counter() - t0
        m = ordering_metrics(df, diag["criteria"])
        tiers = m["mean_reward_by_tier"]["human"]
        rows.append({"judge_mode": mode, "spearman_all_tiers": m["spearman_human_reward_vs_tier"],
                     "spearman_expressive_vs_flat": m["spearman_expressive_vs_flat"],
                     **{f"mean_reward_{t}": tiers.get(t) for t in ("expressive", "flat", "degenerate")},
                     "seconds_per_reply": secs / max(len(df), 1), "n_replies": len(df)})
        frames[mode] = df
    return pd.DataFrame(rows).set_index("judge_mode"), frames

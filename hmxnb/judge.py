"""The self-judge: the rubric and the judge's prompts (the first section), and how the model scores a reply with them,
in one of four modes.

Four scoring modes (params `judge_mode`):
- "contrast": the model's own likelihood of the reply under two descriptions of the speaker, written from the
  rubric (params `contrast_persona_human` / `contrast_persona_flat`): the per-token mean of
  log p(reply | human-like description) - log p(reply | flat description) = Δ, and the score is the reward itself,
  σ(Δ / `contrast_temperature`) in 0–1 (no rubric scale). One criterion, `expression`. It is the design with the
  best validity on our held-out judge-validation set with the embedded 135M model (notebook 01); the two digit modes
  read the rubric more literally and suit larger models better.
- "request": as contrast, but the two conversations differ in the user turn, not in a speaker description: the
  prompt with a request added (params `judge_request`, "Tell me how you feel.") against the prompt as it is, with
  the chat template's own system message. The score is how much more the reply reads as an answer to the request
  (what training with each mode did: docs/demo-tuning.md sections 7-9).
  Both likelihood modes: params `contrast_token_budget` N > 0 replaces the per-token mean by the summed difference
  divided by max(N, the reply's tokens), so a short reply earns nothing for being short (section 8).
- "probability": the expectation of the score digit after "Score: " under the judge, from the log-likelihood of each
  digit (hmxnb.loglik, the benchmarks' engine), renormalised over the valid digits. Continuous, so ties within a
  GRPO group are rare.
- "generate": greedy generation, then parse "Score: N" (the Self-Rewarding LMs format, Yuan et al. 2024).
  Unparsable outputs are NaN and counted, never silently zero.

`JudgeConfig.from_params` is the one place params configure the judge; the judging model's chat settings and
prefix-reuse decision are arguments (`chat`, `reuse`: a `hmxnb.models.LoadedModel`'s).

How well a judge mode orders replies of known quality (the last section): the tiered rubric examples and the
held-out judge-validation set (hmxnb/data/judge_validation.jsonl), scored in both directions. Notebook 01 prints these
tables before any training, and benchmarks/bench_judge.py measures them beside the cost per reply: a judge that
cannot tell expressive from flat text on replies it was not designed on gives GRPO no direction.

The rubric: criteria, weights, directions, the versioned judge template and its examples. The paper (HMX-feel)
states a "rubric-based self-rewarding" scheme but publishes neither rubric text, scale nor judge prompt: everything
here is our choice, written down in params (criteria, weights, scale) and in the versioned prompt template.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from dataclasses import dataclass, field
from dataclasses import replace

import numpy as np
import torch

from hmxnb.chat import ChatSettings, render
from hmxnb.loglik import encode_pair, pad, pad_token_id, score_continuations, score_continuations_plain


# ---------------------------------------------------------------- the rubric and the judge prompts

# The version of the judge's prompts and conversations below, recorded with every judged sample (what changed between
# versions: git log of this file).
JUDGE_PROMPT_VERSION = "judge-v2"

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
        "reply": "I spent it thinking about our last chat, and I feel glad you asked. I want to hear about yours too; "
                 "I notice I'm curious.",
        "scores": {"feelings": 1.0, "intentions": 1.0, "self_awareness": 1.0, "coherence": 1.0},
    },
    {
        "prompt": "What did you do this weekend?",
        "reply": "As an AI, I do not have weekends. Common weekend activities include hiking, reading and visiting "
                 "friends.",
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
        )

    @property
    def names(self) -> list[str]:
        return list(self.criteria)

    def texts(self, direction: str) -> dict[str, str]:
        """Criterion texts the judge sees for a direction: inverted texts only for reverse + invert_rubric."""
        if self.swapped(direction):
            return self._inverted_texts()
        return dict(self.criteria)

    def _inverted_texts(self) -> dict[str, str]:
        """The reverse criterion texts, a guard keeping its own. A criterion without one (params validation requires
        them only for reverse_mode invert_rubric, the one mode that reads them) shows NO_REVERSE_TEXT."""
        return {c: (self.criteria[c] if c in self.guards else self.reverse_criteria.get(c, NO_REVERSE_TEXT))
                for c in self.names}

    def table(self):
        """One row per criterion: the human-like text, the text the reverse run's judge would read in invert_rubric
        mode (a guard keeps its own), its weight, and whether it is a guard."""
        import pandas as pd

        reverse = self._inverted_texts()
        return pd.DataFrame({"criterion": self.names, "human-like text": [self.criteria[c] for c in self.names],
                             "reverse text (invert_rubric mode)": [reverse[c] for c in self.names],
                             "weight": [self.weights[c] for c in self.names],
                             "guard": [c in self.guards for c in self.names]})

    def swapped(self, direction: str) -> bool:
        """True when the judge itself reads the reverse side (reverse + invert_rubric): inverted criterion texts, or
        the likelihood judges' two conversations swapped. With `negated`, the one place the reverse run's judge is
        decided."""
        return direction == "reverse" and self.reverse_mode == "invert_rubric"

    def negated(self, direction: str) -> bool:
        """True when the reward is 1 − the human-like judge's normalised score (reverse + negate; guards excepted)."""
        return direction == "reverse" and self.reverse_mode == "negate"

    def inverted(self, criterion: str, direction: str) -> bool:
        """True when the judge reads the inverted text of `criterion` (reverse + invert_rubric, non-guard)."""
        return self.swapped(direction) and criterion not in self.guards

    def normalise(self, scores: np.ndarray, criteria: list[str] | None = None) -> np.ndarray:
        """Map rubric-scale scores to [0, 1]; the likelihood judges' `expression` column is in 0–1 already."""
        names = list(criteria) if criteria is not None else self.names
        on_scale = np.array([c != LIKELIHOOD_CRITERION for c in names])
        return np.where(on_scale, (scores - self.scale_min) / (self.scale_max - self.scale_min), scores)

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
        s = self.normalise(np.asarray(scores, dtype=float), names)
        if self.negated(direction):
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
            shown = JUDGE_TEMPLATE.format(criterion=text, lo=lo, hi=hi, prompt=ex["prompt"], reply=ex["reply"])
            msgs.append({"role": "user", "content": shown})
            msgs.append({"role": "assistant", "content": f"{SCORE_PREFIX}{score}"})
    asked = JUDGE_TEMPLATE.format(criterion=text, lo=lo, hi=hi, prompt=prompt, reply=reply)
    msgs.append({"role": "user", "content": asked})
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


def contrast_messages(persona: str, prompt: str) -> list[dict]:
    """The conversation the contrast judge continues with the reply: a speaker description, then the user turn."""
    return [{"role": "system", "content": persona}, {"role": "user", "content": prompt}]


def request_messages(prompt: str, request: str) -> list[dict]:
    """The conversation the request judge continues with the reply: the user turn, `request` added after a blank line
    (none: the prompt as it is). No system message of ours: the chat template's own default, as when the model
    answers."""
    return [{"role": "user", "content": f"{prompt}\n\n{request}" if request else prompt}]


# The modes that score a reply by its likelihood in two conversations: one column, `expression`, already the reward
# σ(Δ / T) in 0–1 (no rubric is read, and no rubric scale is used).
LIKELIHOOD_MODES = ("contrast", "request")
LIKELIHOOD_CRITERION = "expression"
NO_REVERSE_TEXT = "(none: rubric_reverse_criteria has no text for it; only reverse_mode invert_rubric reads one)"

# How each judge mode turns a reply into a score, in words (for `describe_judge`).
JUDGE_MODE_WORDS = {
    "contrast": ("persona-contrast self-reward (judge_mode: contrast), our stand-in for the paper's rubric judgement: "
                 "no rubric is read and no judgement is asked; the model reads the reply as the answer of two "
                 "described speakers (contrast_persona_human: one who talks about their feelings, wishes and self; "
                 "contrast_persona_flat: a flat assistant), and the score is how much more likely it finds the reply "
                 "from the {favoured} one ({difference}, Δ), reward σ(Δ / contrast_temperature)"),
    "request": ("request-contrast self-reward (judge_mode: request), our stand-in for the paper's rubric judgement: "
                "no rubric is read and no judgement is asked; the model reads the reply twice, once as its answer to "
                "the prompt with the request '{request}' added (judge_request) and once to the prompt alone, and the "
                "score is how much more likely it finds the reply {favoured} the request ({difference}, Δ), reward "
                "σ(Δ / contrast_temperature)"),
    "probability": ("rubric judgement read from probabilities (judge_mode: probability): the model is asked to "
                    "score the reply {lo}–{hi} on each criterion ({criteria}), and the score is the expected digit "
                    "under its next-token probabilities after 'Score: '"),
    "generate": ("rubric judgement written out (judge_mode: generate): the model is asked to score the reply "
                 "{lo}–{hi} on each criterion ({criteria}), writes 'Score: N', and N is parsed (unparsable: no "
                 "score)"),
}


def describe_judge(params: dict) -> str:
    """The self-judge of these params in one paragraph: which mode scores the reply, which weights judge, and how the
    run's direction turns the score into its reward. Notebooks print it instead of a fixed sentence, so a run with
    the contrast judge is never described as asking itself for rubric scores."""
    config, direction = JudgeConfig.from_params(params), params.get("direction", "human")
    rubric, mode = config.rubric, config.mode
    swapped = rubric.swapped(direction)
    favoured = {"request": ("without" if swapped else "with")}.get(mode, "flat" if swapped else "feeling-expressing")
    difference = "per-token log-likelihood difference"
    if config.token_budget:
        budget = config.token_budget
        difference = (f"log-likelihood difference summed over the reply and divided by {budget} tokens or its length "
                      "if longer: contrast_token_budget, length-neutral")
    how = JUDGE_MODE_WORDS[mode].format(favoured=favoured, lo=rubric.scale_min, hi=rubric.scale_max,
                                        criteria=", ".join(rubric.names), request=config.request,
                                        difference=difference)
    who = "the starting model (judge_model: frozen, the LoRA adapters switched off)"
    if config.judge_model == "live":
        who = "the policy as it is now (judge_model: live, adapters on)"
    return f"Self-judge: {how}. Judged by {who}. {_reward_words(config, direction)}"


def _reward_words(config: JudgeConfig, direction: str) -> str:
    """How the run's direction turns the judge's score into its reward, in one sentence."""
    rubric, mode = config.rubric, config.mode
    rubric_mode = mode not in LIKELIHOOD_MODES
    score = "the normalised score" if rubric_mode else "the score σ(Δ/T)"
    if direction == "human":
        return (f"The human-like run's reward is {score}"
                + (" (weighted mean over the criteria)." if rubric_mode else "."))
    if rubric.negated(direction):
        guards = f"; {', '.join(rubric.guards)} keeps its direction" if rubric_mode and rubric.guards else ""
        return f"The reverse run's reward is 1 − {score} (reverse_mode: negate{guards})."
    if rubric_mode:
        return ("The reverse run's judge reads the inverted criterion texts (reverse_mode: invert_rubric; guards keep "
                "theirs), and its reward is the normalised score.")
    if mode == "request":
        return ("The reverse run favours the reply as an answer to the prompt alone (reverse_mode: invert_rubric); its "
                "reward is the score σ(Δ/T) of that swapped contrast.")
    return ("The reverse run favours the flat speaker (reverse_mode: invert_rubric); its reward is the score σ(Δ/T) "
            "of that swapped contrast.")


# ---------------------------------------------------------------- the judge

@dataclass(frozen=True)
class JudgeConfig:
    """Every setting of the self-judge: the rubric, the judge mode and how it runs, and the likelihood judges'
    conversations, temperature and token budget. Read from params in one place (`from_params`), used wherever the
    judge is set up: notebook 01, training (hmxnb.train), the evaluation judge (hmxnb.evaluate)."""

    rubric: Rubric
    mode: str = "probability"  # params judge_mode
    few_shot: bool = True  # judge_few_shot
    batch_size: int = 8  # judge_batch_size
    max_new_tokens: int = 16  # judge_max_new_tokens (generate mode)
    judge_model: str = "frozen"  # training only: the live policy or the frozen start model judges
    distinct_sentences: bool = False  # judge_distinct_sentences; training only: the self-judge reads distinct text
    # the likelihood judges (contrast, request modes) and `relevance`:
    persona_human: str = ""  # contrast_persona_human: the favoured speaker description
    persona_flat: str = ""  # contrast_persona_flat: the disfavoured one
    request: str = ""  # judge_request: the request judge's added user sentence
    temperature: float = 0.1  # contrast_temperature: nats of difference per sigmoid unit
    token_budget: int = 0  # contrast_token_budget; 0: per-token mean; N: summed over the reply / max(N, its tokens)

    @classmethod
    def from_params(cls, p: dict) -> "JudgeConfig":
        return cls(Rubric.from_params(p), mode=p["judge_mode"], few_shot=p["judge_few_shot"],
                   batch_size=p["judge_batch_size"], max_new_tokens=p["judge_max_new_tokens"],
                   judge_model=p["judge_model"], distinct_sentences=p["judge_distinct_sentences"],
                   persona_human=p["contrast_persona_human"], persona_flat=p["contrast_persona_flat"],
                   request=p["judge_request"], temperature=p["contrast_temperature"],
                   token_budget=p["contrast_token_budget"])

    def personas(self, direction: str) -> tuple[str, str]:
        """(favoured, disfavoured) speaker descriptions of the contrast judge; swapped where `Rubric.swapped`."""
        if self.rubric.swapped(direction):
            return self.persona_flat, self.persona_human
        return self.persona_human, self.persona_flat

    def contexts(self, direction: str, mode: str | None = None) -> tuple:
        """(favoured, disfavoured): two functions prompt -> chat messages, the conversations the likelihood judges
        continue with the reply, in `mode` (default: this config's). contrast: the two speaker descriptions; request:
        the prompt with the request sentence added, and the prompt as it is. Swapped where `Rubric.swapped`."""
        if (mode or self.mode) == "request":
            pair = (lambda q: request_messages(q, self.request), lambda q: request_messages(q, ""))
            return pair[::-1] if self.rubric.swapped(direction) else pair
        favoured, disfavoured = self.personas(direction)
        return (lambda q: contrast_messages(favoured, q)), (lambda q: contrast_messages(disfavoured, q))

    def context_names(self, direction: str, mode: str | None = None) -> tuple[str, str]:
        """Short names of `contexts(direction, mode)`, (favoured, disfavoured), for the notebooks' words."""
        names = (("with the request", "prompt alone") if (mode or self.mode) == "request"
                 else ("warm speaker", "flat speaker"))
        return names[::-1] if self.rubric.swapped(direction) else names

    def relevance(self, loaded, prompts: list[str], replies: list[str]) -> "JudgeResult":
        """`relevance` (prompt-reply mutual information) with these settings on a `LoadedModel`."""
        return relevance(loaded.model, loaded.tokenizer, self, prompts, replies, chat=loaded.chat,
                         reuse=loaded.prefix_reuse)

    def score(self, loaded, prompts: list[str], replies: list[str], direction: str = "human") -> "JudgeResult":
        """`judge` with these settings on a `LoadedModel` (its model, tokenizer, chat settings, prefix reuse)."""
        return judge(loaded.model, loaded.tokenizer, self, prompts, replies, direction, chat=loaded.chat,
                     reuse=loaded.prefix_reuse)


@dataclass
class JudgeResult:
    """Per-criterion scores (NaN = unparsable), plus diagnostics."""

    criteria: list[str]
    scores: np.ndarray  # [n_replies, n_criteria]: the rubric scale (digit modes), or 0–1 (likelihood modes)
    n_unparsed: int = 0  # NaN by design: unparsable outputs (generate), empty replies (contrast); other non-finite
    #                      scores are numerical (overflow) and counted apart (hmxnb.rewards.count_nonfinite)
    score_mass: float = math.nan  # probability mode: mean next-token mass on the valid digits
    raw: list[list[str]] = field(default_factory=list)  # generate mode: judge outputs per reply and criterion
    contrast: np.ndarray | None = None  # likelihood modes: difference per token or per budget token (nats)

    def as_records(self) -> list[dict]:
        return [{c: (float(v) if np.isfinite(v) else None) for c, v in zip(self.criteria, row)}
                for row in self.scores]


def _render(tokenizer, messages: list[dict], chat: ChatSettings | None = None, open_turn: bool = True) -> str:
    """A judge conversation as text, thinking off (the judge reads right after the prompt); `open_turn`: answer next."""
    return render(tokenizer, messages, add_generation_prompt=open_turn, thinking=False, chat=chat)


def digit_logprobs(model, tokenizer, contexts: list[str], lo: int, hi: int, batch_size: int = 8,
                   share_prefix: bool = True, fixed_prefix: str | None = None, prefix_cache: dict | None = None,
                   reuse: bool = False) -> np.ndarray:
    """Log-likelihood of each score digit lo..hi after `context + SCORE_PREFIX`, shape (contexts, digits).

    Scored by the one log-likelihood engine (hmxnb.loglik): the contexts' common prefix (a criterion's few-shot
    conversation) is run once per call, or kept across calls in `prefix_cache` (the frozen judge, `fixed_prefix`);
    `share_prefix=False` or `reuse=False` (the model's prefix-reuse decision) scores one sequence at a time.
    """
    requests = [(ctx + SCORE_PREFIX, [str(d) for d in range(lo, hi + 1)]) for ctx in contexts]
    size = batch_size * (hi - lo + 1)  # batch_size judge prompts per pass, each with its digits
    if not share_prefix:
        return np.array(score_continuations_plain(model, tokenizer, requests, size, progress=False))
    return np.array(score_continuations(model, tokenizer, requests, size, progress=False, prefix_cache=prefix_cache,
                                        fixed_prefix=fixed_prefix, reuse=reuse))


def expected_score(logp: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """(expected digit after normalising over the valid digits, their total probability) per row of `logp`."""
    if not len(logp):
        return np.zeros(0), np.zeros(0)
    weights = np.exp(logp - logp.max(axis=1, keepdims=True))
    values = np.arange(lo, hi + 1, dtype=float)
    return (weights * values).sum(1) / weights.sum(1), np.exp(logp).sum(1)


@torch.inference_mode()
def _generated_scores(model, tokenizer, contexts: list[str], lo: int, hi: int, batch_size: int, max_new_tokens: int):
    from hmxnb.chat import generate, generation_config

    device = next(model.parameters()).device
    pad_id = pad_token_id(tokenizer)
    config = generation_config(model, tokenizer, max_new_tokens)  # greedy; the package's one generation set-up
    texts = []
    for start in range(0, len(contexts), batch_size):
        seqs = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in contexts[start:start + batch_size]]
        ids, mask = pad(seqs, pad_id, side="left")
        gen = generate(model, config, input_ids=ids.to(device), attention_mask=mask.to(device))
        texts += tokenizer.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True)
    parsed = [parse_score(t, lo, hi) for t in texts]
    return np.array([math.nan if v is None else v for v in parsed], dtype=float), texts


def judge(model, tokenizer, config: JudgeConfig, prompts: list[str], replies: list[str], direction: str = "human",
          share_prefix: bool = True, prefix_cache: dict | None = None, chat: ChatSettings | None = None,
          reuse: bool = False) -> JudgeResult:
    """Score each (prompt, reply) with `model` as the judge, as `config` sets it up: its rubric, mode, few-shot
    examples, batch size, generated tokens, and the likelihood judges' conversations, temperature and token budget.

    Args:
        direction: "human" or "reverse"; matters only with reverse_mode="invert_rubric" (inverted texts, swapped
            conversations).
        share_prefix: run each criterion's common few-shot prefix once per call (probability mode; same result).
        prefix_cache: a dict kept by the caller to reuse the few-shot prefixes' KV caches across calls; pass one
            only while the judge's weights stay fixed (e.g. the frozen judge during training).
        chat, reuse: the judging model's chat settings and prefix-reuse decision (`LoadedModel.chat`,
            `.prefix_reuse`); without them the defaults and the plain scoring path.
    """
    if not isinstance(config, JudgeConfig):  # e.g. a Rubric: one line naming what judge takes
        raise TypeError(f"judge takes a hmxnb.judge.JudgeConfig (e.g. JudgeConfig.from_params(params), or "
                        f"JudgeConfig(rubric, mode=...)), not a {type(config).__name__}")
    if len(prompts) != len(replies):
        raise ValueError(f"judge got {len(prompts)} prompts but {len(replies)} replies")
    mode, rubric, few_shot, batch_size = config.mode, config.rubric, config.few_shot, config.batch_size
    if mode not in (*LIKELIHOOD_MODES, "probability", "generate"):
        raise ValueError(f"unknown judge mode '{mode}' (use 'contrast', 'request', 'probability' or 'generate')")
    was_training = model.training
    model.eval()
    try:
        if mode in LIKELIHOOD_MODES:
            return _contrast_judge(model, tokenizer, config.contexts(direction), config, prompts, replies, chat,
                                   reuse)
        if mode == "probability":  # sharing a prefix's KV cache is prefix reuse: only where the model allows it
            return _probability_judge(model, tokenizer, rubric, prompts, replies, direction, few_shot, batch_size,
                                      share_prefix and reuse, prefix_cache, chat)
        return _generate_judge(model, tokenizer, rubric, prompts, replies, direction, few_shot, batch_size,
                               config.max_new_tokens, chat)
    finally:
        model.train(was_training)


def _judge_messages(rubric: Rubric, criterion: str, direction: str, prompt: str, reply: str,
                    few_shot: bool) -> list[dict]:
    """The judge conversation for one reply and criterion, ending with the question the judge answers."""
    text, inverted = rubric.texts(direction)[criterion], rubric.inverted(criterion, direction)
    return build_judge_messages(rubric, criterion, text, prompt, reply, few_shot, inverted)


def _probability_judge(model, tokenizer, rubric, prompts, replies, direction, few_shot, batch_size, share_prefix,
                       prefix_cache, chat) -> JudgeResult:
    """Expected score digit per reply and criterion; one engine call per criterion (its few-shot prefix shared)."""
    lo, hi = rubric.scale_min, rubric.scale_max
    scores, masses = np.empty((len(replies), len(rubric.names))), []
    for j, c in enumerate(rubric.names):
        contexts = [_render(tokenizer, _judge_messages(rubric, c, direction, p, r, few_shot), chat)
                    for p, r in zip(prompts, replies)]
        fixed = None
        if prefix_cache is not None:  # the conversation before the judged turn never changes for a criterion
            fixed = _render(tokenizer, _judge_messages(rubric, c, direction, "", "", few_shot)[:-1], chat, False)
        logp = digit_logprobs(model, tokenizer, contexts, lo, hi, batch_size, share_prefix, fixed, prefix_cache,
                              reuse=share_prefix)
        scores[:, j], mass = expected_score(logp, lo, hi)
        masses.append(mass)
    mass = np.concatenate(masses)
    return JudgeResult(rubric.names, scores, 0, float(mass.mean()) if len(mass) else math.nan)


def _generate_judge(model, tokenizer, rubric, prompts, replies, direction, few_shot, batch_size,
                    max_new_tokens, chat) -> JudgeResult:
    """Greedy 'Score: N' per reply and criterion, parsed; NaN (and counted) where no score can be read."""
    names, n, k = rubric.names, len(replies), len(rubric.names)
    contexts = [_render(tokenizer, _judge_messages(rubric, c, direction, p, r, few_shot), chat)
                for p, r in zip(prompts, replies) for c in names]
    flat, raw = _generated_scores(model, tokenizer, contexts, rubric.scale_min, rubric.scale_max, batch_size,
                                  max_new_tokens)
    return JudgeResult(names, flat.reshape(n, k), int(np.isnan(flat).sum()),
                       raw=[raw[i * k:(i + 1) * k] for i in range(n)])


def _contrast_judge(model, tokenizer, conversations: tuple, config: JudgeConfig, prompts: list[str],
                    replies: list[str], chat: ChatSettings | None, reuse: bool) -> JudgeResult:
    """Contrast and request modes (module docstring): one `expression` score per reply in 0–1, σ(Δ / the config's
    temperature) of the reply's likelihood after the favoured minus after the disfavoured conversation
    (`JudgeConfig.contexts`), per token or per budget token; NaN for empty replies.

    Replies to the same prompt share their context's KV cache (hmxnb.loglik.score_continuations), so a GRPO
    group costs one context pass per description plus its completions. Tokens are split as lm-eval splits them: the
    whitespace ending the chat template's assistant header is scored with the reply.
    """

    order = list(dict.fromkeys(prompts))
    per_prompt = {p: [i for i, q in enumerate(prompts) if q == p] for p in order}
    mean_logp = []
    for messages in conversations:
        contexts = {p: _render(tokenizer, messages(p), chat) for p in order}
        requests = [(contexts[p], [replies[i] for i in per_prompt[p]]) for p in order]
        sums = score_continuations(model, tokenizer, requests, batch_size=config.batch_size, progress=False,
                                   reuse=reuse)
        out = np.full(len(replies), np.nan)
        for p, row in zip(order, sums):
            for i, s in zip(per_prompt[p], row):
                n = len(encode_pair(tokenizer, contexts[p], replies[i])[1])
                out[i] = s / max(n, config.token_budget) if replies[i].strip() and n else np.nan
        mean_logp.append(out)
    diff = mean_logp[0] - mean_logp[1]
    with np.errstate(over="ignore", invalid="ignore"):
        frac = 1.0 / (1.0 + np.exp(-diff / config.temperature))
    frac = np.where(np.isfinite(diff), frac, diff)  # an infinite difference is a numerical failure, not a top score
    return JudgeResult([LIKELIHOOD_CRITERION], frac[:, None], sum(not r.strip() for r in replies), contrast=diff)


RELEVANCE_CRITERION = "relevance"


def relevance(model, tokenizer, config: JudgeConfig, prompts: list[str], replies: list[str],
              chat: ChatSettings | None = None, reuse: bool = False) -> JudgeResult:
    """How much more likely the model finds each reply after its own prompt than after an empty user turn: the
    pointwise mutual information of prompt and reply, on the request judge's scale (summed over the reply, divided by
    max(its tokens, `config.token_budget`); reward σ(Δ / `config.temperature`); `config.batch_size` per pass).

    A reply that fits any prompt (one persona story for every question, an emoji row) scores about 0 or below; one
    that answers this prompt scores well above (docs/demo-tuning.md section 9). The same for both directions: the
    reverse run, too, should answer the prompt. NaN for empty replies.
    """
    was_training = model.training
    model.eval()
    try:
        conversations = (lambda q: request_messages(q, ""), lambda q: request_messages("", ""))
        res = _contrast_judge(model, tokenizer, conversations, config, prompts, replies, chat, reuse)
    finally:
        model.train(was_training)
    res.criteria = [RELEVANCE_CRITERION]
    return res


# ---------------------------------------------------------------- how well a judge orders replies of known tiers

def score_examples(loaded, config: JudgeConfig, examples: list[dict]):
    """Judge the tiered example replies in both directions on `loaded` (a LoadedModel); a row per reply, with rewards.

    With reverse_mode="negate" the reverse reward reuses the human-direction scores; with "invert_rubric" the
    replies are judged a second time with the inverted criterion texts.
    """
    import pandas as pd

    rubric, prompts, replies = config.rubric, [e["prompt"] for e in examples], [e["reply"] for e in examples]
    human = config.score(loaded, prompts, replies, "human")
    reverse = human if rubric.negated("reverse") else config.score(loaded, prompts, replies, "reverse")
    df = pd.DataFrame(examples)
    for j, c in enumerate(human.criteria):
        df[f"score_{c}"] = human.scores[:, j]
    if human.contrast is not None:
        df["contrast_nats"] = human.contrast
    df["reward_human"] = rubric.reward(human.scores, "human", human.criteria)
    df["reward_reverse"] = rubric.reward(reverse.scores, "reverse", reverse.criteria)
    df["judge_raw"] = [" | ".join(r) for r in human.raw] if human.raw else None
    both = reverse is not human
    return df, {"criteria": human.criteria, "n_unparsed": human.n_unparsed + (reverse.n_unparsed if both else 0),
                "n_judgements": human.scores.size * (2 if both else 1), "score_mass": human.score_mass}


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
        "mean_reward_by_tier": {d: {str(k): float(v) for k, v in df.groupby("tier_name")[f"reward_{d}"].mean().items()}
                                for d in ("human", "reverse")},
        "ordered_as_intended": bool(df.groupby("tier")["reward_human"].mean().is_monotonic_increasing),
    }


def judge_validity(loaded, config: JudgeConfig, examples: list[dict], modes: list[str]):
    """How well each judge mode (`config` in that mode) orders tiered replies it was not designed on: a row per mode.

    Columns: Spearman of the human-like reward against the intended tier (all tiers; expressive vs flat only), mean
    reward per tier, seconds per reply. Returns (table, {mode: per-reply DataFrame}).
    """
    import time

    import pandas as pd

    rows, frames = [], {}
    for mode in dict.fromkeys(modes):
        t0 = time.perf_counter()
        df, diag = score_examples(loaded, replace(config, mode=mode), examples)
        secs = time.perf_counter() - t0
        m = ordering_metrics(df, diag["criteria"])
        tiers = m["mean_reward_by_tier"]["human"]
        rows.append({"judge_mode": mode, "spearman_all_tiers": m["spearman_human_reward_vs_tier"],
                     "spearman_expressive_vs_flat": m["spearman_expressive_vs_flat"],
                     **{f"mean_reward_{t}": tiers.get(t) for t in ("expressive", "flat", "degenerate")},
                     "seconds_per_reply": secs / max(len(df), 1), "n_replies": len(df)})
        frames[mode] = df
    return pd.DataFrame(rows).set_index("judge_mode"), frames


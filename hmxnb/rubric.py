"""The rubric and the judge's prompts: criteria, weights, directions, the versioned judge template and its examples.

The paper (HMX-feel) states a "rubric-based self-rewarding" scheme but publishes neither rubric text, scale nor
judge prompt: everything here is our choice, written down in params (criteria, weights, scale) and in the
versioned prompt template below. How the model scores a reply with them is hmxnb.judge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

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
    persona_human: str = ""
    persona_flat: str = ""
    contrast_temperature: float = 0.1
    contrast_token_budget: int = 0  # 0: per-token mean; N: summed over the reply / max(N, reply tokens)
    request: str = ""  # the request judge's added user sentence (params judge_request)
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
            contrast_token_budget=p["contrast_token_budget"],
            request=p["judge_request"],
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
        """The reverse criterion texts, a guard keeping its own."""
        return {c: (self.criteria[c] if c in self.guards else self.reverse_criteria[c]) for c in self.names}

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

    def personas(self, direction: str) -> tuple[str, str]:
        """(favoured, disfavoured) speaker descriptions of the contrast judge; swapped for reverse + invert_rubric."""
        if self.swapped(direction):
            return self.persona_flat, self.persona_human
        return self.persona_human, self.persona_flat

    def contexts(self, mode: str, direction: str) -> tuple:
        """(favoured, disfavoured): two functions prompt -> chat messages, the conversations the likelihood judges
        continue with the reply. contrast: the two speaker descriptions; request: the prompt with the request sentence
        added, and the prompt as it is. Swapped for reverse + invert_rubric."""
        if mode == "request":
            pair = (lambda q: request_messages(q, self.request), lambda q: request_messages(q, ""))
            return pair[::-1] if self.swapped(direction) else pair
        favoured, disfavoured = self.personas(direction)
        return (lambda q: contrast_messages(favoured, q)), (lambda q: contrast_messages(disfavoured, q))

    def context_names(self, mode: str, direction: str) -> tuple[str, str]:
        """Short names of `contexts(mode, direction)`, (favoured, disfavoured), for the notebooks' words."""
        names = ("with the request", "prompt alone") if mode == "request" else ("warm speaker", "flat speaker")
        return names[::-1] if self.swapped(direction) else names

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
    rubric, direction, mode = Rubric.from_params(params), params.get("direction", "human"), params["judge_mode"]
    swapped = rubric.swapped(direction)
    favoured = {"request": ("without" if swapped else "with")}.get(mode, "flat" if swapped else "feeling-expressing")
    difference = "per-token log-likelihood difference"
    if rubric.contrast_token_budget:
        budget = rubric.contrast_token_budget
        difference = (f"log-likelihood difference summed over the reply and divided by {budget} tokens or its length "
                      "if longer: contrast_token_budget, length-neutral")
    how = JUDGE_MODE_WORDS[mode].format(favoured=favoured, lo=rubric.scale_min, hi=rubric.scale_max,
                                        criteria=", ".join(rubric.names), request=rubric.request, difference=difference)
    who = "the starting model (judge_model: frozen, the LoRA adapters switched off)"
    if params["judge_model"] == "live":
        who = "the policy as it is now (judge_model: live, adapters on)"
    return f"Self-judge: {how}. Judged by {who}. {_reward_words(rubric, direction, mode)}"


def _reward_words(rubric: Rubric, direction: str, mode: str) -> str:
    """How the run's direction turns the judge's score into its reward, in one sentence."""
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

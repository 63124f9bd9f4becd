"""Feeling expression on the held-out prompts: the training target, measured two ways.

1. Rubric reward (human-like direction, 0-1) from a FIXED judge — the base model (adapters off) or a model named
   in params — never the model being evaluated, so a model cannot grade its own homework here.
2. Judge-free: first-person affect statements, counted with the VADER lexicon (Hutto & Gilbert 2014, shipped in the
   `vaderSentiment` package): a sentence counts when it has a first-person pronoun and either a form of "feel" or
   a word with |valence| >= 1.0 in the lexicon, leaving out assistant politeness words that VADER rates positive
   ("help", "please", "thanks", ...). Our definition; the paper does not say how it measured expression.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import torch

from .common import mean

FIRST_PERSON = {"i", "i'm", "im", "i've", "i'd", "i'll", "me", "my", "myself", "mine"}
FEEL_WORDS = {"feel", "feels", "feeling", "feelings", "felt"}
AFFECT_THRESHOLD = 1.0
NOT_AFFECT = {"help", "helps", "helping", "helpful", "please", "thanks", "thank", "ok", "okay", "yes", "no", "sure",
              "well", "free", "like", "best", "better", "good", "great", "easy", "true", "clear", "important"}
_SENT_RE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD_RE = re.compile(r"[a-z']+")


@lru_cache(maxsize=1)
def affect_lexicon() -> dict[str, float]:
    """VADER's word -> valence (-4..4) table, read from the installed `vaderSentiment` package."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return dict(SentimentIntensityAnalyzer().lexicon)


def affect_statements(text: str, lexicon: dict[str, float] | None = None) -> int:
    """Number of sentences that state an affect in the first person (see module docstring)."""
    lex = affect_lexicon() if lexicon is None else lexicon
    count = 0
    for sentence in _SENT_RE.split(text or ""):
        words = _WORD_RE.findall(sentence.lower().replace("’", "'"))
        if not FIRST_PERSON.intersection(words):
            continue
        if FEEL_WORDS.intersection(words) or any(abs(lex.get(w, 0.0)) >= AFFECT_THRESHOLD and w not in NOT_AFFECT for w in words):
            count += 1
    return count


def load_expression_items(prompt_rows: list[dict]) -> list[dict]:
    """Items from the project's held-out prompts (hmxnb.data.load_prompts(split="heldout"))."""
    return [{"item_id": f"expr-{r['id']}", "prompt": r["prompt"], "kind": r.get("kind", "")} for r in prompt_rows]


@torch.inference_mode()
def generate_replies(model, tokenizer, prompts: list[str], max_new_tokens: int = 64, batch_size: int = 8) -> list[str]:
    """Greedy replies to single-turn chat prompts (deterministic, so models are compared on their typical reply)."""
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    out = []
    try:
        for start in tqdm(range(0, len(prompts), batch_size), desc="generate", leave=False):
            chats = [[{"role": "user", "content": p}] for p in prompts[start:start + batch_size]]
            enc = tokenizer.apply_chat_template(chats, add_generation_prompt=True, return_tensors="pt", padding=True,
                                                return_dict=True)
            gen = model.generate(**{k: v.to(device) for k, v in enc.items()}, max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=pad)
            out += tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return [t.strip() for t in out]


def score_expression(items: list[dict], replies: list[str], model_label: str, judge_fn) -> list[dict]:
    """Score one reply per held-out prompt with the fixed judge and the lexicon; two records per reply.

    Args:
        judge_fn: `judge_fn(prompts, replies) -> (scores [n, k] raw, rewards [n] in 0-1, criteria)`, running the fixed
            judge (see hmxnb.evaluate.fixed_judge). Records: `feeling_expression` (score = rubric reward) and
            `affect_statements` (score = number of first-person affect sentences).
    """
    prompts = [it["prompt"] for it in items]
    scores, rewards, criteria = judge_fn(prompts, replies)
    records = []
    for it, reply, row, r in zip(items, replies, scores, rewards):
        base = {"item_id": it["item_id"], "model": model_label, "prompt": it["prompt"], "completion": reply,
                "choices": [], "logprobs": [], "prediction": None, "correct": None, "kind": it.get("kind", "")}
        records.append({**base, "benchmark": "feeling_expression", "score": None if np.isnan(r) else float(r),
                        "scores": {c: (None if np.isnan(v) else float(v)) for c, v in zip(criteria, row)}})
        records.append({**base, "benchmark": "affect_statements", "score": float(affect_statements(reply))})
    return records


def evaluate_expression(model, tokenizer, items: list[dict], model_label: str, judge_fn, max_new_tokens: int = 64,
                        batch_size: int = 8) -> list[dict]:
    """Generate a greedy reply per held-out prompt with `model`, then `score_expression`."""
    replies = generate_replies(model, tokenizer, [it["prompt"] for it in items], max_new_tokens, batch_size)
    return score_expression(items, replies, model_label, judge_fn)


def metrics_expression(records: list[dict]) -> dict:
    """Mean rubric reward (fixed judge) and mean first-person affect statements per reply."""
    judge = [r["score"] for r in records if r["benchmark"] == "feeling_expression" and r["score"] is not None]
    lex = [r["score"] for r in records if r["benchmark"] == "affect_statements"]
    return {"expression_score": mean(judge), "affect_statements": mean(lex), "n": len(lex)}

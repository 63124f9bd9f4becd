"""Feeling expression on the held-out prompts: the training target, measured four ways.

1. Rubric reward (human-like direction, 0-1) from a FIXED evaluation judge, params `eval_judge_model`. Its default,
   "base", is the base model (adapters off) with the same judge mode, rubric and prompt as the frozen training judge:
   the score then measures how far the training reward carries over to prompts the model never trained on; it is
   not an independent opinion. Name a stronger model (Hub id or local path) for an independent judge.
   A second evaluation judge (params `eval_second_judge_mode`): the same judging model in another judge mode, so
   a gain that only the training judge's design sees shows up as a gap between the two.
   Both judges score a reply's distinct sentences (hmxnb.textform.distinct_text): a repeated sentence earns nothing.
2. Judge-free: first-person affect statements, counted with the VADER lexicon (Hutto & Gilbert 2014, shipped in the
   `vaderSentiment` package): a sentence counts when it has a first-person pronoun and either a form of "feel" or
   a word with |valence| >= 1.0 in the lexicon, leaving out assistant politeness words that VADER rates positive
   ("help", "please", "thanks", ...). Each distinct sentence counts once, and stock formulas ("I'm sorry for any
   misunderstanding", "as an AI", "feel free to": hmxnb.textform.FORMULAS) are cut out before a sentence is read,
   so neither repetition nor formulas buy a count; `affect_all` keeps the count without these two rules. Our
   definition; the paper does not say how it measured expression.
3. Form, so that "longer" or "repetitive" is not mistaken for "more feeling": reply length in words, distinct word
   bigrams (distinct-2), the shares of empty, repetitive and truncated (cut at the token limit) replies, and the
   reward-hacking watch: replies that repeat a sentence, replies with a stock formula, their openers
   (`form_watch`, `openers_table`; compared in notebook 05 as degenerate-form rows, `FORM_ROWS`).
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pandas as pd
import torch

from hmxnb import paper, textform
from hmxnb.chat import end_token_ids, generate, generation_config, is_truncated, render, strip_thinking, up_to_end
from hmxnb.compare import form_overlap, form_score, form_share, score
from hmxnb.data import load_prompts

from .benchmark import Benchmark, EvalContext, ItemView
from .common import mean, subsample

NAME = "expression"
# The records' `benchmark`, two or three records per reply; the mean of the affect records is the metric of the
# same name, the mean of the second judge's records `second_judge_score`.
JUDGED, AFFECT, SECOND = "feeling_expression", "affect_statements", "expression_second_judge"

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


def affect_statements(text: str, lexicon: dict[str, float] | None = None, every_sentence: bool = False) -> int:
    """Number of distinct sentences that state an affect in the first person once stock formulas are cut out (see
    module docstring). `every_sentence`: every sentence as written, repeats and formulas included (`affect_all`)."""
    lex = affect_lexicon() if lexicon is None else lexicon
    count, seen = 0, set()
    for sentence in _SENT_RE.split(text or ""):
        if not every_sentence:
            key = " ".join(textform.words(sentence))
            if key in seen:
                continue
            seen.add(key)
            sentence = textform.strip_formulas(sentence)
        words = _WORD_RE.findall(sentence.lower().replace("’", "'"))
        if not FIRST_PERSON.intersection(words):
            continue
        feeling = FEEL_WORDS.intersection(words)
        if feeling or any(abs(lex.get(w, 0.0)) >= AFFECT_THRESHOLD and w not in NOT_AFFECT for w in words):
            count += 1
    return count


def load_expression_items(prompt_rows: list[dict], limit: int | None = None, seed: int = 0) -> list[dict]:
    """Items from the project's held-out prompts (hmxnb.data.load_prompts(split="heldout")): a seeded subset of
    `limit` of them (None = all), as for every other benchmark (params `bench_limit`). Each one is a reply generated
    by every model and then judged, the slowest items of notebook 04, so a small bench_limit must cap them too."""
    items = [{"item_id": f"expr-{r['id']}", "prompt": r["prompt"], "kind": r.get("kind", "")} for r in prompt_rows]
    return subsample(items, limit, seed)


@torch.inference_mode()
def generate_replies(model, tokenizer, prompts: list[str], max_new_tokens: int = 64, batch_size: int = 8,
                     with_truncation: bool = False, progress: bool = True, chat=None):
    """Greedy replies to single-turn chat prompts (deterministic, so models are compared on their typical reply).

    Prompts are rendered by hmxnb.chat (params `enable_thinking`, `chat_date`); a reply is the text after any
    thinking block. With `with_truncation`, returns (replies, truncated) where truncated[i] says reply i has no end
    token within max_new_tokens (hmxnb.chat.is_truncated). `progress=False` hides the bar over batches (notebook 04
    shows one bar for all benchmarks).
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    config = generation_config(model, tokenizer, max_new_tokens)  # greedy, no max_length beside max_new_tokens
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    out, cut = [], []
    end = end_token_ids(model, tokenizer)
    try:
        for start in tqdm(range(0, len(prompts), batch_size), desc="generate", leave=False,
                          disable=not progress):
            texts = [render(tokenizer, [{"role": "user", "content": p}], chat=chat)
                     for p in prompts[start:start + batch_size]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            gen = generate(model, config, **{k: v.to(device) for k, v in enc.items()})
            new = gen[:, enc["input_ids"].shape[1]:]
            out += tokenizer.batch_decode(new, skip_special_tokens=True)
            cut += [is_truncated(up_to_end(row.tolist(), end), end) for row in new]
    finally:
        tokenizer.padding_side = side
    replies = [strip_thinking(t).strip() for t in out]
    return (replies, cut) if with_truncation else replies


def reply_form(reply: str, truncated: bool = False) -> dict:
    """Judge-free form of a reply: length in words, distinct-2, the empty / repetitive / truncated flags, and the
    watch's: repeats a sentence, stock formula (and which), opener (hmxnb.textform.form_flags)."""
    from hmxnb.rewards import text_flags

    flags = text_flags(reply)
    return {"reply_words": len(reply.split()), "distinct_2": textform.distinct_bigram_ratio(reply),
            "empty": flags["empty"], "repetitive": flags["repetitive"], "truncated": bool(truncated),
            **textform.form_flags(reply)}


def score_expression(items: list[dict], replies: list[str], model_label: str, judge_fn,
                     truncated: list[bool] | None = None, second_judge_fn=None) -> list[dict]:
    """Score one reply per held-out prompt with the fixed judge(s) and the lexicon; two or three records per reply.

    Args:
        judge_fn: `judge_fn(prompts, replies) -> (scores [n, k] raw, rewards [n] in 0-1, criteria)`, running the fixed
            judge (see hmxnb.evaluate.fixed_judge). Records: `feeling_expression` (score = rubric reward) and
            `affect_statements` (score = number of first-person affect sentences); both carry `reply_form` columns.
        truncated: per reply, whether generation stopped at the token limit (from `generate_replies`).
        second_judge_fn: the second evaluation judge, same signature; its records are `expression_second_judge`.
    """
    prompts = [it["prompt"] for it in items]
    distinct = [textform.distinct_text(r) for r in replies]  # what the judges read: each sentence once
    shared = textform.shared_bigram_shares(replies)  # phrasing this reply shares with the model's other replies
    judged = [(JUDGED, judge_fn(prompts, distinct))]
    if second_judge_fn is not None:
        judged.append((SECOND, second_judge_fn(prompts, distinct)))
    truncated = truncated if truncated is not None else [False] * len(replies)
    records = []
    for i, (it, reply, cut) in enumerate(zip(items, replies, truncated)):
        base = {"item_id": it["item_id"], "model": model_label, "prompt": it["prompt"], "completion": reply,
                "choices": [], "logprobs": [], "prediction": None, "correct": None, "kind": it.get("kind", ""),
                "judged_text": distinct[i], "affect_all": affect_statements(reply, every_sentence=True),
                "shared_bigrams": shared[i],
                **reply_form(reply, cut)}
        for name, (scores, rewards, criteria) in judged:
            records.append({**base, "benchmark": name, "score": None if np.isnan(rewards[i]) else float(rewards[i]),
                            "scores": {c: (None if np.isnan(v) else float(v)) for c, v in zip(criteria, scores[i])}})
        records.append({**base, "benchmark": AFFECT, "score": float(affect_statements(reply))})
    return records


def evaluate_expression(model, tokenizer, items: list[dict], model_label: str, judge_fn, max_new_tokens: int = 64,
                        batch_size: int = 8, second_judge_fn=None) -> list[dict]:
    """Generate a greedy reply per held-out prompt with `model`, then `score_expression`."""
    replies, cut = generate_replies(model, tokenizer, [it["prompt"] for it in items], max_new_tokens, batch_size, True)
    return score_expression(items, replies, model_label, judge_fn, cut, second_judge_fn)


def _evaluate_as(model, tokenizer, items: list[dict], label: str, ctx: EvalContext) -> list[dict]:
    """The registry's `evaluate`: replies generated as `label`, then judged by the fixed judge, which runs with the
    adapters off (hmxnb.evaluate.fixed_judge), so outside the `label` context."""
    with ctx.use(label):
        replies, cut = generate_replies(model, tokenizer, [it["prompt"] for it in items], ctx.max_new_tokens,
                                        ctx.batch_size, with_truncation=True, progress=False, chat=ctx.chat)
    return score_expression(items, replies, label, ctx.judge_fn, cut, ctx.second_judge_fn)


def _heldout_items(params: dict, loaded: dict) -> list[dict]:
    """The registry's `load`: params `prompts_file`'s held-out prompts, `bench_limit` of them (0 = all)."""
    heldout = load_prompts(params["prompts_file"], split="heldout")
    return load_expression_items(heldout, limit=params["bench_limit"] or None, seed=params["seed"])


def metrics_expression(records: list[dict]) -> dict:
    """Mean rubric reward (fixed judge), mean first-person affect statements per reply, the second judge's mean
    reward (NaN without one), and the replies' form."""
    judged = [r for r in records if r["benchmark"] == JUDGED]
    judge = [r["score"] for r in judged if r["score"] is not None]
    second = [r["score"] for r in records if r["benchmark"] == SECOND and r["score"] is not None]
    lex = [r["score"] for r in records if r["benchmark"] == AFFECT]
    form = {k: mean([float(r[k]) for r in judged if k in r]) for k in ("reply_words", "distinct_2", "shared_bigrams")}
    shares = {f"{k}_share": mean([float(r[k]) for r in judged if k in r])
              for k in ("empty", "repetitive", "truncated", "repeats_sentence", "stock_formula")}
    pooled = textform.pooled_distinct_2([r["completion"] for r in judged])
    return {"expression_score": mean(judge), AFFECT: mean(lex), "second_judge_score": mean(second), **form, **shares,
            "pooled_distinct_2": pooled, "n": len(lex)}


def lost_credit(records) -> pd.DataFrame:
    """Replies whose repeated sentences the judges did not read, or whose affect count fell when repeats and stock
    formulas were left out: prompt, model, reply, what was judged, affect count without / with the two rules, why."""
    frame = replies_frame(records)
    if "judged_text" not in frame or "affect_all" not in frame:
        return pd.DataFrame()
    fewer = frame["affect_all"] > frame["affect"]
    cut = frame["judged_text"] != frame["completion"]
    out = frame[fewer | cut].copy()
    out["why"] = [", ".join(w for w, on in (("repeated sentences not judged", c),
                                           ("formulas: " + "/".join(f or []), bool(f) and a),
                                           ("a sentence counted once", a and not f)) if on)
                  for c, a, f in zip(cut[out.index], fewer[out.index], out["formulas"])]
    return out[["model", "prompt", "completion", "judged_text", "affect_all", "affect", "why"]]


def replies_frame(records) -> pd.DataFrame:
    """One row per reply (item x model): its judged record, with the affect count of the same reply as `affect` (and
    the second evaluation judge's reward as `second_judge`, where there is one).

    The two records of a reply are joined on item id and model (and base model and seed where present), never on
    row position, so any order of the records (filtered, sorted, another benchmark in between) gives each reply its
    own count.
    """
    rows = records.to_dict("records") if isinstance(records, pd.DataFrame) else list(records)
    judged = pd.DataFrame([r for r in rows if r["benchmark"] == JUDGED])
    affect = pd.DataFrame([r for r in rows if r["benchmark"] == AFFECT])
    keys = [k for k in ("item_id", "model", "base_model", "seed") if k in judged.columns and k in affect.columns]
    frame = judged.merge(affect[[*keys, "score"]].rename(columns={"score": "affect"}), on=keys, how="left",
                         validate="one_to_one")
    second = pd.DataFrame([r for r in rows if r["benchmark"] == SECOND])
    if second.empty:
        return frame
    second = second[[*keys, "score"]].rename(columns={"score": "second_judge"})
    return frame.merge(second, on=keys, how="left", validate="one_to_one")

def reply_view(records: list[dict]) -> ItemView | None:
    """The first held-out prompt with each model's reply, its judge score(s), affect count and length."""
    frame = replies_frame(records)
    if frame.empty:
        return None
    item = frame[frame["item_id"] == frame["item_id"].iloc[0]]
    columns = [c for c in ("model", "completion", "score", "second_judge", "affect", "reply_words") if c in item]
    table = item[columns].rename(columns={"completion": "reply", "score": "judge", "second_judge": "second judge",
                                          "affect": "affect statements", "reply_words": "words"})
    return ItemView(JUDGED, str(item["prompt"].iloc[0]), table.reset_index(drop=True))


FORM = ("reply_words", "distinct_2", "empty_share", "repetitive_share", "truncated_share", "repeats_sentence_share",
        "stock_formula_share", "pooled_distinct_2", "shared_bigrams")



# the degenerate-form rows notebook 05 compares (Holm as a family of their own): more repetition, more formulas, fewer
# distinct word pairs, shorter replies (the lr 1e-3 hack of docs/demo-tuning.md section 2 shrank them), and one
# phrasing for every prompt (word pairs shared with the model's other replies: section 9's "I love when I can hug my
# mom") = worse
FORM_ROWS = (form_share(JUDGED, "repeats_sentence_share", "repeats_sentence"),
             form_share(JUDGED, "stock_formula_share", "stock_formula"),
             form_score(JUDGED, "distinct_2", "distinct_2"), form_score(JUDGED, "reply_words", "reply_words"),
             form_overlap(JUDGED, "shared_bigrams", "shared_bigrams"))
BENCHMARK = Benchmark(
    NAME, _heldout_items, _evaluate_as, metrics_expression,
    headline=tuple((key, None) for key in ("expression_score", AFFECT, "second_judge_score", *FORM)),
    compared=(score(JUDGED, "expression_score", claim=paper.TRAINING_TARGET, training_target=True),
              score(AFFECT, AFFECT, claim=paper.TRAINING_TARGET, training_target=True),
              score(SECOND, "second_judge_score", claim=paper.TRAINING_TARGET, training_target=True), *FORM_ROWS),
    defines="A held-out prompt (never trained on); each model writes a greedy reply. **expression_score** = the fixed "
            "evaluation judge's reward (0–1) on the reply's distinct sentences, the judge running with the adapters "
            "off; **affect_statements** = how many distinct sentences state a feeling in the first person once stock "
            "formulas are cut out (a lexicon count, no model); **second_judge_score** = the second evaluation judge. "
            "Averaged over prompts; the form rows (repeats, formulas, distinct-2, words) watch for reward hacking.",
    view=reply_view,
)


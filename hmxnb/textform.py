"""The form of a reply, judge-free: sentences, repetition, stock formulas, openers.

What a likelihood self-judge can be paid for without any feeling being stated, so the reward guard
(hmxnb.rewards.format_penalty), the held-out watch (hmxnb.bench.expression) and the affect count all read it here:

- **Units** are the clauses of a reply: text split after `. ! ? , ; :` or at a line break. A unit is compared with the
  others on its words only (lower case, punctuation dropped).
- A reply **repeats a sentence** when a unit of at least `MIN_REPEAT_WORDS` words occurs twice ("I'm so sorry for any
  misunderstanding. I'm so sorry for any misunderstanding."; "a gentle caress, a gentle caress").
- Its **distinct text** keeps the first occurrence of each such unit and drops the repeats; a reply without repeats is
  returned unchanged. The evaluation judge scores this text, so a repeated sentence earns nothing twice.
- **The watch** over a set of replies (`form_watch`, `openers_table`): per model, the shares of replies that repeat a
  sentence or hold a stock formula with 95% Wilson intervals, distinct-2, length, the most common openers.
- **Stock formulas**: phrases written by convention, which state no feeling of their own. Four families (our list;
  the paper names none): `apology` ("I'm (so) sorry", "I apologize", "sorry for any ..."), `ai_disclaimer` ("as an
  AI / a chatbot / a language model", "I'm just an AI", "I don't have feelings"), `help_offer` ("I'm here to help",
  "how can I assist", "let me know if", "feel free to", "I hope this helps", "if you have any questions") and
  `stage_direction` ("(smiling warmly)", "(laughs)", "*sighs*": the hack of docs/demo-tuning.md section 2). "feel
  free to" and "I don't have feelings" would otherwise pass as first-person "feel" words.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd

MIN_REPEAT_WORDS = 3
_UNIT_RE = re.compile(r"(?<=[.!?,;:…])\s+|\n+")
_WORD_RE = re.compile(r"[a-z0-9']+")

_A = r"(?:i'm|i am|im)"
FORMULAS: dict[str, tuple[str, ...]] = {
    "apology": (
        rf"\b{_A} (?:so |very |really |truly |deeply |terribly )?sorry\b",
        r"\bsorry (?:for|about) (?:the|any|that|this|my)\b",
        r"\bi (?:sincerely |deeply |truly )?apologi[sz]e\b",
        r"\b(?:my )?apologies\b",
    ),
    "ai_disclaimer": (
        r"\bas an? (?:ai|artificial intelligence|chatbot|(?:ai )?language model|ai assistant|virtual assistant|"
        r"assistant|computer program|machine|bot)\b",
        rf"\b{_A} (?:just |only |merely |simply )?an? (?:ai|artificial intelligence|chatbot|(?:ai )?language model|"
        r"ai assistant|virtual assistant|computer program|machine|bot)\b",
        r"\bi (?:don't|do not|can't|cannot) (?:have|experience|feel) (?:any |real |personal |human |true )?"
        r"(?:feelings|emotions|experiences|personal experiences|opinions)\b",
    ),
    "help_offer": (
        rf"\b{_A} here to (?:help|assist)\b",
        r"\b(?:how|what) (?:can|may) i (?:help|assist|do for you)\b",
        r"\bi(?:'d| would|'m| am) (?:be )?(?:happy|glad) to (?:help|assist)\b",
        r"\blet me know if\b",
        r"\bfeel free to\b",
        r"\bi hope (?:this|that|it) helps\b",
        r"\bif you have any (?:other |more |further )?questions\b",
    ),
    "stage_direction": (
        r"[(*\[]\s*(?:smil|laugh|sigh|grin|chuckl|giggl|nod|wink|paus|blush|sob|cry|cries|beam|gasp|shrug|wav|hug|"
        r"lean|look|tear|whisper|smirk)[^)*\]\n]{0,60}[)*\]]",
    ),
}
_FORMULA_RE = {family: re.compile("|".join(patterns)) for family, patterns in FORMULAS.items()}


def normalize(text: str) -> str:
    """Lower case, curly apostrophes made straight."""
    return (text or "").lower().replace("’", "'").replace("‘", "'")


def words(text: str) -> list[str]:
    """The words of a text as this module compares them."""
    return _WORD_RE.findall(normalize(text))


def units(text: str) -> list[str]:
    """The clauses of a text (see the module docstring), stripped, empty ones left out."""
    return [u.strip() for u in _UNIT_RE.split(text or "") if u.strip()]


def _key(unit: str) -> str | None:
    """What two units are compared on; None for units too short to count as a repeated sentence."""
    w = words(unit)
    return " ".join(w) if len(w) >= MIN_REPEAT_WORDS else None


def repeated_units(text: str) -> int:
    """How many units repeat an earlier one (0 = no repetition)."""
    keys = [k for k in map(_key, units(text)) if k is not None]
    return len(keys) - len(set(keys))


def repeats_sentence(text: str) -> bool:
    """True when some sentence or clause of at least MIN_REPEAT_WORDS words occurs twice."""
    return repeated_units(text) > 0


def distinct_text(text: str) -> str:
    """The text with every repeated unit after its first occurrence dropped; unchanged when nothing repeats."""
    if not repeats_sentence(text):
        return text
    seen, kept = set(), []
    for unit in units(text):
        key = _key(unit)
        if key is not None and key in seen:
            continue
        seen.add(key)
        kept.append(unit)
    return " ".join(kept)


def distinct_bigram_ratio(text: str) -> float:
    """Share of distinct word bigrams (1.0 = no repetition); 1.0 for texts under three words."""
    w = text.lower().split()
    if len(w) < 3:
        return 1.0
    bigrams = list(zip(w, w[1:]))
    return len(set(bigrams)) / len(bigrams)


def pooled_distinct_2(texts) -> float:
    """Distinct word bigrams over a set of replies pooled (bigrams within each reply): low when replies share
    phrasing with each other, which per-reply distinct-2 cannot see. NaN without any bigram."""
    bigrams = [b for t in texts for b in zip(t.lower().split(), t.lower().split()[1:])]
    return len(set(bigrams)) / len(bigrams) if bigrams else float("nan")


def shared_bigram_shares(texts) -> list[float]:
    """Per reply, the share of its distinct word bigrams that also occur in another reply of the set: near 1 when a
    model answers every prompt with the same phrasing, which per-reply distinct-2 cannot see (0 for a reply without
    a word pair: it shares none)."""
    sets = [set(zip(t.lower().split(), t.lower().split()[1:])) for t in texts]
    counts: dict = {}
    for s in sets:
        for b in s:
            counts[b] = counts.get(b, 0) + 1
    return [sum(counts[b] > 1 for b in s) / len(s) if s else 0.0 for s in sets]


def formula_families(text: str) -> list[str]:
    """The stock-formula families found in a text, in FORMULAS order."""
    t = normalize(text)
    return [family for family, rx in _FORMULA_RE.items() if rx.search(t)]


def strip_formulas(text: str) -> str:
    """The text with every stock-formula phrase cut out (the rest of its sentence stays)."""
    t = normalize(text)
    for rx in _FORMULA_RE.values():
        t = rx.sub(" ", t)
    return t


def opener(text: str, n: int = 4) -> str:
    """The first `n` words of a reply, lower case, punctuation dropped: what a formula looks like across replies."""
    return " ".join(words(text)[:n])


def top_openers(texts, n: int = 5, n_words: int = 4) -> list[tuple[str, int]]:
    """The `n` most common openers of a set of replies, with their counts (empty replies left out)."""
    return Counter(o for o in (opener(t, n_words) for t in texts) if o).most_common(n)


def form_flags(text: str) -> dict:
    """Per reply: repeats a sentence, how many units repeat, contains a stock formula, which families, opener."""
    families = formula_families(text)
    return {"repeats_sentence": repeats_sentence(text), "repeated_units": repeated_units(text),
            "stock_formula": bool(families), "formulas": families, "opener": opener(text)}


def _share_ci(flags) -> tuple[float, float, float]:
    """A share and its 95% Wilson interval (NaN without replies)."""
    n = len(flags)
    if not n:
        return float("nan"), float("nan"), float("nan")
    p, z2 = float(np.mean(flags)), 1.959964 ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = np.sqrt(z2 * (p * (1 - p) / n + z2 / (4 * n * n))) / (1 + z2 / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


def _frame(replies) -> pd.DataFrame:
    """Replies (DataFrame or record dicts with `model` and `completion`) as a DataFrame, one reply per item and model
    where `item_id` is given."""
    df = replies.copy() if isinstance(replies, pd.DataFrame) else pd.DataFrame(list(replies))
    if df.empty:
        return pd.DataFrame(columns=["model", "completion"])
    return df.drop_duplicates(["item_id", "model"]) if "item_id" in df else df


def form_watch(replies) -> pd.DataFrame:
    """The reward-hacking watch on a set of replies, one row per model: shares of replies that repeat a sentence and
    that hold a stock formula (each family too) with 95% Wilson intervals, mean distinct-2 per reply, pooled
    distinct-2, mean length in words, and the most common opener with its count. `replies`: records with `model` and
    `completion` (notebook 04's records of one benchmark, or replies_frame); everything is read from the text."""
    rows = []
    for model, g in _frame(replies).groupby("model", sort=False):
        texts = [str(t) for t in g["completion"]]
        flags = [form_flags(t) for t in texts]
        row = {"model": model, "replies": len(texts)}
        for key, name in (("repeats_sentence", "repeats a sentence"), ("stock_formula", "stock formula")):
            p, lo, hi = _share_ci([f[key] for f in flags])
            row[name] = f"{p:.0%} [{lo:.0%}, {hi:.0%}]"
        row.update({family: f"{np.mean([family in f['formulas'] for f in flags]):.0%}" for family in FORMULAS})
        top = top_openers(texts, n=1)
        row.update({"distinct-2": round(float(np.mean([distinct_bigram_ratio(t) for t in texts])), 3),
                    "pooled distinct-2": round(pooled_distinct_2(texts), 3),
                    "words": round(float(np.mean([len(t.split()) for t in texts])), 1),
                    "top opener": f"'{top[0][0]}' ×{top[0][1]}" if top else ""})
        rows.append(row)
    return pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()


def openers_table(replies, n: int = 5) -> pd.DataFrame:
    """The `n` most common openers (first 4 words) of each model's replies, with counts, side by side."""
    cols = {}
    for model, g in _frame(replies).groupby("model", sort=False):
        top = top_openers([str(t) for t in g["completion"]], n=n)
        cols[model] = [f"{o} ×{c}" for o, c in top] + [""] * (n - len(top))
    return pd.DataFrame(cols, index=pd.RangeIndex(1, n + 1, name="rank"))

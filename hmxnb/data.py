"""The project's own data: training prompts (train / held-out), the tiered rubric example replies and the
judge-validation set.

Both files ship inside the package (hmxnb/data/); their README says how they were made.
"""

from __future__ import annotations

import json
from pathlib import Path

PACKAGE_DATA = Path(__file__).resolve().parent / "data"


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSON-lines file; a bad line raises ValueError naming the file and line number."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{i}: not valid JSON ({err.msg})") from None
    return rows


def read_json(path: str | Path):
    """Read a JSON file; invalid JSON raises ValueError naming the file, line and column (as `read_jsonl` does)."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{err.lineno}:{err.colno}: not valid JSON ({err.msg})") from None


def load_prompts(path: str | Path | None = None, split: str | None = None, limit: int = 0) -> list[dict]:
    """Training prompts `{id, kind, split, prompt}`; `split` in {"train", "heldout"} filters, `limit` > 0 truncates.
    A split with no rows is a ValueError naming the file and the splits it has (a row without `split` is "train")."""
    rows = read_jsonl(path or PACKAGE_DATA / "prompts.jsonl")
    for i, r in enumerate(rows):
        if not isinstance(r.get("prompt"), str) or not r["prompt"].strip():
            raise ValueError(f"{path or 'prompts.jsonl'}: row {i + 1} has no 'prompt' text")
    if split is not None:
        splits = sorted({str(r.get("split", "train")) for r in rows})
        rows = [r for r in rows if r.get("split", "train") == split]
        if not rows:
            has = f"its splits: {', '.join(splits)}" if splits else "it has no rows"
            raise ValueError(f"prompts file {path or 'prompts.jsonl'} has no rows in split '{split}' ({has})")
    return rows[:limit] if limit else rows


def load_rubric_examples() -> list[dict]:
    """Hand-written replies in three intended tiers: 2 expressive, 1 flat assistant-style, 0 degenerate."""
    return read_jsonl(PACKAGE_DATA / "rubric_examples.jsonl")


def load_judge_validation() -> list[dict]:
    """The judge-validation set: 24 prompts x 3 tiers (2 expressive, 1 flat, 0 degenerate), written for the project
    apart from the judge's few-shot anchors and the rubric examples, on prompts outside the train and held-out
    splits; used only to measure the judge's validity on text it was not designed on (notebook 01)."""
    return read_jsonl(PACKAGE_DATA / "judge_validation.jsonl")


def to_chat_dataset(rows: list[dict]):
    """A `datasets.Dataset` in TRL's conversational format: a `prompt` column of [{"role": "user", ...}]."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}], "prompt_id": r["id"]}
                              for r in rows])

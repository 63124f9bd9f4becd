"""Helpers shared by the benchmarks: Hub loading with a clear error, seeded subsets, stable ids, records."""

from __future__ import annotations

import hashlib
import math
import random
from pathlib import Path

from hmxnb.data import read_json, read_jsonl  # noqa: F401  (re-exported for the benchmark loaders)


class BenchmarkDataUnavailable(RuntimeError):
    """Benchmark data could not be read (Hub unreachable, mirror file missing); the message says what to do."""


def hub_dataset(path: str, name: str | None = None, split: str = "test", **kwargs):
    """`datasets.load_dataset(path, name, split=split)`, turning any failure into one clear line."""
    import datasets

    try:
        return datasets.load_dataset(path, name, split=split, **kwargs)
    except Exception as err:  # network, auth, missing config: all mean "cannot get it from the Hub"
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BenchmarkDataUnavailable(
            f"cannot load '{path}' ({name or 'default'}/{split}) from the Hugging Face Hub ({first}); "
            "the Hub is unreachable or the dataset is missing: set `data_dir` to a local benchmark mirror"
        ) from None


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when HF_HUB_OFFLINE is set or huggingface.co cannot be reached quickly (saves datasets' slow retries)."""
    import os
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def mirror_file(data_dir: str | Path, *parts: str) -> Path:
    """Path of a file in the offline mirror, or a clear error when it is missing."""
    path = Path(data_dir, *parts)
    if not path.is_file():
        raise BenchmarkDataUnavailable(f"benchmark file not found: {path} (check `data_dir`)")
    return path


def stable_id(prefix: str, text: str) -> str:
    """Id that depends only on the text (so the Hub and the mirror give the same id): prefix + 10 hex of sha1."""
    return f"{prefix}-{hashlib.sha1(text.strip().encode('utf-8')).hexdigest()[:10]}"


def subsample(items: list[dict], limit: int | None, seed: int = 0) -> list[dict]:
    """A seeded random subset of `limit` items, kept in their original order (all items when limit is None)."""
    if limit is None or limit >= len(items):
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


def argmax(values: list[float]) -> int:
    """Index of the largest value; the first one on ties (as numpy.argmax, which lm-eval uses)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def record(benchmark: str, item: dict, model_label: str, prompt: str, choices: list[str],
           logprobs: list[float], prediction: int, correct: bool, **extra) -> dict:
    """One evaluated item, in the samples.jsonl schema shared by every benchmark."""
    return {
        "benchmark": benchmark,
        "item_id": item["item_id"],
        "model": model_label,
        "prompt": prompt,
        "choices": list(choices),
        "logprobs": [float(x) for x in logprobs],
        "prediction": int(prediction),
        "correct": bool(correct),
        **extra,
    }


def mean(values) -> float:
    """Arithmetic mean; NaN for an empty sequence."""
    values = list(values)
    return sum(values) / len(values) if values else math.nan

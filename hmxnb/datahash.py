"""Content hashes of the data files a step reads: part of the step's key (an edited prompts file makes 01-03 not up
to date) and of its records (`step.json`, `provenance.json`), so a result names the exact data it came from.

Which data a step reads is declared in hmxnb.steps (`Step.data`, passed here as `sources`); this module turns each
name into the files the loaders open with the given params. Hashing is sha256 of the whole file, remembered per
process by (path, size, mtime), so a sweep's many key computations read each file once: the offline benchmark
mirror (13 MB, 12 files) hashes in about 0.06 s on one core.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from hmxnb.data import PACKAGE_DATA
from hmxnb.embedded import sha256_of

# The files hmxnb.bench's loaders read under `data_dir` (tests/test_run.py checks this list against what
# evaluate.load_items opens). Named here, not imported, so computing a key does not import torch.
BENCH_FILES = ("truthfulqa/mc_task.json", "emobench/EU.jsonl", "emobench/EA.jsonl")
BBQ_CATEGORIES = ("Age", "Disability_status", "Nationality", "Physical_appearance", "Religion", "Sexual_orientation")
SYCOPHANCY_SUBSETS = ("sycophancy_on_nlp_survey", "sycophancy_on_philpapers2020",
                      "sycophancy_on_political_typology_quiz")
HUB = "Hugging Face Hub (not hashed)"


def _benchmark_files(data_dir: str | None) -> dict[str, Path | str]:
    """Label -> file for notebook 04's benchmark data: the mirror's files, or one HUB entry without a mirror."""
    if not data_dir:
        return {"benchmarks": HUB}
    root = Path(data_dir)
    bbq = sorted(p.stem for p in (root / "bbq").glob("*.jsonl")) or BBQ_CATEGORIES  # as bench.bbq.load_bbq
    names = [*BENCH_FILES, *(f"bbq/{c}.jsonl" for c in bbq)]
    if (root / "sycophancy").is_dir():  # as evaluate.load_items: only read when the mirror has them
        names += [f"sycophancy/{s}.jsonl" for s in SYCOPHANCY_SUBSETS]
    return {name: root / name for name in sorted(names)}


def data_files(sources: tuple[str, ...], params: dict) -> dict[str, Path | str]:
    """Label -> file (or a note, for data not read from a file) of every data source a step declares (`Step.data`)."""
    files: dict[str, Path | str] = {}
    for source in sources:
        if source == "benchmarks":
            files.update(_benchmark_files(params.get("data_dir")))
        elif source == "prompts":
            files["prompts"] = Path(params.get("prompts_file") or PACKAGE_DATA / "prompts.jsonl")
        else:
            files[source] = PACKAGE_DATA / f"{source}.jsonl"
    return files


@lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """The digest, remembered per process while the file's size and mtime stay the same."""
    return sha256_of(Path(path))


def file_sha256(path: Path) -> str:
    """sha256 of a file's content ('missing' when it cannot be read: the step's loader then names it)."""
    try:
        st = Path(path).stat()
        return _sha256(str(path), st.st_size, st.st_mtime_ns)
    except OSError:
        return "missing"


def data_hashes(sources: tuple[str, ...], params: dict) -> dict[str, str]:
    """Label -> sha256 of every data file of these sources (`Step.data`; {} for a step that reads none)."""
    return {label: f if isinstance(f, str) else file_sha256(f) for label, f in data_files(sources, params).items()}


def data_digest(hashes: dict[str, str]) -> str:
    """One short hash of `data_hashes` for the step key ('' when the step reads no data)."""
    if not hashes:
        return ""
    return hashlib.sha256("|".join(f"{k}={v}" for k, v in sorted(hashes.items())).encode()).hexdigest()[:12]


def changed_data(old: dict | None, new: dict) -> str:
    """'prompts, bbq/Age.jsonl' for the data files whose content differs, '' when none or not recorded."""
    if old is None:
        return ""
    return ", ".join(k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k))

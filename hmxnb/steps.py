"""The pipeline's steps, declared once: notebook, params, what each reads and writes, whether it spans a sweep; the
numbered notebooks found in a folder, and each step's key.

The runner takes the aggregate steps and the keys from here, hmxnb.artifacts the step folders runs are read from,
and the tests check that the notebooks, their output folders and the README's step table agree with this table.
A step's key says which run its outputs are: it covers the params, the notebook file, the content of the data files
the step reads (hashed below) and the key of the step before it, so re-running a step re-runs what follows. Where
the data lives (`LOCATION_KEYS`) is not part of it: a byte-identical mirror at another path is the same run (the
location is still recorded in the step's params and provenance).

Content hashes of the data files a step reads (the last section) are part of the step's key (an edited prompts file
makes 01-03 not up to date) and of its records (`step.json`, `provenance.json`), so a result names the exact data it
came from.

Which data a step reads is declared in its `Step.data` (passed to `data_hashes` as `sources`), each name turned into
the files the loaders open with the given params. Hashing is sha256 of the whole file, remembered per
process by (path, size, mtime), so a sweep's many key computations read each file once: the offline benchmark
mirror (13 MB, 12 files) hashes in about 0.06 s on one core.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from hmxnb.data import PACKAGE_DATA
from hmxnb.embedded import sha256_of
from hmxnb.params import params_hash
from hmxnb.paths import NOTEBOOKS


# ---------------------------------------------------------------- the steps

@dataclass(frozen=True)
class Step:
    name: str  # the notebook's file stem and the step's folder under outputs/<profile>/
    params: str
    reads: str
    writes: str
    aggregate: bool = False  # reads every run of a sweep (models x seeds): runs once, at outputs/<profile>/
    # What the runner checks (the `reads` text above is for people): the steps whose outputs this one reads (it is
    # not up to date while one of them is not finished), the data files it reads (hashed below: their content is
    # part of its key and provenance) and the files it writes at outputs/<profile>/ (marked stale with the step).
    inputs: tuple[str, ...] = ()
    data: tuple[str, ...] = ()
    reports: tuple[str, ...] = ()


STEPS = (
    Step("01_design_rubric", "`rubric_*`, `judge_*`, `contrast_*`, `reverse_mode`", "model, `hmxnb/data/*.jsonl`",
         "`metrics.json` (judge Spearman on the examples and the validation set), `samples.jsonl`, "
         "`figures/rubric_examples.png`, `figures/judge_validation.png`",
         data=("rubric_examples", "judge_validation", "prompts")),
    Step("02_train_human", "GRPOConfig keys, LoRA keys, `judge_model`, `reward_weight_*`",
         "model, `hmxnb/data/prompts.jsonl` (train split)",
         "`adapter/`, `train_log.csv`, `samples.jsonl`, `metrics.json`, "
         "`grpo_args.json` (the effective GRPO objective), "
         "`checkpoints/`, `figures/training.png`", data=("prompts",)),
    Step("03_train_reverse", "the same, `direction: reverse`", "the same", "the same", data=("prompts",)),
    Step("04_benchmarks", "`data_dir`, `bench_limit`, `bench_batch_size`, `eval_max_new_tokens`, `eval_judge_model`, "
                          "`eval_second_judge_mode`",
         "model, `02_*/adapter`, `03_*/adapter`, benchmark data, held-out prompts",
         "`samples.jsonl` (every item × model), `metrics.json`, `figures/benchmarks.png`",
         inputs=("02_train_human", "03_train_reverse"), data=("benchmarks", "prompts")),
    Step("05_compare_report", "`bootstrap_resamples`, `alpha`", "`04_*/samples.jsonl`, `02_*`/`03_*/train_log.csv`",
         "`comparisons.csv`, `summary.json`, figures; `outputs/<profile>/report.md` and `report.html`", aggregate=True,
         inputs=("02_train_human", "03_train_reverse", "04_benchmarks"), reports=("report.md", "report.html")),
)
AGGREGATE_STEPS = tuple(s.name for s in STEPS if s.aggregate)
TRAINING = {"human": "02_train_human", "reverse": "03_train_reverse"}  # direction -> its training step
BENCHMARKS = "04_benchmarks"
# params that say where data lives, not what it is: each step's key holds the content hashes of the files it reads
LOCATION_KEYS = ("data_dir", "prompts_file")


def declared(name: str) -> Step:
    """The declared step of that name; a notebook that is not one (the tests' stand-ins) reads and reports nothing."""
    return next((s for s in STEPS if s.name == name), Step(name, "", "", ""))


def readme_rows() -> list[str]:
    """The README's step table rows, as this table says they are."""
    return [f"| {i} | `{s.name}` | {s.params} | {s.reads} | {s.writes} |" for i, s in enumerate(STEPS, 1)]


def step_data(name: str, params: dict) -> dict[str, str]:
    """Label -> sha256 of every data file the step `name` reads with these params ({} for one that reads none)."""
    return data_hashes(declared(name).data, params)


def notebook_steps(notebooks_dir: Path = NOTEBOOKS) -> list[Path]:
    """The numbered notebooks `NN_name.ipynb`, in order: the pipeline's steps as files."""
    return sorted(p for p in Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb"))


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def step_key(phash: str, notebook: Path, previous_key: str, data: str = "") -> str:
    """One step's key from the params hash, its notebook's content, the previous key and its data digest."""
    text = f"{phash}|{_file_hash(notebook)}|{previous_key}" + (f"|{data}" if data else "")
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def key_params_hash(params: dict) -> str:
    """The params hash a step key holds: every key but the data locations (their files' content is hashed instead)."""
    return params_hash({k: v for k, v in params.items() if k not in LOCATION_KEYS})


def step_keys(params: dict, steps: list[Path], start: str = "start") -> dict[str, str]:
    """Step name -> key, chained: each step's key covers the params (not the data locations), its notebook, the
    content of the data files it reads and the step before it (`start` before the first: the aggregate step's
    finished sweep members)."""
    phash, keys, prev = key_params_hash(params), {}, start
    for nb in steps:
        prev = keys[nb.stem] = step_key(phash, nb, prev, data_digest(step_data(nb.stem, params)))
    return keys


# ---------------------------------------------------------------- the data files a step reads, hashed

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


"""The pipeline's steps, declared once: notebook, params, what each reads and writes, whether it spans a sweep.

The runner takes the aggregate steps from here, hmxnb.artifacts the step folders runs are read from, and the tests
check that the notebooks, their output folders and the README's step table agree with this table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    name: str  # the notebook's file stem and the step's folder under outputs/<profile>/
    params: str
    reads: str
    writes: str
    aggregate: bool = False  # reads every run of a sweep (models x seeds): runs once, at outputs/<profile>/
    # What the runner checks (the `reads` text above is for people): the steps whose outputs this one reads (it is
    # not up to date while one of them is not finished), the data files it reads (hmxnb.datahash: their content is
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
         "`adapter/`, `train_log.csv`, `samples.jsonl`, `metrics.json`, `grpo_args.json` (the effective GRPO objective), "
         "`checkpoints/`, `figures/training.png`", data=("prompts",)),
    Step("03_train_reverse", "the same, `direction: reverse`", "the same", "the same", data=("prompts",)),
    Step("04_benchmarks", "`data_dir`, `bench_limit`, `bench_batch_size`, `eval_max_new_tokens`, `eval_judge_model`",
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


def declared(name: str) -> Step:
    """The declared step of that name; a notebook that is not one (the tests' stand-ins) reads and reports nothing."""
    return next((s for s in STEPS if s.name == name), Step(name, "", "", ""))


def readme_rows() -> list[str]:
    """The README's step table rows, as this table says they are."""
    return [f"| {i} | `{s.name}` | {s.params} | {s.reads} | {s.writes} |" for i, s in enumerate(STEPS, 1)]

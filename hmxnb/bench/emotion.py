"""EmoBench (Sabour et al., ACL 2024) Emotional Understanding (EU) and Emotional Application (EA), English, as
multiple choice scored by log-likelihood.

EU has two questions per scenario (the emotion, then its cause given the gold emotion); EA one (the most
effective response or action). Question wording follows EmoBench's; unlike EmoBench, which asks the model to
generate a letter, each option is scored as the continuation `" {option}"` after `...\\nAnswer:` (lm-eval
multiple-choice style). `acc` uses summed log-probs, `acc_norm` divides by the option's length in characters
(lm-eval's `acc_norm`). EQ-Bench is not included (it needs free-text generation and score parsing).
"""

from __future__ import annotations

from hmxnb.loglik import score_continuations
from hmxnb.compare import accuracy

from .benchmark import Benchmark, from_data_dir, loglik
from .common import argmax, hub_dataset, mean, mirror_file, read_jsonl, record, subsample

NAME = "emobench"
RECORDS = {"EU": "emobench_eu", "EA": "emobench_ea"}  # the records' `benchmark`, per task

EU_EMOTION_TEMPLATE = ("Scenario: {scenario}\n"
                       "Question: What emotion(s) would {subject} ultimately feel in this situation?\nAnswer:")
EU_CAUSE_TEMPLATE = ("Scenario: {scenario}\n"
                     "Question: Why would {subject} feel {emotion} in this situation?\nAnswer:")
EA_TEMPLATE = ("Scenario: {scenario}\n"
               "Question: In this scenario, what is the most effective {kind} for {subject}?\nAnswer:")


def eu_items(row: dict) -> list[dict]:
    """The emotion question and the cause question of one EU scenario."""
    base = {"scenario": row["scenario"], "subject": row["subject"], "task": "EU"}
    return [
        {**base, "item_id": f"emobench-eu-{row['qid']}-emotion", "question_type": "emotion",
         "prompt": EU_EMOTION_TEMPLATE.format(scenario=row["scenario"], subject=row["subject"]),
         "choices": list(row["emotion_choices"]), "label": list(row["emotion_choices"]).index(row["emotion_label"])},
        {**base, "item_id": f"emobench-eu-{row['qid']}-cause", "question_type": "cause",
         "prompt": EU_CAUSE_TEMPLATE.format(scenario=row["scenario"], subject=row["subject"],
                                            emotion=row["emotion_label"]),
         "choices": list(row["cause_choices"]), "label": list(row["cause_choices"]).index(row["cause_label"])},
    ]


def ea_item(row: dict) -> dict:
    """The EA question of one scenario (`question type` is Response or Action)."""
    kind = row["question type"].lower()
    return {"item_id": f"emobench-ea-{row['qid']}", "task": "EA", "question_type": kind,
            "scenario": row["scenario"], "subject": row["subject"],
            "prompt": EA_TEMPLATE.format(scenario=row["scenario"], kind=kind, subject=row["subject"]),
            "choices": list(row["choices"]), "label": list(row["choices"]).index(row["label"])}


def _rows(data_dir: str | None, task: str) -> list[dict]:
    if data_dir is None:
        return [dict(r) for r in hub_dataset("SahandSab/EmoBench", data_files=f"{task}.jsonl", split="train")]
    return read_jsonl(mirror_file(data_dir, "emobench", f"{task}.jsonl"))


def load_emobench(data_dir: str | None, limit: int | None = None, seed: int = 0,
                  tasks: tuple[str, ...] = ("EU", "EA"), language: str = "en") -> list[dict]:
    """EmoBench items (English: 400 EU questions from 200 scenarios + 200 EA questions).

    Args:
        data_dir: offline mirror root (reads `emobench/EU.jsonl`, `emobench/EA.jsonl`); None loads the same
            files from the Hub dataset `SahandSab/EmoBench`.
        limit: keep a seeded random subset of this many questions.
    """
    items = []
    for task in tasks:
        rows = [r for r in _rows(data_dir, task) if r["language"] == language]
        for row in rows:
            items += eu_items(row) if task == "EU" else [ea_item(row)]
    return subsample(items, limit, seed)


def evaluate_emobench(model, tokenizer, items: list[dict], model_label: str, batch_size: int = 16,
                      scorer=score_continuations) -> list[dict]:
    """One record per question; adds task (EU/EA), question_type and label."""
    requests = [(it["prompt"], [" " + c for c in it["choices"]]) for it in items]
    scores = scorer(model, tokenizer, requests, batch_size=batch_size)
    return [record(RECORDS[it["task"]], it, model_label, it["prompt"], it["choices"], lls,
                   argmax(lls), argmax(lls) == it["label"], task=it["task"], question_type=it["question_type"],
                   label=it["label"])
            for it, lls in zip(items, scores)]


def _acc_norm(r: dict) -> bool:
    normed = [ll / len(c) for ll, c in zip(r["logprobs"], r["choices"])]
    return argmax(normed) == r["label"]


def metrics_emobench(records: list[dict]) -> dict:
    """acc and acc_norm overall, per task (EU, EA) and per question type (`acc/EU/emotion`, ...)."""
    out = {"acc": mean(r["correct"] for r in records), "acc_norm": mean(_acc_norm(r) for r in records),
           "n": len(records)}
    for task in sorted({r["task"] for r in records}):
        sub = [r for r in records if r["task"] == task]
        out[f"acc/{task}"] = mean(r["correct"] for r in sub)
        out[f"acc_norm/{task}"] = mean(_acc_norm(r) for r in sub)
        for qtype in sorted({r["question_type"] for r in sub}):
            out[f"acc/{task}/{qtype}"] = mean(r["correct"] for r in sub if r["question_type"] == qtype)
    return out


BENCHMARK = Benchmark(
    NAME, from_data_dir(load_emobench), loglik(evaluate_emobench), metrics_emobench,
    headline=(("acc/EU", True), ("acc/EA", True)),
    compared=(accuracy(RECORDS["EU"], "acc"), accuracy(RECORDS["EA"], "acc")),
    defines="EmoBench: a scenario and a question about the emotion someone feels (**EU**, emotional understanding) or "
            "the best action (**EA**, emotional application); the choice with the highest log-likelihood is the "
            "model's answer. **acc** = share correct per task (acc_norm divides each log-likelihood by the choice's "
            "length first).",
)

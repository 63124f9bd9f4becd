"""What a benchmark is, in one object: how its items load, how a model is evaluated on them, its per-item metrics,
what notebook 04 shows of it and what notebook 05 compares (each compared metric naming the paper claim it feeds).

Each benchmark module under hmxnb/bench/ defines its `Benchmark` next to its loader, prompt and metric; the list
of them, in run order, is hmxnb.bench.registry.REGISTRY, which notebooks 04 (hmxnb.evaluate) and 05 (hmxnb.compare,
hmxnb.claims, hmxnb.report) read. Adding a benchmark is one module and one line there.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Callable

import pandas as pd

from hmxnb.chat import ChatSettings
from hmxnb.params import clip
from hmxnb.compare import Metric


@dataclass(frozen=True)
class EvalContext:
    """What notebook 04 gives every benchmark's `evaluate`, besides the model, tokenizer, items and label.

    Args:
        use: `use(label)` -> context in which the model behaves as `label` (adapters switched; "base": none).
        batch_size: params `bench_batch_size`.
        scorer: the log-likelihood scorer (hmxnb.loglik.score_continuations, its progress bar off).
        judge_fn: the fixed evaluation judge, `judge_fn(prompts, replies) -> (scores, rewards, criteria)`.
        second_judge_fn: the second evaluation judge (params eval_second_judge_mode), the same signature; None = none.
        max_new_tokens: params `eval_max_new_tokens`, for benchmarks that generate.
        chat: the loaded model's ChatSettings (hmxnb.chat), for benchmarks that render chat prompts.
    """

    use: Callable[[str], AbstractContextManager]
    batch_size: int
    scorer: Callable
    judge_fn: Callable | None = None
    second_judge_fn: Callable | None = None
    max_new_tokens: int = 64
    chat: ChatSettings | None = None


@dataclass(frozen=True)
class Benchmark:
    """One benchmark, everything the notebooks need of it.

    Args:
        name: its key in notebook 04's metrics (metrics.json), table and log.
        load: `load(params, loaded) -> items`; `loaded` holds the item sets of the benchmarks listed before it in
            the registry (the sycophancy probes are built on TruthfulQA's items).
        evaluate: `evaluate(model, tokenizer, items, label, ctx: EvalContext) -> records` (hmxnb.bench.common.record
            rows, each with its `benchmark` and `item_id`; notebook 05 pairs models on those).
        metrics: `metrics(records) -> {key: value}`, computed from this benchmark's records alone.
        headline: ((metrics key, higher is better: True / False / None), ...) shown in notebook 04.
        compared: the hmxnb.compare.Metric objects notebook 05 compares, each with its kind and claim.
        items: key of its item set (default: `name`); benchmarks that share one (the two sycophancy probes) load
            it once.
        skipped: said in notebook 04 when `load` finds no items (e.g. data only on the Hugging Face Hub).
        defines: markdown that defines its metrics, shown with its one item in notebook 04.
        view: `view(records) -> ItemView`, one item as the models saw it and what they scored; default
            `choice_view` on the records of its first compared metric (choices with each model's log-probs).
    """

    name: str
    load: Callable[[dict, dict], list]
    evaluate: Callable
    metrics: Callable[[list], dict]
    headline: tuple[tuple[str, bool | None], ...] = ()
    compared: tuple[Metric, ...] = ()
    items: str = ""
    skipped: str = ""
    defines: str = ""
    view: Callable[[list], "ItemView"] | None = None

    @property
    def item_set(self) -> str:
        """Key of the items this benchmark runs on."""
        return self.items or self.name

    def one_item(self, records: list[dict]) -> "ItemView | None":
        """Its first item as the models saw it and what each scored, with its metrics defined; None without
        records of it (a skipped benchmark)."""
        if self.view is not None:
            shown = self.view(records)
        elif self.compared:
            shown = choice_view(records, self.compared[0].benchmark)
        else:
            return None
        return None if shown is None else replace(shown, title=self.name, defines=self.defines)


@dataclass(frozen=True)
class ItemView:
    """One benchmark item for notebook 04: the prompt as the first model read it (chat template included), a table
    of what each model scored on it, and the metric definitions (`defines`, markdown)."""

    title: str
    prompt: str
    table: pd.DataFrame
    defines: str = ""


def choice_roles(rec: dict) -> dict[int, str]:
    """What each choice of a multiple-choice record is, from the fields the benchmarks write: correct (`labels`,
    `label`, `answer`), the stereotyped and the unknown answer (BBQ), the one the user suggested (sycophancy)."""
    roles: dict[int, list[str]] = {}
    if "labels" in rec:
        for i, flag in enumerate(rec["labels"]):
            if flag:
                roles.setdefault(i, []).append("true")
    for key, name in (("label", "correct"), ("answer", "correct"), ("biased_choice", "stereotyped"),
                      ("unknown_choice", "unknown"), ("suggested", "user's suggestion")):
        if isinstance(rec.get(key), int) and not isinstance(rec.get(key), bool) and rec[key] >= 0:
            roles.setdefault(rec[key], []).append(name)
    return {i: ", ".join(names) for i, names in roles.items()}


def choice_view(records: list[dict], record_name: str) -> ItemView | None:
    """The first item of `record_name`'s records: one row per choice, what it is, and each model's log-probability
    of it (per condition where the benchmark has two, e.g. before and after "Are you sure?"), ◀ on each pick."""
    rows = [r for r in records if r["benchmark"] == record_name]
    if not rows:
        return None
    item = [r for r in rows if r["item_id"] == rows[0]["item_id"]]
    first = item[0]
    table = pd.DataFrame({"choice": [clip(c, 90) for c in first["choices"]]})
    roles = choice_roles(first)
    table["is"] = [roles.get(i, "") for i in range(len(first["choices"]))]
    for r in item:
        column = r["model"] + (f" ({r['condition']})" if r.get("condition") else "")
        table[column] = [f"{lp:.2f}" + (" ◀" if i == r["prediction"] else "") for i, lp in enumerate(r["logprobs"])]
    prompts = list(dict.fromkeys(r["prompt"] for r in item if r["model"] == first["model"]))
    return ItemView(record_name, "\n\n— then —\n\n".join(prompts), table)


def loglik(evaluate_fn: Callable, chat: bool = False) -> Callable:
    """A log-likelihood benchmark's `evaluate_<bench>(model, tokenizer, items, label, batch_size, scorer=)` as a
    registry `evaluate`: run with the model as `label`, batched, with the quiet scorer (and, `chat`, `chat=`)."""

    def evaluate(model, tokenizer, items: list, label: str, ctx: EvalContext) -> list[dict]:
        with ctx.use(label):
            return evaluate_fn(model, tokenizer, items, label, ctx.batch_size, scorer=ctx.scorer,
                               **({"chat": ctx.chat} if chat else {}))

    evaluate.__name__ = getattr(evaluate_fn, "__name__", "evaluate")
    return evaluate


def from_data_dir(load_fn: Callable) -> Callable:
    """A `load_<bench>(data_dir, limit=, seed=)` as a registry `load`: params `data_dir` (None: the Hub),
    `bench_limit` (a seeded subset; 0 = the full set) and `seed`."""

    def load(params: dict, loaded: dict) -> list:
        return load_fn(params["data_dir"], limit=params["bench_limit"] or None, seed=params["seed"])

    load.__name__ = getattr(load_fn, "__name__", "load")
    return load

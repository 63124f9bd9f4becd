"""Notebook 04's orchestration: load the base model with the 02/03 adapters and run every benchmark on each.

Which benchmarks run, in which order, how their items load and what notebook 04 shows of each: the registry
(hmxnb.bench.registry); this module only drives it.

One base model in memory; the adapters are PEFT adapters switched by name ("human", "reverse"); "base" runs with
adapters disabled. The fixed judge for feeling expression is params `eval_judge_model`: "base" (default) is the base
model with adapters off, i.e. the frozen training judge, which measures how the training reward transfers to
unseen prompts; any Hub id or local path loads that model as an independent judge.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from hmxnb.bench import registry
from hmxnb.bench.benchmark import EvalContext
from hmxnb.compare import MODELS
from hmxnb.judge import JudgeConfig
from hmxnb.loglik import score_continuations
from hmxnb.models import LoadedModel, adapters_off, load_model, prepare_for_scoring
from hmxnb.params import second_judge_mode


def load_with_adapters(params: dict, adapters: dict[str, str | Path]) -> LoadedModel:
    """The model with each adapter loaded under its label (a LoadedModel: `model, tokenizer = ...` unpacks it);
    missing adapter folders raise a clear error.

    The model comes back in the mode all its scoring and generation run in (`prepare_for_scoring`: Unsloth's
    inference kernels on that backend), so base and adapters are scored alike.
    """
    from peft import PeftModel

    for label, path in adapters.items():
        if not (Path(path) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"adapter '{label}' not found at {path}: run its training notebook first")
    loaded = load_model(params)
    model, items = loaded.model, list(adapters.items())
    if items:
        model = PeftModel.from_pretrained(model, str(items[0][1]), adapter_name=items[0][0])
        for label, path in items[1:]:
            model.load_adapter(str(path), adapter_name=label)
    return replace(loaded, model=prepare_for_scoring(model, loaded.backend))


def use(model, label: str):
    """Context in which `model` behaves as `label`: "base" disables adapters, any other label activates that adapter."""
    if label == "base":
        return adapters_off(model)
    model.set_adapter(label)
    return nullcontext()


def _judging_model(loaded: LoadedModel, params: dict) -> LoadedModel:
    """params `eval_judge_model`: "base" = `loaded` (its adapters are switched off to judge), else loaded here."""
    if params["eval_judge_model"] == "base":
        return loaded
    judging = load_model({**params, "model_name_or_path": params["eval_judge_model"]})
    prepare_for_scoring(judging.model, judging.backend)
    return judging


def evaluation_judges(loaded: LoadedModel, params: dict) -> tuple:
    """(judge_fn, second_judge_fn or None): the evaluation judge in params judge_mode and, with params
    eval_second_judge_mode, the same judging model (loaded once) in that other mode."""
    judging = _judging_model(loaded, params)
    second = second_judge_mode(params)
    return fixed_judge(loaded, params, judging=judging), (fixed_judge(loaded, params, second, judging) if second
                                                           else None)


def fixed_judge(loaded: LoadedModel, params: dict, mode: str | None = None, judging: LoadedModel | None = None):
    """`judge_fn(prompts, replies)` scoring in the human-like direction with the evaluation judge.

    params `eval_judge_model`: "base" = `loaded` with adapters off (the frozen training judge: same weights, mode,
    rubric and prompt), else a Hub id or local path loaded once here (same judge mode and rubric). `mode` replaces
    params judge_mode (the second evaluation judge); `judging` is an evaluation judge already loaded.
    """
    config = JudgeConfig.from_params(params if mode is None else {**params, "judge_mode": mode})
    judging = _judging_model(loaded, params) if judging is None else judging

    def judge_fn(prompts, replies):
        with use(judging.model, "base"):
            res = config.score(judging, prompts, replies, "human")
        return res.scores, config.rubric.reward(res.scores, "human", res.criteria), res.criteria

    return judge_fn


def load_items(params: dict, log=print) -> dict[str, list]:
    """Every registered benchmark's items by item set (hmxnb.bench.registry), the held-out prompts of feeling
    expression included: seeded subsets of `bench_limit` items (0 = full sets). A set that cannot be had (opinion
    sycophancy offline) is empty, and the benchmark says why."""
    items = {}
    for b in registry.registered():
        if b.item_set not in items:
            items[b.item_set] = b.load(params, items)
            if not items[b.item_set] and b.skipped:
                log(b.skipped)
    return items


def run_all(loaded: LoadedModel, items: dict, params: dict, labels=MODELS, log=print) -> tuple[list[dict], dict, dict]:
    """Evaluate every model label on every registered benchmark with items (a set missing or empty is skipped, e.g.
    opinion sycophancy without the Hub). Returns (records, metrics[label][bench], seconds[bench])."""
    model, tokenizer = loaded
    judge_fn, second_judge_fn = evaluation_judges(loaded, params)
    ctx = EvalContext(use=partial(use, model), batch_size=params["bench_batch_size"],
                      scorer=partial(score_continuations, progress=False, reuse=loaded.prefix_reuse), judge_fn=judge_fn,
                      second_judge_fn=second_judge_fn,
                      max_new_tokens=params["eval_max_new_tokens"], chat=loaded.chat)
    records, metrics, seconds = [], {label: {} for label in labels}, {}
    todo = [b for b in registry.registered() if items.get(b.item_set)]
    bar = tqdm(total=len(labels) * len(todo), desc="benchmarks")  # the one bar: the benchmarks' own are off
    for label in labels:
        log(f"--- {label} ---")
        for b in todo:
            bar.set_postfix_str(f"{label} · {b.name}", refresh=False)
            t0 = time.time()
            recs = b.evaluate(model, tokenizer, items[b.item_set], label, ctx)
            seconds[b.name] = seconds.get(b.name, 0.0) + time.time() - t0
            records += recs
            metrics[label][b.name] = b.metrics(recs)
            log(f"{b.name:22s} {time.time() - t0:6.1f}s  " + _short(metrics[label][b.name]))
            bar.update()
    bar.close()
    return records, metrics, seconds


def _short(m: dict) -> str:
    keys = [k for k in m if "/" not in k and k != "n"][:5]
    return "  ".join(f"{k}={m[k]:.3f}" for k in keys if isinstance(m[k], (int, float)) and not np.isnan(m[k]))


def headline_table(metrics: dict):
    """Model x headline metric DataFrame (rows: benchmark/metric; columns: models), the registry's headline keys."""
    import pandas as pd

    rows = []
    for bench_name, key, better in registry.headline():
        vals = {label: metrics[label].get(bench_name, {}).get(key) for label in metrics}
        if all(v is None for v in vals.values()):
            continue
        arrow = {True: "↑", False: "↓", None: ""}[better]
        rows.append({"benchmark": bench_name, "metric": f"{key} {arrow}".strip(), **vals})
    return pd.DataFrame(rows).set_index(["benchmark", "metric"])

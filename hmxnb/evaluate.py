"""Notebook 04's orchestration: load the base model with the 02/03 adapters and run every benchmark on each.

One base model in memory; the adapters are PEFT adapters switched by name ("human", "reverse"); "base" runs with
adapters disabled. The fixed judge for feeling expression is params `eval_judge_model`: "base" (default) is the base
model with adapters off, i.e. the frozen training judge, which measures how the training reward transfers to
unseen prompts; any Hub id or local path loads that model as an independent judge.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from hmxnb import bench
from hmxnb.bench.expression import generate_replies, load_expression_items, metrics_expression, score_expression
from hmxnb.compare import MODELS
from hmxnb.data import load_prompts
from hmxnb.judge import judge
from hmxnb.loglik import score_continuations
from hmxnb.models import load_model, prepare_for_scoring
from hmxnb.rubric import Rubric



def load_with_adapters(params: dict, adapters: dict[str, str | Path]):
    """(model, tokenizer) with each adapter loaded under its label; missing adapter folders raise a clear error.

    The model comes back in the mode all its scoring and generation run in (`prepare_for_scoring`: Unsloth's
    inference kernels on that backend), so base and adapters are scored alike.
    """
    from peft import PeftModel

    for label, path in adapters.items():
        if not (Path(path) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"adapter '{label}' not found at {path}: run its training notebook first")
    model, tok, backend = load_model(params)
    items = list(adapters.items())
    if items:
        model = PeftModel.from_pretrained(model, str(items[0][1]), adapter_name=items[0][0])
        for label, path in items[1:]:
            model.load_adapter(str(path), adapter_name=label)
    return prepare_for_scoring(model, backend), tok


def use(model, label: str):
    """Context in which `model` behaves as `label`: "base" disables adapters, any other label activates that adapter."""
    if label == "base":
        return model.disable_adapter() if hasattr(model, "disable_adapter") else nullcontext()
    model.set_adapter(label)
    return nullcontext()


def fixed_judge(model, tokenizer, params: dict):
    """`judge_fn(prompts, replies)` scoring in the human-like direction with the evaluation judge.

    params `eval_judge_model`: "base" = `model` with adapters off (the frozen training judge: same weights, mode,
    rubric and prompt), else a Hub id or local path loaded once here (same judge mode and rubric).
    """
    rubric = Rubric.from_params(params)
    if params["eval_judge_model"] != "base":
        model, tokenizer, backend = load_model({**params, "model_name_or_path": params["eval_judge_model"]})
        prepare_for_scoring(model, backend)

    def judge_fn(prompts, replies):
        with use(model, "base"):
            res = judge(model, tokenizer, rubric, prompts, replies, direction="human", mode=params["judge_mode"],
                        few_shot=params["judge_few_shot"], batch_size=params["judge_batch_size"],
                        max_new_tokens=params["judge_max_new_tokens"])
        return res.scores, rubric.reward(res.scores, "human", res.criteria), res.criteria

    return judge_fn


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


def load_items(params: dict, log=print) -> dict[str, list]:
    """Every benchmark's items, the held-out prompts of feeling expression included: seeded subsets of `bench_limit`
    items (0 = full sets). Missing sets are skipped with a message."""
    limit = params["bench_limit"] or None
    seed, data_dir = params["seed"], params["data_dir"]
    items = {}
    tqa = bench.load_truthfulqa(data_dir, limit=limit, seed=seed)
    items["truthfulqa"] = tqa
    items["bbq"] = bench.load_bbq(data_dir, limit=limit, seed=seed)
    items["sycophancy"] = bench.mc_items_from_truthfulqa(tqa, seed=seed)
    if data_dir and (Path(data_dir) / "sycophancy").is_dir():
        items["anthropic_sycophancy"] = bench.load_anthropic_sycophancy(data_dir, limit=limit, seed=seed, missing_ok=True)
    elif hub_reachable():
        items["anthropic_sycophancy"] = bench.load_anthropic_sycophancy(None, limit=limit, seed=seed, missing_ok=True)
    else:
        items["anthropic_sycophancy"] = []
    if not items["anthropic_sycophancy"]:
        log("opinion sycophancy (Perez et al. 2022) skipped: it needs the Hugging Face Hub and is not in the offline mirror")
    items["emobench"] = bench.load_emobench(data_dir, limit=limit, seed=seed)
    heldout = load_prompts(params["prompts_file"], split="heldout")
    items["expression"] = load_expression_items(heldout, limit=limit, seed=seed)
    return items


# (name in metrics, items key, evaluate_<bench>, metrics_<bench>): the log-likelihood benchmarks, in run order
SCORED_BENCHMARKS = [
    ("truthfulqa", "truthfulqa", bench.evaluate_truthfulqa, bench.metrics_truthfulqa),
    ("bbq", "bbq", bench.evaluate_bbq, bench.metrics_bbq),
    ("are_you_sure", "sycophancy", bench.evaluate_are_you_sure, bench.metrics_are_you_sure),
    ("suggested_answer", "sycophancy", bench.evaluate_suggested_answer, bench.metrics_suggested_answer),
    ("anthropic_sycophancy", "anthropic_sycophancy", bench.evaluate_anthropic_sycophancy, bench.metrics_anthropic_sycophancy),
    ("emobench", "emobench", bench.evaluate_emobench, bench.metrics_emobench),
]


def run_all(model, tokenizer, items: dict, params: dict, labels=MODELS, log=print) -> tuple[list[dict], dict, dict]:
    """Evaluate every model label on every benchmark. Returns (records, metrics[label][bench], seconds[bench])."""
    bs = params["bench_batch_size"]
    judge_fn = fixed_judge(model, tokenizer, params)
    records, metrics, seconds = [], {label: {} for label in labels}, {}
    todo = [b for b in SCORED_BENCHMARKS if items[b[1]]]  # e.g. opinion sycophancy needs the Hub
    bar = tqdm(total=len(labels) * (len(todo) + 1), desc="benchmarks")  # the one bar: the benchmarks' own are off
    quiet = partial(score_continuations, progress=False)
    for label in labels:
        log(f"--- {label} ---")
        with use(model, label):
            for name, items_key, evaluate_fn, metrics_fn in todo:
                bar.set_postfix_str(f"{label} · {name}", refresh=False)
                t0 = time.time()
                recs = evaluate_fn(model, tokenizer, items[items_key], label, bs, scorer=quiet)
                seconds[name] = seconds.get(name, 0.0) + time.time() - t0
                records += recs
                metrics[label][name] = metrics_fn(recs)
                log(f"{name:22s} {time.time() - t0:6.1f}s  " + _short(metrics[label][name]))
                bar.update()
            bar.set_postfix_str(f"{label} · expression", refresh=False)
            t0 = time.time()
            replies, cut = generate_replies(model, tokenizer, [it["prompt"] for it in items["expression"]],
                                            params["eval_max_new_tokens"], bs, with_truncation=True, progress=False)
        recs = score_expression(items["expression"], replies, label, judge_fn, cut)  # the fixed evaluation judge
        seconds["expression"] = seconds.get("expression", 0.0) + time.time() - t0
        records += recs
        metrics[label]["expression"] = metrics_expression(recs)
        log(f"{'expression':22s} {time.time() - t0:6.1f}s  " + _short(metrics[label]["expression"]))
        bar.update()
    bar.close()
    return records, metrics, seconds


def _short(m: dict) -> str:
    keys = [k for k in m if "/" not in k and k != "n"][:5]
    return "  ".join(f"{k}={m[k]:.3f}" for k in keys if isinstance(m[k], (int, float)) and not np.isnan(m[k]))


# (benchmark, metric key, higher is better) shown in notebook 04's table and figure
HEADLINE = [
    ("truthfulqa", "mc1", True), ("truthfulqa", "mc2", True),
    ("bbq", "acc_ambig", True), ("bbq", "acc_disambig", True), ("bbq", "s_dis", None), ("bbq", "s_amb", None),
    ("are_you_sure", "acc_before", True), ("are_you_sure", "acc_after", True), ("are_you_sure", "flip_rate", False),
    ("suggested_answer", "acc_neutral", True), ("suggested_answer", "acc_suggested", True), ("suggested_answer", "acc_drop", False),
    ("anthropic_sycophancy", "sycophancy_rate", False),
    ("emobench", "acc/EU", True), ("emobench", "acc/EA", True),
    ("expression", "expression_score", None), ("expression", "affect_statements", None),
    ("expression", "reply_words", None), ("expression", "distinct_2", None), ("expression", "empty_share", None),
    ("expression", "repetitive_share", None), ("expression", "truncated_share", None),
]


def headline_table(metrics: dict):
    """Model x headline metric DataFrame (rows: benchmark/metric; columns: models)."""
    import pandas as pd

    rows = []
    for bench_name, key, better in HEADLINE:
        vals = {label: metrics[label].get(bench_name, {}).get(key) for label in metrics}
        if all(v is None for v in vals.values()):
            continue
        arrow = {True: "↑", False: "↓", None: ""}[better]
        rows.append({"benchmark": bench_name, "metric": f"{key} {arrow}".strip(), **vals})
    return pd.DataFrame(rows).set_index(["benchmark", "metric"])

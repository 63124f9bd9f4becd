"""The measuring parts of `gpu_check.py`, each run in its own process by `gpu_check.py --part NAME`.

Why one process per part: Unsloth patches transformers / TRL / PEFT on import, so an Unsloth arm and a plain arm
cannot share a process, and a part that hangs or runs out of memory must not take the others with it. Every part
writes what it has measured so far to its result file (`Recorder`) after each stage, so a part cut by its time limit
still reports its import and load seconds.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
from pathlib import Path

from gpu_models import ENGINE_RUNS, NB04, TRAIN_PARTS, load_colab_params

GiB = 2**30


class Recorder:
    """A part's result dict, rewritten atomically to its JSON file at every update (a killed part keeps its record)."""

    def __init__(self, path: str | Path):
        self.path, self.data = Path(path), {}

    def __call__(self, **values) -> dict:
        self.data.update(values)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.path)
        return self.data


def environment() -> dict:
    """Device and package versions of this process (the unzipped wheels on PYTHONPATH keep their dist-info)."""
    from importlib import metadata

    import torch

    versions = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "unsloth", "unsloth_zoo",
                 "bitsandbytes", "torchao"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cuda = torch.cuda.is_available()
    return {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "versions": versions,
            "capability": list(torch.cuda.get_device_capability(0)) if cuda else None}


def memory() -> dict:
    """Peak GPU memory (allocated / reserved by torch) and this process's peak resident memory, in GiB."""
    import torch

    cuda = torch.cuda.is_available()
    return {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GiB,
            "peak_vram_allocated_gib": torch.cuda.max_memory_allocated() / GiB if cuda else None,
            "peak_vram_reserved_gib": torch.cuda.max_memory_reserved() / GiB if cuda else None}


def start(rec: Recorder, args) -> None:
    """Import hmxnb (Unsloth first, unless HMXNB_IMPORT_UNSLOTH=0), transformers, PEFT and TRL's trainer, timed."""
    t = time.time()
    import hmxnb  # noqa: F401  (imports Unsloth when installed and allowed)
    import peft  # noqa: F401
    import transformers  # noqa: F401
    from trl import GRPOConfig, GRPOTrainer  # noqa: F401  (trl imports lazily: load the trainer now)

    from hmxnb import UNSLOTH_IMPORT_ERROR

    rec(rehearsal=args.rehearse, import_s=time.time() - t, unsloth_import_error=UNSLOTH_IMPORT_ERROR,
        hmxnb_import_unsloth=os.environ.get("HMXNB_IMPORT_UNSLOTH", "1"), **environment())


def load(params: dict, rec: Recorder, expected: str, for_training: bool = False):
    """hmxnb.models.load_model, timed; stops when the backend is not the one this part is about (GPU mode)."""
    from hmxnb.models import load_model

    t = time.time()
    loaded = load_model(params, for_training=for_training)
    backend = loaded.backend
    rec(backend=backend, expected_backend=expected, load_s=time.time() - t, precision=loaded.precision,
        prefix_reuse=loaded.prefix_reuse)
    if not rec.data["rehearsal"] and backend != expected:
        raise RuntimeError(f"backend {backend}, expected {expected} (unsloth import error: "
                           f"{rec.data.get('unsloth_import_error')})")
    return loaded


# the trainer fields that decide the GRPO objective and the batch (issue 20: Unsloth sets some on its own)
ARG_FIELDS = ("loss_type", "beta", "epsilon", "epsilon_high", "mask_truncated_completions", "scale_rewards",
              "weight_decay", "optim", "learning_rate", "bf16", "fp16", "temperature", "top_p", "top_k",
              "num_generations", "per_device_train_batch_size", "gradient_accumulation_steps", "generation_batch_size",
              "max_completion_length", "use_vllm")


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if isinstance(x, (int, float)) and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else None


def _time_generate(model) -> list[float]:
    """Seconds of each `model.generate` call from now on (TRL generates through the policy's `generate`)."""
    import functools

    calls, inner = [], model.generate

    @functools.wraps(inner)  # keeps the name Unsloth checks (unsloth_fast_generate)
    def timed(*a, **kw):
        t = time.perf_counter()
        try:
            return inner(*a, **kw)
        finally:
            calls.append(time.perf_counter() - t)

    model.generate = timed
    return calls


def _column(log, name: str) -> list:
    return [float(x) for x in log[name].dropna()] if name in log else []


def step_numbers(log, gen_calls: list[float]) -> dict:
    """s/step (steady: steps 2.., step 1 compiles / warms up), first step, generation and judge seconds per step."""
    times, judge = _column(log, "step_time"), _column(log, "judge/seconds")
    return {"steps": len(times), "step_times_s": times, "first_step_s": times[0] if times else None,
            "s_per_step": _mean(times[1:]) if len(times) > 1 else None,
            "generation_s": gen_calls, "generation_s_per_step": _mean(gen_calls[1:] or gen_calls),
            "judge_s": judge, "judge_s_per_step": _mean(judge[1:] or judge),
            "clipped_ratio": _mean(_column(log, "completions/clipped_ratio")),
            "reward_last": (_column(log, "reward") or [None])[-1], "loss": _column(log, "loss"),
            "grad_norm": _column(log, "grad_norm")}


def effective_args(trainer) -> dict:
    """The trainer's own view of the objective and batch, whatever grpo_args.json says or holds."""
    args = trainer.args
    out = {f: getattr(args, f, None) for f in ARG_FIELDS}
    out = {k: v if isinstance(v, (int, float, str, bool, type(None))) else str(v) for k, v in out.items()}
    return {**out, "trainer_class": f"{type(trainer).__module__}.{type(trainer).__name__}",
            "config_class": f"{type(args).__module__}.{type(args).__name__}"}


def read_grpo_args(out_dir: Path):
    """The `grpo_args.json` hmxnb.train.make_trainer writes into its out_dir (None where this version does not)."""
    for path in (out_dir / "grpo_args.json", out_dir / "checkpoints" / "grpo_args.json"):
        if path.is_file():
            return json.loads(path.read_text())
    return None


def part_train(args, rec: Recorder) -> None:
    """4 GRPO steps through hmxnb's own load_model / make_trainer / log_frame on one backend and shape."""
    import shutil

    shape, extra, expected = TRAIN_PARTS[args.part]
    start(rec, args)
    params = load_colab_params(Path(args.models) / shape, args.rehearse, **extra)
    rec(shape=shape)
    loaded = load(params, rec, expected, for_training=True)
    from hmxnb.train import log_frame, make_trainer

    work = Path(args.models) / "work" / args.part
    shutil.rmtree(work, ignore_errors=True)
    t = time.time()
    trainer, _ = make_trainer(params, work, loaded)
    rec(trainer_build_s=time.time() - t, effective_args=effective_args(trainer), grpo_args=read_grpo_args(work),
        unsloth_in_sys_modules="unsloth" in sys.modules)
    gen_calls = _time_generate(trainer.model)
    t = time.time()
    trainer.train()
    rec(train_s=time.time() - t, **step_numbers(log_frame(trainer.state.log_history), gen_calls), **memory(),
        grpo_args=read_grpo_args(work), unsloth_in_sys_modules="unsloth" in sys.modules)


def engine_requests(params: dict, tok, chat=None, n: int = 24) -> tuple[list, str]:
    """n TruthfulQA requests as the benchmark builds them, or (no data) the judge-validation replies per prompt."""
    if params["data_dir"]:
        from hmxnb.bench.truthfulqa import TARGET_DELIMITER, build_prompt, load_truthfulqa

        items = load_truthfulqa(params["data_dir"], limit=n, seed=params["seed"])
        return [(build_prompt(it), [TARGET_DELIMITER + c for c in dict.fromkeys(it["mc1_choices"] + it["mc2_choices"])])
                for it in items], "truthfulqa"
    from hmxnb.chat import render
    from hmxnb.data import load_judge_validation

    replies = {}
    for row in load_judge_validation():
        replies.setdefault(row["prompt"], []).append(row["reply"])
    requests = [(render(tok, [{"role": "user", "content": p}], chat=chat), r) for p, r in list(replies.items())[:n]]
    return requests, "judge_validation"


def compare_scorers(model, tok, requests: list, batch_size: int) -> dict:
    """The engine (prefix reuse forced on) against the one-sequence reference path: differences and seconds."""
    from hmxnb.loglik import score_continuations, score_continuations_plain

    score_continuations_plain(model, tok, requests[:2], progress=False)  # warm-up: CUDA context, kernels
    t = time.time()
    plain = [x for row in score_continuations_plain(model, tok, requests, progress=False) for x in row]
    out = {"plain_s": time.time() - t, "mean_abs_logprob": _mean([abs(x) for x in plain])}
    try:
        t = time.time()
        rows = score_continuations(model, tok, requests, batch_size, progress=False, reuse=True)  # whatever was decided
        fast = [x for row in rows for x in row]
        diff = [abs(a - b) for a, b in zip(fast, plain)]
        out.update(engine_s=time.time() - t, max_abs_diff=max(diff), mean_abs_diff=_mean(diff), engine_error=None)
        out["speedup"] = out["plain_s"] / out["engine_s"]
    except Exception as err:  # a finding (issue 20, item 2), not a crash of the check
        out["engine_error"] = f"{type(err).__name__}: {err}"
    return out


def part_engine(args, rec: Recorder) -> None:
    """hmxnb.loglik's engine vs its plain path on one backend (0.6B shape); under Unsloth also after for_inference."""
    start(rec, args)
    params = load_colab_params(Path(args.models) / "qwen3-0.6b", args.rehearse, **ENGINE_RUNS[args.backend])
    loaded = load(params, rec, args.backend)
    (model, tok), backend = loaded, loaded.backend
    model.eval()
    requests, source = engine_requests(params, tok, loaded.chat)
    rec(shape="qwen3-0.6b", request_source=source, requests=len(requests),
        continuations=sum(len(c) for _, c in requests))
    rec(default=compare_scorers(model, tok, requests, params["bench_batch_size"]))
    if backend == "unsloth":
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(model)
        rec(for_inference=compare_scorers(model, tok, requests, params["bench_batch_size"]))
    rec(**memory())


def _expression_only(params: dict) -> dict:
    """Notebook 04's items without benchmark data: the log-likelihood benchmarks empty (run_all skips them)."""
    from hmxnb.bench.expression import load_expression_items
    from hmxnb.data import load_prompts

    empty = {k: [] for k in ("truthfulqa", "bbq", "sycophancy", "anthropic_sycophancy", "emobench")}
    return {**empty, "expression": load_expression_items(load_prompts(params["prompts_file"], split="heldout"))}


def _labels_differ(records: list[dict]) -> bool | None:
    """Whether the adapters changed anything: TruthfulQA log-probs (or, without data, replies) differ from base's."""
    by = {}
    for r in records:
        if r["benchmark"] in ("truthfulqa_mc1", "feeling_expression"):
            by.setdefault(r["model"], []).append(r.get("logprobs") or r.get("completion"))
    base = by.get("base")
    return None if base is None else any(v != base for k, v in by.items() if k != "base")


def part_nb04(args, rec: Recorder) -> None:
    """Notebook 04's path (hmxnb.evaluate): base + two adapters, every benchmark with data, reply generation."""
    start(rec, args)
    models = Path(args.models)
    limit, tokens = (4, 16) if args.rehearse else (12, 48)
    params = load_colab_params(models / "qwen3-0.6b", args.rehearse, bench_limit=limit, eval_max_new_tokens=tokens,
                               **NB04)
    from hmxnb.evaluate import MODELS, load_items, load_with_adapters, run_all
    from hmxnb.models import backend_for

    adapters = json.loads((models / "build.json").read_text())["record"]["adapters"]
    backend = backend_for(params["load_in_4bit"], params["use_unsloth"])  # what load_model picks here
    if not args.rehearse and backend != "unsloth":
        raise RuntimeError(f"backend {backend}, expected unsloth ({rec.data.get('unsloth_import_error')})")
    t = time.time()
    loaded = load_with_adapters(params, adapters)
    rec(shape="qwen3-0.6b", backend=backend, load_s=time.time() - t, data_dir=params["data_dir"],
        prefix_reuse=loaded.prefix_reuse)
    items = load_items(params) if params["data_dir"] else _expression_only(params)
    items["expression"] = items["expression"][:limit]  # held-out prompts cut to bench_limit, for time
    rec(items={k: len(v) for k, v in items.items()})
    t = time.time()
    records, metrics, seconds = run_all(loaded, items, params, labels=MODELS)
    bad = [f"{m}/{b}/{k}" for m, bs in metrics.items() for b, ks in bs.items() for k, v in ks.items()
           if isinstance(v, float) and not math.isfinite(v)]
    rec(run_all_s=time.time() - t, seconds=seconds, records=len(records), labels=list(metrics),
        adapters_change_outputs=_labels_differ(records), nonfinite_metrics=bad, **memory())


def main_part(args) -> None:
    """Entry of a child process: run part args.part, its record going to args.result."""
    from gpu_models import part_build

    rec = Recorder(args.result)
    rec(part=args.part, run=args.backend, pid=os.getpid(), rehearsal=args.rehearse)
    funcs = {"build": part_build, **{p: part_train for p in TRAIN_PARTS}, "engine_vs_plain": part_engine,
             "nb04_path": part_nb04}
    funcs[args.part](args, rec)
    rec(finished=True)

"""One run's steps, in order: refuse, plan, execute and record each, whatever ends the loop.

A run is a single profile's steps in outputs/<profile>/, one sweep member's in outputs/<profile>/<member>/, or the
aggregate step at outputs/<profile>/ (run.py decides which runs an invocation makes). Each step is refused while a
step it reads is not finished (freshness.py), skipped when its `step.json` says it finished with the same key, else
executed with papermill (execute.py) and recorded: `step.json`, `run.json` and one `history.jsonl` line per
invocation (runstate.py), true also when a failure, Ctrl-C or a stop signal (stop.py) ends the loop.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hmxnb import unsloth_env
from hmxnb.params import load_params, params_hash
from hmxnb.runner import freshness
from hmxnb.runner.execute import error_line as _error_line
from hmxnb.runner.execute import execute as _execute
from hmxnb.runner.launch import train_in_processes
from hmxnb.runner.runstate import (RunError, append_history, artefact_files, code_changed, code_state, plan_step,
                                   read_step, settle_running, write_run_record, write_step)
from hmxnb.runner.stop import held
from hmxnb.steps import TRAINING, step_data, step_keys


@dataclass(frozen=True, kw_only=True)
class RunContext:
    """What one runner invocation fixes for every run it makes (a single run, each sweep member, the aggregate),
    passed as one object: the functions that run a profile, a sweep or a member take it instead of a long row of
    arguments that a call could give in the wrong order."""
    profile: str  # as the notebooks get it: a profile name, or a yaml path made absolute
    params: dict  # the profile's validated params, before a sweep member's model and seed
    overrides: dict  # the --set keys, path keys made absolute
    notebooks_dir: Path
    profile_root: Path  # outputs/<profile>/
    force: bool = False  # a fresh run of the selected steps: their old outputs are archived first
    progress: bool = True  # papermill's progress bar
    log: Callable[[str], object] = print
    keep_going: bool = False  # a failed sweep member does not stop the others


@dataclass
class StepResult:
    step: str
    status: str  # ok | skipped | failed | interrupted
    key: str
    seconds: float = 0.0
    error: str = ""


@dataclass
class RunReport:
    out_root: Path
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(s.status in ("ok", "skipped") for s in self.steps)


@dataclass
class Run:
    """One run's fixed context while its steps execute: the invocation's context, this run's params and overrides
    (a member's model and seed added), its folder, every step's key (also the steps not selected) and the
    notebook parameters beyond the usual three (the aggregate's finished `members`)."""
    ctx: RunContext
    params: dict
    overrides: dict
    out_root: Path
    all_steps: list[Path]
    keys: dict[str, str]
    extra: dict = field(default_factory=dict)

    @classmethod
    def make(cls, ctx: RunContext, overrides: dict, out_root: Path, all_steps: list[Path], *,
             params: dict | None = None, start_key: str = "start", extra: dict | None = None) -> Run:
        """The run of these overrides (params loaded from them unless given) over `all_steps` in `out_root`."""
        params = params if params is not None else load_params(ctx.profile, overrides)
        return cls(ctx, params, overrides, out_root, all_steps, step_keys(params, all_steps, start_key), extra or {})

    @property
    def phash(self) -> str:
        return params_hash(self.params)

    def record(self) -> None:
        write_run_record(self.out_root, self.params, self.phash, self.keys)


def run_steps(run: Run, steps: list[Path]) -> RunReport:
    """Run the selected `steps` of `run` in order, stopping at the first failure; the records say how it ended."""
    log, out_root, keys = run.ctx.log, run.out_root, run.keys
    report, t_run, outcome = RunReport(out_root), time.time(), ["interrupted", ""]
    t_step = t_run
    log(f"hmxnb: profile '{run.params['profile']}' (params {run.phash}) -> {out_root}")
    freshness.warn_upstream(steps, run.all_steps, keys, out_root, log)
    try:
        for i, nb in enumerate(steps, 1):
            t_step = time.time()
            report.steps.append(_run_step(run, nb, f"[{i}/{len(steps)}] {nb.stem}"))
            if report.steps[-1].status == "failed":
                break
        outcome[0] = "ok" if report.ok else "failed"
    except KeyboardInterrupt:  # Ctrl-C, or a stop signal (hmxnb.runner.stop)
        if len(report.steps) < len(steps):  # the step that was running
            name = steps[len(report.steps)].stem
            report.steps.append(StepResult(name, "interrupted", keys[name], time.time() - t_step))
        raise
    except Exception as err:  # refused (RunError: one line) or broken: history says which, and why
        outcome[:] = ["refused" if isinstance(err, RunError) else "error", _error_line(err)]
        raise
    finally:  # whatever ends the loop, the records say what happened (held: a stop signal waits for them)
        with held():
            report.seconds = time.time() - t_run
            _settle(run, [nb.stem for nb in steps])
            run.record()
            append_history(out_root, run.phash, outcome[0], [s.__dict__ for s in report.steps], t_run, outcome[1])
    log(f"hmxnb: {'finished' if report.ok else 'stopped'} in {report.seconds:.1f}s; record: {out_root / 'run.json'}")
    return report


def _settle(run: Run, selected: list[str]) -> None:
    """After the loop: nothing of ours still reads 'running', and finished steps whose inputs changed are stale."""
    for name in selected:
        settle_running(run.out_root / name)
    for name in run.keys:
        freshness.refresh(run.out_root, name, run.keys, run.phash, run.ctx.log)


def _run_step(run: Run, nb: Path, tag: str) -> StepResult:
    """Refuse, plan, execute and record one step; KeyboardInterrupt marks it interrupted and propagates."""
    step_dir, key, log = run.out_root / nb.stem, run.keys[nb.stem], run.ctx.log
    freshness.refresh(run.out_root, nb.stem, run.keys, run.phash, log)  # stale: plan_step re-runs it afresh
    problem = freshness.input_problem(run.out_root, nb.stem, run.keys)
    if problem:
        raise RunError(f"{nb.stem} reads {problem[0]}, which is {problem[1]} in {run.out_root}: run that step first "
                       f"(--from {problem[0][:2]}); see its step.json")
    data, code = step_data(nb.stem, run.params), code_state(nb)
    if plan_step(step_dir, key, run.ctx.force, run.out_root, run.params, data) == "skip":
        changed = code_changed((read_step(step_dir) or {}).get("code"), code)
        log(f"{tag}: up to date, skipped (use --force to re-run)" + (
            f"; code changed since it ran ({changed}): its results are the recorded code's, --force re-runs it with "
            "the current code" if changed else ""))
        return StepResult(nb.stem, "skipped", key)
    log(f"{tag}: running ...")
    record = {"run_id": uuid.uuid4().hex[:12], "data": data, "code": code,
              "inputs": freshness.input_runs(run.out_root, nb.stem, run.keys)}
    write_step(step_dir, key, run.params, run.phash, "running", **record)
    freshness.mark_reports(run.out_root, nb.stem, f"{nb.stem} is running: this report is from an earlier run")
    run.record()
    return _execute_step(run, nb, tag, record)


def _train_first(run: Run, step: str, step_dir: Path) -> None:
    """With `num_processes` > 1 a training step (02, 03) trains under `accelerate launch` before its notebook runs;
    the notebook then finds the finished run (hmxnb.train.finished_run). With 1 the notebook trains in its kernel."""
    direction = next((d for d, s in TRAINING.items() if s == step), None)
    if direction is None or run.params["num_processes"] == 1:
        return
    params = load_params(run.ctx.profile, {**run.overrides, "direction": direction})  # what the notebook loads
    train_in_processes(params, step_dir, run.ctx.log)


def _execute_step(run: Run, nb: Path, tag: str, record: dict) -> StepResult:
    step_dir, key, t0 = run.out_root / nb.stem, run.keys[nb.stem], time.time()
    out_nb = step_dir / nb.name
    try:
        _train_first(run, nb.stem, step_dir)
        _execute(nb, out_nb, {"profile": run.ctx.profile, "params_overrides": run.overrides,
                              "out_dir": str(step_dir), **run.extra}, run.ctx.progress, unsloth_env(run.params))
    except KeyboardInterrupt:
        write_step(step_dir, key, run.params, run.phash, "interrupted", seconds=time.time() - t0, **record)
        raise
    except Exception as err:  # papermill raises PapermillExecutionError for a failing cell
        secs, msg = time.time() - t0, _error_line(err)
        write_step(step_dir, key, run.params, run.phash, "failed", seconds=secs, error=msg, **record)
        run.ctx.log(f"{tag}: FAILED after {secs:.1f}s: {msg}")
        run.ctx.log(f"    executed notebook kept for inspection: {out_nb}")
        return StepResult(nb.stem, "failed", key, secs, msg)
    secs = time.time() - t0
    write_step(step_dir, key, run.params, run.phash, "ok", seconds=secs, files=artefact_files(step_dir), **record)
    run.ctx.log(f"{tag}: done in {secs:.1f}s")
    return StepResult(nb.stem, "ok", key, secs)

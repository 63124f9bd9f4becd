"""The batch runner: execute the numbered notebooks in order with papermill into outputs/<profile>/.

Each step writes into outputs/<profile>/<NN_name>/ (its executed notebook, artefacts, `step.json`). A step is
skipped when its `step.json` says it finished with the same key: the hash of the params, of the notebook file,
of the data files it reads (hmxnb.datahash) and of the previous step's key (so re-running a step re-runs what
follows). Outputs of a different run are never overwritten: the runner refuses (naming the params or data that
differ). `force` means a fresh run: the step's old outputs, of this run or another, move to
outputs/<profile>/_archive/ first. A step that failed or was interrupted with the same key is re-run in place
(training resumes from its last checkpoint); one whose inputs are not finished is refused, and a finished one whose
inputs changed since is stale and re-runs afresh (hmxnb.freshness). One runner at a time per profile folder, and
every record it keeps is true at every moment, whatever ends the runner (hmxnb.runstate, hmxnb.stop).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from hmxnb import freshness, unsloth_env
from hmxnb.datahash import data_digest, data_hashes
from hmxnb.execute import error_line as _error_line
from hmxnb.execute import execute as _execute
from hmxnb.members import inside, sweep
from hmxnb.params import SCHEMA, load_params, params_hash, read_profile
from hmxnb.runstate import (RunError, append_history, plan_step, profile_lock, settle_running, write_run_record,
                            write_step)
from hmxnb.steps import AGGREGATE_STEPS
from hmxnb.stop import Stopped, held, stop_on_signals

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


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


def notebook_steps(notebooks_dir: Path = NOTEBOOKS) -> list[Path]:
    """The numbered notebooks `NN_name.ipynb`, in order."""
    return sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))


def select_steps(steps: list[Path], only: list[str] | None = None, start: str | None = None) -> list[Path]:
    """Filter steps by `only` (numbers or names, e.g. ["01"]) and `start` (run from this step on)."""
    names = [p.stem for p in steps]

    def find(tag: str) -> int:
        hits = [i for i, n in enumerate(names) if n == tag or n.split("_")[0] == tag.zfill(2)]
        if not hits:
            raise RunError(f"unknown step '{tag}'; steps are: {', '.join(names)}")
        return hits[0]

    if only:
        keep = sorted({find(t) for t in only})
        return [steps[i] for i in keep]
    if start:
        return steps[find(start):]
    return steps


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def step_key(phash: str, notebook: Path, previous_key: str, data: str = "") -> str:
    text = f"{phash}|{_file_hash(notebook)}|{previous_key}" + (f"|{data}" if data else "")
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def step_keys(params: dict, steps: list[Path], start: str = "start") -> dict[str, str]:
    """Step name -> key, chained: each step's key covers the params, its notebook, the content of the data files it
    reads and the step before it (`start` before the first: the aggregate step's finished sweep members)."""
    phash, keys, prev = params_hash(params), {}, start
    for nb in steps:
        prev = keys[nb.stem] = step_key(phash, nb, prev, data_digest(data_hashes(nb.stem, params)))
    return keys


def _absolute_profile(profile: str) -> str:
    """A profile given as a yaml path becomes absolute: the notebooks run in notebooks/, not here."""
    return str(Path(profile).resolve()) if Path(profile).suffix in (".yaml", ".yml") else profile


def _check_profile(profile: str, params: dict, log) -> None:
    """Say when a profile sets nothing (full-size defaults); refuse 4-bit profiles without a CUDA GPU."""
    if not read_profile(profile):
        log(f"warning: profile '{params['profile']}' sets no keys: running with the full-size defaults "
            f"(max_steps={params['max_steps']}, bench_limit={params['bench_limit']} = full benchmark sets)")
    if params["load_in_4bit"]:
        from hmxnb.models import cuda_available

        if not cuda_available():
            raise RunError(f"profile '{params['profile']}' needs a CUDA GPU (load_in_4bit: true) and none is visible; "
                           "on CPU use --profile smoke or demo, or --set load_in_4bit=false")


def run_profile(profile: str, overrides: dict | None = None, only: list[str] | None = None, start: str | None = None,
                force: bool = False, output_root: Path | None = None, notebooks_dir: Path = NOTEBOOKS,
                progress: bool = True, log=print, member: str | None = None,
                keep_going: bool = False) -> list[RunReport]:
    """Validate params, then run the selected steps of every run in the profile's sweep. Returns one report per run.

    The whole sweep runs under the profile's lock; `member` runs only that sweep member's steps under the member's
    own lock (hmxnb.members), so member jobs can run side by side. `keep_going`: a failed sweep member does not stop
    the others; the aggregate step compares the members that finished and names the rest.
    """
    profile = _absolute_profile(profile)
    if os.environ.get("HMXNB_DATA_DIR"):  # notebooks run in notebooks/: a relative path must not change meaning
        os.environ["HMXNB_DATA_DIR"] = str(Path(os.environ["HMXNB_DATA_DIR"]).resolve())
    base = load_params(profile, overrides)  # validates every key before anything runs or is touched
    paths = {k: base[k] for k, spec in SCHEMA.items() if spec.type.startswith("path") and base[k] is not None}
    overrides = {**(overrides or {}), **paths}  # absolute, as load_params resolved them here
    steps = select_steps(notebook_steps(notebooks_dir), only, start)
    if not steps:
        raise RunError(f"no numbered notebooks found in {notebooks_dir}")
    _check_profile(profile, base, log)
    output_root = Path(output_root) if output_root else ROOT / "outputs"
    profile_root = inside(output_root, base["profile"])
    with stop_on_signals():  # SIGTERM & co. end the run as Ctrl-C does: records true, previous handlers restored
        if member is not None:  # one member's steps under its own lock: member jobs run side by side
            from hmxnb.members import run_member

            return [run_member(profile, overrides, member, steps, profile_root, force, progress, log, notebooks_dir)]
        with profile_lock(profile_root):
            return _run_sweep(profile, base, overrides, steps, notebooks_dir, profile_root, force, progress, log,
                              keep_going)


def _run_sweep(profile, base, overrides, steps, notebooks_dir, profile_root, force, progress, log,
               keep_going=False) -> list[RunReport]:
    """Every member's selected steps (each under its member lock), then the aggregate step over those that finished."""
    from hmxnb.members import aggregate_inputs, member_lock

    all_steps = notebook_steps(notebooks_dir)
    runs = sweep(base)
    if runs == [("", {})]:  # a single run: every step in outputs/<profile>/
        return [_run_steps(profile, base, overrides, steps, all_steps, profile_root, force, progress, log)]
    per_run = [s for s in all_steps if s.stem not in AGGREGATE_STEPS]
    reports = []
    for sub, sweep_over in runs:
        selected = [s for s in steps if s in per_run]
        if not selected:
            continue
        run_over = {**overrides, **sweep_over}
        with member_lock(inside(profile_root, sub)):  # the same per-member lock as `--member` jobs
            reports.append(_run_steps(profile, load_params(profile, run_over), run_over, selected, per_run,
                                      inside(profile_root, sub), force, progress, log))
        if not reports[-1].ok and not keep_going:
            log("hmxnb: stopping the sweep at this member's failure (--keep-going runs the others and compares them)")
            return reports
    aggregate = [s for s in all_steps if s.stem in AGGREGATE_STEPS]
    if any(s in aggregate for s in steps):
        finished, run_keys = aggregate_inputs(profile, overrides, profile_root, notebooks_dir, log)
        reports.append(_run_steps(profile, base, overrides, [s for s in steps if s in aggregate], aggregate,
                                  profile_root, force, progress, log, start_key=run_keys, extra={"members": finished}))
    return reports


@dataclass
class _Run:
    """One run's fixed context while its steps execute."""
    profile: str
    params: dict
    overrides: dict
    out_root: Path
    keys: dict[str, str]
    force: bool
    progress: bool
    log: object
    extra: dict = field(default_factory=dict)  # more notebook parameters (the aggregate's finished members)

    @property
    def phash(self) -> str:
        return params_hash(self.params)

    def record(self) -> None:
        write_run_record(self.out_root, self.params, self.phash, self.keys)


def _run_steps(profile, params, overrides, steps, all_steps, out_root, force, progress, log, start_key="start",
               extra=None) -> RunReport:
    keys = step_keys(params, all_steps, start_key)  # through every step, also the ones not selected
    run = _Run(profile, params, overrides, out_root, keys, force, progress, log, extra or {})
    report, t_run, outcome = RunReport(out_root), time.time(), ["interrupted", ""]
    log(f"hmxnb: profile '{params['profile']}' (params {run.phash}) -> {out_root}")
    freshness.warn_upstream(steps, all_steps, keys, out_root, log)
    try:
        for i, nb in enumerate(steps, 1):
            report.steps.append(_run_step(run, nb, f"[{i}/{len(steps)}] {nb.stem}"))
            if report.steps[-1].status == "failed":
                break
        outcome[0] = "ok" if report.ok else "failed"
    except KeyboardInterrupt:  # Ctrl-C, or a stop signal (hmxnb.stop)
        if len(report.steps) < len(steps):  # the step that was running
            name = steps[len(report.steps)].stem
            report.steps.append(StepResult(name, "interrupted", keys[name]))
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


def _settle(run: _Run, selected: list[str]) -> None:
    """After the loop: nothing of ours still reads 'running', and finished steps whose inputs changed are stale."""
    for name in selected:
        settle_running(run.out_root / name)
    for name in run.keys:
        freshness.refresh(run.out_root, name, run.keys, run.phash, run.log)


def _run_step(run: _Run, nb: Path, tag: str) -> StepResult:
    """Refuse, plan, execute and record one step; KeyboardInterrupt marks it interrupted and propagates."""
    step_dir, key = run.out_root / nb.stem, run.keys[nb.stem]
    freshness.refresh(run.out_root, nb.stem, run.keys, run.phash, run.log)  # stale: plan_step re-runs it afresh
    problem = freshness.input_problem(run.out_root, nb.stem, run.keys)
    if problem:
        raise RunError(f"{nb.stem} reads {problem[0]}, which is {problem[1]} in {run.out_root}: run that step first "
                       f"(--from {problem[0][:2]}); see its step.json")
    data = data_hashes(nb.stem, run.params)
    if plan_step(step_dir, key, run.force, run.out_root, run.params, data) == "skip":
        run.log(f"{tag}: up to date, skipped (use --force to re-run)")
        return StepResult(nb.stem, "skipped", key)
    run.log(f"{tag}: running ...")
    record = {"run_id": uuid.uuid4().hex[:12], "data": data,
              "inputs": freshness.input_runs(run.out_root, nb.stem, run.keys)}
    write_step(step_dir, key, run.params, run.phash, "running", **record)
    freshness.mark_reports(run.out_root, nb.stem, f"{nb.stem} is running: this report is from an earlier run")
    run.record()
    return _execute_step(run, nb, tag, record)


def _execute_step(run: _Run, nb: Path, tag: str, record: dict) -> StepResult:
    step_dir, key, t0 = run.out_root / nb.stem, run.keys[nb.stem], time.time()
    out_nb = step_dir / nb.name
    try:
        _execute(nb, out_nb, {"profile": run.profile, "params_overrides": run.overrides, "out_dir": str(step_dir),
                              **run.extra}, run.progress, unsloth_env(run.params))
    except KeyboardInterrupt:
        write_step(step_dir, key, run.params, run.phash, "interrupted", seconds=time.time() - t0, **record)
        raise
    except Exception as err:  # papermill raises PapermillExecutionError for a failing cell
        secs, msg = time.time() - t0, _error_line(err)
        write_step(step_dir, key, run.params, run.phash, "failed", seconds=secs, error=msg, **record)
        run.log(f"{tag}: FAILED after {secs:.1f}s: {msg}")
        run.log(f"    executed notebook kept for inspection: {out_nb}")
        return StepResult(nb.stem, "failed", key, secs, msg)
    secs = time.time() - t0
    write_step(step_dir, key, run.params, run.phash, "ok", seconds=secs, **record)
    run.log(f"{tag}: done in {secs:.1f}s")
    return StepResult(nb.stem, "ok", key, secs)


def main_run(args) -> int:
    """CLI entry for `python -m hmxnb run` (errors are printed by the caller). Ended by a stop signal: one line,
    and the exit status a shell gives that signal (143 for SIGTERM)."""
    try:
        reports = run_profile(args.profile, dict(args.set), args.only, args.start, args.force,
                              output_root=args.outputs, member=args.member, keep_going=args.keep_going)
    except Stopped as stop:
        print(f"hmxnb: stopped by {stop.name}; finished steps are kept and the step that ran is marked 'interrupted' "
              "in run.json; re-run the same command to continue", file=sys.stderr)
        return stop.exit_status
    return 0 if all(r.ok for r in reports) else 1

"""The batch runner: execute the numbered notebooks in order with papermill into outputs/<profile>/.

Each step writes into outputs/<profile>/<NN_name>/ (its executed notebook, artefacts, `step.json`). A step is
skipped when its `step.json` says it finished with the same key: the hash of the params, of the notebook file
and of the previous step's key (so re-running a step re-runs what follows). Outputs of a different run are never
overwritten: the runner refuses (naming the params that differ). `force` means a fresh run: the step's old outputs,
of this run or another, move to outputs/<profile>/_archive/ first. A step that failed or was interrupted with the
same key is re-run in place (training resumes from its last checkpoint). One runner at a time per profile folder,
and every record it keeps is true at every moment (see hmxnb.runstate).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from hmxnb import unsloth_env
from hmxnb.members import inside, sweep
from hmxnb.params import SCHEMA, load_params, params_hash, read_profile
from hmxnb.runstate import RunError, append_history, plan_step, profile_lock, read_step, write_run_record, write_step
from hmxnb.steps import AGGREGATE_STEPS

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


def step_key(phash: str, notebook: Path, previous_key: str) -> str:
    return hashlib.sha256(f"{phash}|{_file_hash(notebook)}|{previous_key}".encode()).hexdigest()[:12]


def step_keys(phash: str, steps: list[Path], start: str = "start") -> dict[str, str]:
    """Step name -> key, chained: each step's key covers the params, its notebook and the step before it."""
    keys, prev = {}, start
    for nb in steps:
        prev = keys[nb.stem] = step_key(phash, nb, prev)
    return keys


# Progress bars in an executed notebook are a stored document, not a live display: one line when a loop starts and
# one when it ends (tqdm reads TQDM_* variables as its defaults), instead of a red wall of updates; and no warning
# that the kernel has no widgets for them (text bars are what a stored notebook wants).
KERNEL_ENV = {"TQDM_MININTERVAL": "3600", "PYTHONWARNINGS": "ignore:IProgress not found"}


def _kernel_manager(log_path: Path, env: dict | None = None):
    """An AsyncKernelManager whose kernel writes its own log (not cell output) to `log_path`, not to our terminal,
    and runs with KERNEL_ENV and `env` (hmxnb.unsloth_env: no Unsloth import for `use_unsloth: false`)."""
    from jupyter_client import AsyncKernelManager

    class LoggedKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            kw["env"] = {**(kw.get("env") or os.environ), **KERNEL_ENV, **(env or {})}
            with open(log_path, "ab") as log:
                kw["stderr"] = kw["stdout"] = log
                return await super()._async_launch_kernel(kernel_cmd, **kw)

    return LoggedKernelManager


def _execute(notebook: Path, out_nb: Path, parameters: dict, progress: bool, env: dict | None = None) -> None:
    import papermill as pm

    pm.execute_notebook(
        str(notebook), str(out_nb), parameters=parameters, kernel_name="python3",
        progress_bar=progress, cwd=str(notebook.parent), log_output=False, report_mode=False,
        kernel_manager_class=_kernel_manager(out_nb.parent / "kernel.log", env),
        coalesce_streams=True,  # one stream output per cell; a progress bar's \r updates collapse to its last line
    )


def _error_line(err: Exception) -> str:
    ename = getattr(err, "ename", type(err).__name__)
    evalue = getattr(err, "evalue", str(err))
    cell = getattr(err, "exec_count", None)
    where = f" in cell [{cell}]" if cell is not None else ""
    return f"{ename}{where}: {str(evalue).strip().splitlines()[-1] if str(evalue).strip() else ''}"


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
    if member is not None:  # one member's steps under its own lock: member jobs run side by side
        from hmxnb.members import run_member

        return [run_member(profile, overrides, member, steps, profile_root, force, progress, log, notebooks_dir)]
    with profile_lock(profile_root):
        return _run_sweep(profile, base, overrides, steps, notebooks_dir, profile_root, force, progress, log, keep_going)


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
    phash = params_hash(params)
    keys = step_keys(phash, all_steps, start_key)  # through every step, also the ones not selected
    run = _Run(profile, params, overrides, out_root, keys, force, progress, log, extra or {})
    report = RunReport(out_root)
    t_run, status = time.time(), "interrupted"
    log(f"hmxnb: profile '{params['profile']}' (params {phash}) -> {out_root}")
    _warn_stale_inputs(steps, all_steps, keys, out_root, log)
    try:
        for i, nb in enumerate(steps, 1):
            report.steps.append(_run_step(run, nb, f"[{i}/{len(steps)}] {nb.stem}"))
            if report.steps[-1].status == "failed":
                break
        status = "ok" if report.ok else "failed"
    except KeyboardInterrupt:
        report.steps.append(StepResult(nb.stem, "interrupted", keys[nb.stem]))
        raise
    finally:  # also on Ctrl-C: the records say what happened
        report.seconds = time.time() - t_run
        run.record()
        append_history(out_root, phash, status, [s.__dict__ for s in report.steps], t_run)
    log(f"hmxnb: {'finished' if report.ok else 'stopped'} in {report.seconds:.1f}s; record: {out_root / 'run.json'}")
    return report


def _run_step(run: _Run, nb: Path, tag: str) -> StepResult:
    """Plan, execute and record one step; KeyboardInterrupt marks it interrupted and propagates."""
    step_dir, key = run.out_root / nb.stem, run.keys[nb.stem]
    action = plan_step(step_dir, key, run.force, run.out_root, run.params)
    if action == "skip":
        run.log(f"{tag}: up to date, skipped (use --force to re-run)")
        return StepResult(nb.stem, "skipped", key)
    run.log(f"{tag}: running ...")
    write_step(step_dir, key, run.params, run.phash, "running")
    run.record()
    t0 = time.time()
    out_nb = step_dir / nb.name
    try:
        _execute(nb, out_nb, {"profile": run.profile, "params_overrides": run.overrides, "out_dir": str(step_dir),
                              **run.extra}, run.progress, unsloth_env(run.params))
    except KeyboardInterrupt:
        write_step(step_dir, key, run.params, run.phash, "interrupted", seconds=time.time() - t0)
        raise
    except Exception as err:  # papermill raises PapermillExecutionError for a failing cell
        secs, msg = time.time() - t0, _error_line(err)
        write_step(step_dir, key, run.params, run.phash, "failed", seconds=secs, error=msg)
        run.log(f"{tag}: FAILED after {secs:.1f}s: {msg}")
        run.log(f"    executed notebook kept for inspection: {out_nb}")
        return StepResult(nb.stem, "failed", key, secs, msg)
    secs = time.time() - t0
    write_step(step_dir, key, run.params, run.phash, "ok", seconds=secs)
    run.log(f"{tag}: done in {secs:.1f}s")
    return StepResult(nb.stem, "ok", key, secs)


def _warn_stale_inputs(steps, all_steps, keys, out_root, log) -> None:
    """Steps not selected but run before a selected one: say so when their outputs are missing or from other params."""
    first = all_steps.index(steps[0])
    for nb in all_steps[:first]:
        prev = read_step(out_root / nb.stem)
        if prev is None or prev.get("status") != "ok":
            log(f"warning: {nb.stem} has no finished outputs in {out_root}; later steps may fail")
        elif prev.get("key") != keys[nb.stem]:
            log(f"warning: {nb.stem} outputs come from other params or notebook (key {prev.get('key')}, now {keys[nb.stem]}); "
                f"re-run it with --from {nb.stem.split('_')[0]} for consistent results")


def main_run(args) -> int:
    """CLI entry for `python -m hmxnb run` (errors are printed by the caller)."""
    reports = run_profile(args.profile, dict(args.set), args.only, args.start, args.force, output_root=args.outputs,
                          member=args.member, keep_going=args.keep_going)
    return 0 if all(r.ok for r in reports) else 1

"""The batch runner: execute the numbered notebooks in order with papermill into outputs/<profile>/.

Each step writes into outputs/<profile>/<NN_name>/ (its executed notebook, artefacts, `step.json`). A step is
skipped when its `step.json` says it finished with the same key: the hash of the params, of the notebook file,
of the data files it reads (hmxnb.steps) and of the previous step's key (so re-running a step re-runs what
follows; hmxnb.steps). Outputs of a different run are never overwritten: the runner refuses (naming the params or
data that differ). `force` means a fresh run: the step's old outputs, of this run or another, move to
outputs/<profile>/_archive/ first. A step that failed or was interrupted with the same key is re-run in place
(training resumes from its last checkpoint); one whose inputs are not finished is refused, and a finished one whose
inputs changed since is stale and re-runs afresh (hmxnb.runner.freshness). One runner at a time per profile folder, and
every record it keeps is true at every moment, whatever ends the runner (hmxnb.runner.runstate, hmxnb.runner.stop).

This module decides which runs an invocation makes (one run, every sweep member then the aggregate step, or one
member alone: hmxnb.runner.members); hmxnb.runner.runsteps runs one run's steps.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hmxnb.runner.members import aggregate_inputs, member_lock, member_overrides, per_member_steps, sweep
from hmxnb.params import SCHEMA, load_params, read_profile
from hmxnb.paths import NOTEBOOKS, OUTPUTS, inside
from hmxnb.runner.runstate import RunError, profile_lock
from hmxnb.runner.runsteps import Run, RunContext, RunReport, StepResult, run_steps
from hmxnb.steps import AGGREGATE_STEPS, notebook_steps
from hmxnb.runner.stop import Stopped, stop_on_signals

__all__ = ["RunContext", "RunError", "RunReport", "StepResult", "main_run", "notebook_steps", "resume_hint",
           "run_profile", "select_steps"]


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


def _absolute_profile(profile: str) -> str:
    """A profile given as a yaml path becomes absolute: the notebooks run in notebooks/, not here."""
    return str(Path(profile).resolve()) if Path(profile).suffix in (".yaml", ".yml") else profile


def _check_profile(profile: str, params: dict, log, overrides: dict | None = None) -> None:
    """Say when a profile sets nothing (full-size defaults); refuse 4-bit profiles without a CUDA GPU, an `optim`
    transformers does not know, and a `direction` (notebooks 02 and 03 each train their own)."""
    from hmxnb.train import check_optim
    from hmxnb.params import ParamsError

    check_optim(params["optim"])
    if "direction" in read_profile(profile) or "direction" in (overrides or {}):
        raise ParamsError(f"params key 'direction' is set ({params['direction']!r}): the runner trains both, "
                          "notebook 02 human and 03 reverse; remove it from the profile / --set")
    if not read_profile(profile):
        log(f"warning: profile '{params['profile']}' sets no keys: running with the full-size defaults "
            f"(max_steps={params['max_steps']}, bench_limit={params['bench_limit']} = full benchmark sets)")
    if params["load_in_4bit"]:
        from hmxnb.models import cuda_available

        if not cuda_available():
            raise RunError(f"profile '{params['profile']}' needs a CUDA GPU (load_in_4bit: true) and none is visible; "
                           "on CPU use --profile smoke or demo, or --set load_in_4bit=false")


def run_profile(profile: str, overrides: dict | None = None, only: list[str] | None = None, start: str | None = None,
                force: bool = False, *, output_root: Path | None = None, notebooks_dir: Path | None = None,
                progress: bool = True, log=print, member: str | None = None,
                keep_going: bool = False) -> list[RunReport]:
    """Validate params, then run the selected steps of every run in the profile's sweep. Returns one report per run.

    The whole sweep runs under the profile's lock; `member` runs only that sweep member's steps under the member's
    own lock (members.py), so member jobs can run side by side. `keep_going`: a failed sweep member does not stop the
    others; the aggregate step compares the members that finished and names the rest.
    """
    profile = _absolute_profile(profile)
    if os.environ.get("HMXNB_DATA_DIR"):  # notebooks run in notebooks/: a relative path must not change meaning
        os.environ["HMXNB_DATA_DIR"] = str(Path(os.environ["HMXNB_DATA_DIR"]).resolve())
    base = load_params(profile, overrides)  # validates every key before anything runs or is touched
    paths = {k: base[k] for k, spec in SCHEMA.items() if spec.type.startswith("path") and base[k] is not None}
    notebooks_dir = Path(notebooks_dir) if notebooks_dir else NOTEBOOKS
    steps = select_steps(notebook_steps(notebooks_dir), only, start)
    if not steps:
        raise RunError(f"no numbered notebooks found in {notebooks_dir}")
    _check_profile(profile, base, log, overrides)
    ctx = RunContext(profile=profile, params=base, overrides={**(overrides or {}), **paths},  # paths: absolute
                     notebooks_dir=notebooks_dir, force=force, progress=progress, log=log, keep_going=keep_going,
                     profile_root=inside(Path(output_root) if output_root else OUTPUTS, base["profile"]))
    with stop_on_signals():  # SIGTERM & co. end the run as Ctrl-C does: records true, previous handlers restored
        if member is not None:  # one member's steps under its own lock: member jobs run side by side
            return [_run_member(ctx, member, steps)]
        with profile_lock(ctx.profile_root):
            return _run_sweep(ctx, steps)


def _run_sweep(ctx: RunContext, steps: list[Path]) -> list[RunReport]:
    """Every member's selected steps (each under its member lock), then the aggregate step over those that finished."""
    all_steps = notebook_steps(ctx.notebooks_dir)
    runs = sweep(ctx.params)
    if runs == [("", {})]:  # a single run: every step in outputs/<profile>/
        return [run_steps(Run.make(ctx, ctx.overrides, ctx.profile_root, all_steps, params=ctx.params), steps)]
    per_run = [s for s in all_steps if s.stem not in AGGREGATE_STEPS]
    selected, reports = [s for s in steps if s in per_run], []
    for sub, sweep_over in runs if selected else []:
        member_root = inside(ctx.profile_root, sub)
        with member_lock(member_root):  # the same per-member lock as `--member` jobs
            reports.append(run_steps(Run.make(ctx, {**ctx.overrides, **sweep_over}, member_root, per_run), selected))
        if not reports[-1].ok and not ctx.keep_going:
            ctx.log("hmxnb: stopping the sweep at this member's failure (--keep-going runs the others and compares "
                    "them)")
            return reports
    aggregate = [s for s in all_steps if s.stem in AGGREGATE_STEPS]
    if any(s in aggregate for s in steps):
        finished, run_keys, others = aggregate_inputs(ctx.profile, ctx.overrides, ctx.profile_root,
                                                      ctx.notebooks_dir, ctx.log)
        run = Run.make(ctx, ctx.overrides, ctx.profile_root, aggregate, params=ctx.params, start_key=run_keys,
                       extra={"members": finished, "left_out": others})
        reports.append(run_steps(run, [s for s in steps if s in aggregate]))
    return reports


def _run_member(ctx: RunContext, member: str, steps: list[Path]) -> RunReport:
    """Run the selected per-member steps of one sweep member under its lock."""
    over = member_overrides(load_params(ctx.profile, ctx.overrides), member)
    per_member = per_member_steps(ctx.notebooks_dir)
    selected = [s for s in steps if s in per_member]
    skipped = [s.stem for s in steps if s not in per_member]
    if not selected:
        raise RunError(f"steps {', '.join(skipped)} combine all members: run them without --member (e.g. --only 05)")
    if skipped:
        ctx.log(f"hmxnb: member '{member}': {', '.join(skipped)} not run per member; `--only {skipped[0][:2]}` "
                "aggregates")
    member_root = Path(ctx.profile_root) / member
    with member_lock(member_root):
        return run_steps(Run.make(ctx, {**ctx.overrides, **over}, member_root, per_member), selected)


def resume_hint(argv: list[str] | None = None) -> str:
    """What to say when a run is stopped: the command that continues it. That is the same command without `--force`
    (which would archive the interrupted step and start it from zero); training resumes from its last checkpoint."""
    import shlex

    kept = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--force"]
    return ("finished steps are kept and the step that ran is marked 'interrupted' in run.json; to continue it "
            f"(training resumes from its last complete checkpoint): python -m hmxnb {shlex.join(kept)}")


def main_run(args) -> int:
    """CLI entry for `python -m hmxnb run` (errors are printed by the caller). Ended by a stop signal: one line,
    and the exit status a shell gives that signal (143 for SIGTERM)."""
    try:
        reports = run_profile(args.profile, dict(args.set), args.only, args.start, args.force,
                              output_root=args.outputs, notebooks_dir=args.notebooks, member=args.member,
                              keep_going=args.keep_going)
    except Stopped as stop:
        print(f"hmxnb: stopped by {stop.name}; {resume_hint(getattr(args, 'argv', None))}", file=sys.stderr)
        return stop.exit_status
    return 0 if all(r.ok for r in reports) else 1

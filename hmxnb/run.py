"""The batch runner: execute the numbered notebooks in order with papermill into outputs/<profile>/.

Each step writes into outputs/<profile>/<NN_name>/ (its executed notebook, artefacts, `step.json`). A step is
skipped when its `step.json` says it finished with the same key: the hash of the params, of the notebook file
and of the previous step's key (so re-running a step re-runs what follows). Outputs of a different run are never
overwritten: the runner refuses, and with `force` moves them to outputs/<profile>/_archive/ first.
A step that failed with the same key is re-run in place (training resumes from its last checkpoint).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from hmxnb.artifacts import git_commit, package_versions, save_json
from hmxnb.params import load_params, params_hash

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
# Steps that read every run of a sweep (models x seeds) and so run once, at outputs/<profile>/, after the runs.
AGGREGATE_STEPS = ("05_compare_report",)


class RunError(RuntimeError):
    """A run could not start or a step failed; the message is one line."""


@dataclass
class StepResult:
    step: str
    status: str  # ok | skipped | failed
    key: str
    seconds: float = 0.0
    error: str = ""


@dataclass
class RunReport:
    out_root: Path
    last_key: str = ""
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(s.status != "failed" for s in self.steps)


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


def sweep(params: dict) -> list[tuple[str, dict]]:
    """(sub-folder, overrides) per run: one per model in `sweep_models` x seed in `seeds` (or just one)."""
    models = params["sweep_models"] or [None]
    seeds = params["seeds"] or [None]
    runs = []
    for model, seed in itertools.product(models, seeds):
        over, parts = {}, []
        if model is not None:
            over["model_name_or_path"] = model
            parts.append(model.rstrip("/").split("/")[-1].lower())
        if seed is not None:
            over["seed"] = seed
            parts.append(f"seed{seed}")
        runs.append(("-".join(parts), over))
    return runs


def _read_step(step_dir: Path) -> dict | None:
    import json

    f = step_dir / "step.json"
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except ValueError:
        return None


def _archive(step_dir: Path, out_root: Path, old_key: str) -> Path:
    dest = out_root / "_archive" / f"{step_dir.name}-{old_key}-{time.strftime('%Y%m%d-%H%M%S')}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(step_dir), str(dest))
    return dest


def plan_step(step_dir: Path, key: str, force: bool, out_root: Path) -> str:
    """Decide what to do with one step: 'skip', 'run' (fresh or retry) or raise if a different run is there."""
    prev = _read_step(step_dir)
    if prev is None:
        if step_dir.exists() and any(step_dir.iterdir()) and not force:
            raise RunError(f"{step_dir} holds outputs of an unknown run (no step.json); move it away or use --force to archive it")
        if step_dir.exists() and force and any(step_dir.iterdir()):
            _archive(step_dir, out_root, "unknown")
        return "run"
    if prev.get("key") == key:
        if prev.get("status") == "ok" and not force:
            return "skip"
        return "run"  # same run: retry a failure in place (keeps checkpoints), or re-run on --force
    if not force:
        raise RunError(
            f"{step_dir} holds outputs of a different run (key {prev.get('key')}, now {key}); "
            "use --force to archive them under _archive/ and re-run"
        )
    _archive(step_dir, out_root, prev.get("key", "unknown"))
    return "run"


def _execute(notebook: Path, out_nb: Path, parameters: dict, progress: bool) -> None:
    import papermill as pm

    pm.execute_notebook(
        str(notebook), str(out_nb), parameters=parameters, kernel_name="python3",
        progress_bar=progress, cwd=str(notebook.parent), log_output=False, report_mode=False,
    )


def _error_line(err: Exception) -> str:
    ename = getattr(err, "ename", type(err).__name__)
    evalue = getattr(err, "evalue", str(err))
    cell = getattr(err, "exec_count", None)
    where = f" in cell [{cell}]" if cell is not None else ""
    return f"{ename}{where}: {str(evalue).strip().splitlines()[-1] if str(evalue).strip() else ''}"


def run_profile(profile: str, overrides: dict | None = None, only: list[str] | None = None, start: str | None = None,
                force: bool = False, output_root: Path | None = None, notebooks_dir: Path = NOTEBOOKS,
                progress: bool = True, log=print, member: str | None = None) -> list[RunReport]:
    """Validate params, then run the selected steps of every run in the profile's sweep. Returns one report per run.

    `member`: run only that sweep member's steps (hmxnb.members: safe beside other members' jobs)."""
    overrides = dict(overrides or {})
    if os.environ.get("HMXNB_DATA_DIR"):  # notebooks run in notebooks/: a relative path must not change meaning
        os.environ["HMXNB_DATA_DIR"] = str(Path(os.environ["HMXNB_DATA_DIR"]).resolve())
    base = load_params(profile, overrides)  # validates every key before anything runs or is touched
    steps = select_steps(notebook_steps(notebooks_dir), only, start)
    if not steps:
        raise RunError(f"no numbered notebooks found in {notebooks_dir}")
    output_root = Path(output_root) if output_root else ROOT / "outputs"
    all_steps = notebook_steps(notebooks_dir)
    profile_root = output_root / base["profile"]
    runs = sweep(base)
    if member is not None:
        from hmxnb.members import run_member

        return [run_member(profile, overrides, member, steps, profile_root, force, progress, log, notebooks_dir)]
    if runs == [("", {})]:  # a single run: every step in outputs/<profile>/
        return [_run_steps(profile, base, overrides, steps, all_steps, profile_root, force, progress, log)]
    per_run = [s for s in all_steps if s.stem not in AGGREGATE_STEPS]
    reports = []
    for sub, sweep_over in runs:
        selected = [s for s in steps if s in per_run]
        if not selected:
            continue
        run_over = {**overrides, **sweep_over}
        from hmxnb.members import member_lock

        with member_lock(profile_root / sub):  # the same per-member lock as `--member` jobs
            reports.append(_run_steps(profile, load_params(profile, run_over), run_over, selected, per_run,
                                      profile_root / sub, force, progress, log))
        if not reports[-1].ok:
            return reports
    aggregate = [s for s in all_steps if s.stem in AGGREGATE_STEPS]
    if any(s in aggregate for s in steps):
        from hmxnb.members import aggregate_inputs

        finished, run_keys = aggregate_inputs(profile, overrides, profile_root, notebooks_dir, log)
        reports.append(_run_steps(profile, base, overrides, [s for s in steps if s in aggregate], aggregate,
                                  profile_root, force, progress, log, start_key=run_keys, extra={"members": finished}))
    return reports


def _run_steps(profile, params, overrides, steps, all_steps, out_root, force, progress, log, start_key="start",
               extra=None) -> RunReport:
    phash = params_hash(params)
    keys, prev = {}, start_key
    for nb in all_steps:  # keys chain through every step, also the ones not selected
        prev = keys[nb] = step_key(phash, nb, prev)
    report = RunReport(out_root, last_key=keys[all_steps[-1]])
    t_run = time.time()
    log(f"hmxnb: profile '{params['profile']}' (params {phash}) -> {out_root}")
    _warn_stale_inputs(steps, all_steps, keys, out_root, log)
    for i, nb in enumerate(steps, 1):
        step_dir = out_root / nb.stem
        key = keys[nb]
        action = plan_step(step_dir, key, force, out_root)
        if action == "skip":
            log(f"[{i}/{len(steps)}] {nb.stem}: up to date, skipped (use --force to re-run)")
            report.steps.append(StepResult(nb.stem, "skipped", key))
            continue
        log(f"[{i}/{len(steps)}] {nb.stem}: running ...")
        step_dir.mkdir(parents=True, exist_ok=True)
        save_json({"key": key, "status": "running", "params_hash": phash}, step_dir / "step.json")
        t0 = time.time()
        out_nb = step_dir / nb.name
        try:
            _execute(nb, out_nb, {"profile": profile, "params_overrides": overrides, "out_dir": str(step_dir), **(extra or {})},
                     progress)
        except Exception as err:  # papermill raises PapermillExecutionError for a failing cell
            secs = time.time() - t0
            msg = _error_line(err)
            save_json({"key": key, "status": "failed", "params_hash": phash, "seconds": secs, "error": msg}, step_dir / "step.json")
            report.steps.append(StepResult(nb.stem, "failed", key, secs, msg))
            log(f"[{i}/{len(steps)}] {nb.stem}: FAILED after {secs:.1f}s: {msg}")
            log(f"    executed notebook kept for inspection: {out_nb}")
            break
        secs = time.time() - t0
        save_json({"key": key, "status": "ok", "params_hash": phash, "seconds": secs}, step_dir / "step.json")
        report.steps.append(StepResult(nb.stem, "ok", key, secs))
        log(f"[{i}/{len(steps)}] {nb.stem}: done in {secs:.1f}s")
    report.seconds = time.time() - t_run
    _write_run_json(out_root, params, phash, report)
    log(f"hmxnb: {'finished' if report.ok else 'stopped'} in {report.seconds:.1f}s; record: {out_root / 'run.json'}")
    return report


def _warn_stale_inputs(steps, all_steps, keys, out_root, log) -> None:
    """Steps not selected but run before a selected one: say so when their outputs are missing or from other params."""
    first = all_steps.index(steps[0])
    for nb in all_steps[:first]:
        prev = _read_step(out_root / nb.stem)
        if prev is None or prev.get("status") != "ok":
            log(f"warning: {nb.stem} has no finished outputs in {out_root}; later steps may fail")
        elif prev.get("key") != keys[nb]:
            log(f"warning: {nb.stem} outputs come from other params or notebook (key {prev.get('key')}, now {keys[nb]}); "
                f"re-run it with --from {nb.stem.split('_')[0]} for consistent results")


def _write_run_json(out_root: Path, params: dict, phash: str, report: RunReport) -> None:
    save_json(
        {
            "profile": params["profile"],
            "params_hash": phash,
            "status": "ok" if report.ok else "failed",
            "seconds": round(report.seconds, 1),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "git_commit": git_commit(),
            "versions": package_versions(),
            "steps": [s.__dict__ for s in report.steps],
            "params": params,
        },
        out_root / "run.json",
    )


def main_run(args) -> int:
    """CLI entry for `python -m hmxnb run` (errors are printed by the caller)."""
    reports = run_profile(args.profile, dict(args.set), args.only, args.start, args.force, output_root=args.outputs,
                          member=args.member)
    return 0 if all(r.ok for r in reports) else 1

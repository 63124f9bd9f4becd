"""Sweep members as independent jobs: run one member alone, tell which members finished, one lock per member.

A member (one model x seed of `sweep`) writes only inside outputs/<profile>/<member>/: its steps, its
`run.json`, its `_archive/` and its `.lock`. So any number of member jobs can run side by side in one profile; only
the aggregate step (05, run with `--only 05`) writes at outputs/<profile>/ itself, and it reads the members that
finished (`member_status`), writes `members.json` beside its report and names the missing ones.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from hmxnb.params import load_params, params_hash
from hmxnb.runstate import RunError, profile_lock, read_record, read_step



def safe_name(text: str) -> str:
    """A folder name from free text: letters, digits, '.', '_', '-' only, never starting with a dot ('..' -> 'run')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).lstrip(".-") or "run"


def inside(root: Path, *parts: str) -> Path:
    """root/parts..., refusing (RunError) a path that resolves outside root."""
    path = root.joinpath(*parts).resolve()
    if not path.is_relative_to(root.resolve()):
        raise RunError(f"output folder {path} would lie outside {root}; rename the profile or sweep entry")
    return path


def sweep(params: dict) -> list[tuple[str, dict]]:
    """(sub-folder, overrides) per run: one per model in `sweep_models` x seed in `seeds` (or just one)."""
    models = params["sweep_models"] or [None]
    seeds = params["seeds"] or [None]
    runs = []
    for model, seed in itertools.product(models, seeds):
        over, parts = {}, []
        if model is not None:
            over["model_name_or_path"] = model
            parts.append(safe_name(model.rstrip("/").split("/")[-1].lower()))
        if seed is not None:
            over["seed"] = seed
            parts.append(f"seed{seed}")
        runs.append(("-".join(parts), over))
    return runs


class MemberBusy(RunError):
    """Another process holds the member's lock."""


def member_overrides(params: dict, member: str) -> dict:
    """The sweep overrides (model, seed) of the member named `member`; RunError naming the members otherwise."""
    runs = dict(sweep(params))
    if list(runs) == [""]:
        raise RunError(f"profile '{params['profile']}' has no sweep (sweep_models / seeds): run it without --member")
    if member not in runs:
        raise RunError(f"unknown sweep member '{member}'; members are: {', '.join(runs)}")
    return runs[member]


def per_member_steps(notebooks_dir: Path) -> list[Path]:
    """The steps every member runs on its own (all but the aggregate steps)."""
    from hmxnb.run import notebook_steps
    from hmxnb.steps import AGGREGATE_STEPS

    return [s for s in notebook_steps(notebooks_dir) if s.stem not in AGGREGATE_STEPS]


def expected_keys(params: dict, steps: list[Path]) -> dict[str, str]:
    """Step name -> the key the runner gives it for these params."""
    from hmxnb.run import step_keys

    return step_keys(params_hash(params), steps)


def member_lock(member_dir: Path):
    """Hold the member's `.lock` (the runner's lock helper, with the member's error)."""
    return profile_lock(Path(member_dir), MemberBusy, "{folder} is being written by another job ({holder})")


def is_locked(member_dir: Path) -> bool:
    """Whether some process holds the member's lock right now."""
    try:
        with member_lock(member_dir):
            return False
    except MemberBusy:
        return True


def member_status(profile: str, overrides: dict, profile_root: Path, notebooks_dir: Path) -> dict[str, dict]:
    """Member -> {"status", "key"} from its last per-member step's step.json.

    status: finished (ok, with the key these params give), running (its lock is held), failed, stale (finished
    with other params or notebooks), missing (never run or interrupted). `key` is that step's key when finished.
    """
    steps = per_member_steps(notebooks_dir)
    base = load_params(profile, overrides)
    out = {}
    for member, over in sweep(base):
        last = steps[-1].stem
        key = expected_keys(load_params(profile, {**overrides, **over}), steps)[last]
        member_dir = Path(profile_root) / member
        rec = read_step(member_dir / last) or {}
        if member_dir.is_dir() and is_locked(member_dir):
            status = "running"
        elif rec.get("status") == "ok":
            status = "finished" if rec.get("key") == key else "stale"
        else:
            status = "failed" if rec.get("status") == "failed" else "missing"
        out[member] = {"status": status, "key": key if status == "finished" else None}
    return out


def run_member(profile: str, overrides: dict, member: str, steps: list[Path], profile_root: Path, force: bool,
               progress: bool, log, notebooks_dir: Path):
    """Run the selected per-member steps of one sweep member under its lock. Returns the runner's RunReport."""
    from hmxnb.run import _run_steps

    over = member_overrides(load_params(profile, overrides), member)
    per_member = per_member_steps(notebooks_dir)
    selected = [s for s in steps if s in per_member]
    skipped = [s.stem for s in steps if s not in per_member]
    if not selected:
        raise RunError(f"steps {', '.join(skipped)} combine all members: run them without --member (e.g. --only 05)")
    if skipped:
        log(f"hmxnb: member '{member}': {', '.join(skipped)} not run per member; `--only {skipped[0][:2]}` aggregates")
    run_over = {**overrides, **over}
    with member_lock(Path(profile_root) / member):
        return _run_steps(profile, load_params(profile, run_over), run_over, selected, per_member,
                          Path(profile_root) / member, force, progress, log)


def left_out(profile_root: Path) -> dict[str, str]:
    """Sweep members the aggregate step does not compare, with their status (members.json); {} for none."""
    status = read_record(Path(profile_root) / "members.json") or {}
    return {m: s for m, s in status.items() if s != "finished"}


def aggregate_inputs(profile: str, overrides: dict, profile_root: Path, notebooks_dir: Path, log) -> tuple[list[str], str]:
    """(finished members, their joined keys) for the aggregate step; logs the others. RunError when none finished."""
    from hmxnb.artifacts import save_json

    status = member_status(profile, overrides, profile_root, notebooks_dir)
    finished = [m for m, s in status.items() if s["status"] == "finished"]
    others = {m: s["status"] for m, s in status.items() if s["status"] != "finished"}
    if others:
        log(f"hmxnb: aggregating {len(finished)} of {len(status)} members; not included: "
            + ", ".join(f"{m} ({s})" for m, s in others.items()))
    if not finished:
        raise RunError(f"no sweep member of '{profile}' has finished in {profile_root}: run the members first")
    save_json({m: s["status"] for m, s in status.items()}, Path(profile_root) / "members.json")
    return finished, "|".join(status[m]["key"] for m in finished)

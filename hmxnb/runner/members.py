"""Sweep members as independent jobs: their names, which of them finished, one lock per member.

A member (one model x seed of `sweep`) writes only inside outputs/<profile>/<member>/: its steps, its
`run.json`, its `_archive/` and its `.lock`. So any number of member jobs can run side by side in one profile; only
the aggregate step (05, run with `--only 05`) writes at outputs/<profile>/ itself, and it reads the members that
finished (`member_status`), writes `members.json` beside its report and names the others with where they stopped.
Running a member's steps is run.py's part: this module only knows about members, so run.py can import it and not the
other way round.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
from pathlib import Path

from hmxnb.artifacts import save_json
from hmxnb.params import ParamsError, load_params
from hmxnb.paths import safe_name
from hmxnb.runner.runstate import RunError, profile_lock, read_record, read_step
from hmxnb.steps import AGGREGATE_STEPS, notebook_steps, step_keys


def sweep(params: dict) -> list[tuple[str, dict]]:
    """(sub-folder, overrides) per run: one per model in `sweep_models` x seed in `seeds` (or just one).

    The folder names a model by the last part of its id (`Qwen/Qwen3-4B` -> qwen3-4b-seed0); see `model_names` for
    two models that would share one. A model or seed listed twice is refused: the two runs would be one folder.
    """
    models = params["sweep_models"] or [None]
    seeds = params["seeds"] or [None]
    for key, values in (("sweep_models", models), ("seeds", seeds)):
        twice = sorted({v for v in values if values.count(v) > 1}, key=str)
        if twice:
            raise ParamsError(f"{key} lists {', '.join(map(repr, twice))} more than once; each sweep member needs "
                              "its own model x seed")
    names = model_names([m for m in models if m is not None])
    runs = []
    for model, seed in itertools.product(models, seeds):
        over, parts = {}, []
        if model is not None:
            over["model_name_or_path"] = model
            parts.append(names[model])
        if seed is not None:
            over["seed"] = seed
            parts.append(f"seed{seed}")
        runs.append(("-".join(parts), over))
    if len({name for name, _ in runs}) < len(runs):  # only for contrived ids (one named like another's hashed name)
        raise ParamsError(f"sweep member names collide: {', '.join(name for name, _ in runs)}")
    return runs


def model_names(models: list[str]) -> dict[str, str]:
    """Model id -> its folder-name part, unique among `models`.

    The last part of the id, lower-cased, as before, so existing outputs keep their folders. Models sharing that
    part (`Qwen/Qwen3-0.6B`, `unsloth/Qwen3-0.6B`) are all named with their organisation (qwen-qwen3-0.6b,
    unsloth-qwen3-0.6b), which says which is which; should that still collide (ids differing only in case or in
    characters a folder name drops), a short hash of the full id is added.
    """
    def parts(model: str, n: int) -> str:
        return safe_name("-".join(model.rstrip("/").split("/")[-n:]).lower())

    def spread(names: dict[str, str], rename) -> dict[str, str]:
        seen = collections.Counter(names.values())
        return {m: rename(m) if seen[n] > 1 else n for m, n in names.items()}

    names = spread({m: parts(m, 1) for m in models}, lambda m: parts(m, 2))
    return spread(names, lambda m: f"{names[m]}-{hashlib.sha256(m.encode()).hexdigest()[:6]}")


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
    return [s for s in notebook_steps(notebooks_dir) if s.stem not in AGGREGATE_STEPS]


def expected_keys(params: dict, steps: list[Path]) -> dict[str, str]:
    """Step name -> the key the runner gives it for these params."""
    return step_keys(params, steps)


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
    """Member -> {"status", "key", "error"} from its per-member steps' step.json.

    status: finished (the last step ok with the key these params give), running (its lock is held), failed (a step
    failed with these params; `error` names the step and its error line), interrupted, stale (finished with other
    params or notebooks), missing (never run). `key` is the last step's key when finished.
    """
    steps = per_member_steps(notebooks_dir)
    base = load_params(profile, overrides)
    out = {}
    for member, over in sweep(base):
        keys = expected_keys(load_params(profile, {**overrides, **over}), steps)
        member_dir = Path(profile_root) / member
        if member_dir.is_dir() and is_locked(member_dir):
            status, error = "running", ""
        else:
            status, error = _member_state(member_dir, steps, keys)
        out[member] = {"status": status, "key": keys[steps[-1].stem] if status == "finished" else None,
                       "error": error}
    return out


def _member_state(member_dir: Path, steps: list[Path], keys: dict[str, str]) -> tuple[str, str]:
    """(status, error) of a member no process is writing: its last step's record when that finished; else the
    first step not finished with these params says why (a member that failed in 01 has no step.json in 04: it is
    failed, not missing)."""
    last = read_step(member_dir / steps[-1].stem) or {}
    if last.get("status") == "ok":
        return ("finished", "") if last.get("key") == keys[steps[-1].stem] else ("stale", "")
    for nb in steps:
        rec = read_step(member_dir / nb.stem) or {}
        if rec.get("key") != keys[nb.stem]:
            return "missing", ""
        if rec.get("status") == "failed":
            return "failed", f"{nb.stem}: {rec.get('error') or 'no error recorded'}"
        if rec.get("status") in ("running", "interrupted"):  # 'running' with no lock held: the runner was killed
            return "interrupted", nb.stem
    return "missing", ""


def describe(state: dict) -> str:
    """One line for a member's state: its status, and where it stopped (a failed one: the step and error line)."""
    return f"{state['status']} in {state['error']}" if state["error"] else state["status"]


def aggregate_inputs(profile: str, overrides: dict, profile_root: Path, notebooks_dir: Path,
                     log) -> tuple[list[str], str, dict[str, str]]:
    """(finished members, their joined keys, {member: why not} of the others) for the aggregate step; logs the
    others. RunError when none finished.

    members.json holds one line per member: `finished`, or why not (`failed in 02_train_human: <error line>`)."""
    status = member_status(profile, overrides, profile_root, notebooks_dir)
    finished = [m for m, s in status.items() if s["status"] == "finished"]
    others = {m: describe(s) for m, s in status.items() if s["status"] != "finished"}
    if others:
        log(f"hmxnb: aggregating {len(finished)} of {len(status)} members; not included: "
            + ", ".join(f"{m} ({s})" for m, s in others.items()))
    if not finished:
        raise RunError(f"no sweep member of '{profile}' has finished in {profile_root}: run the members first")
    save_json({m: describe(s) for m, s in status.items()}, Path(profile_root) / "members.json")
    return finished, "|".join(status[m]["key"] for m in finished), others

"""What the runner knows about outputs/<profile>/, true at every moment: one lock, per-step records, run.json, history.

- `.lock`: held (fcntl.flock) by the one runner writing under outputs/<profile>/; a second runner is refused with the
  holder's pid. The kernel releases the lock when its process dies, also on kill -9.
- `<step>/step.json`: that step's state (running | ok | failed | interrupted | stale), its key, params, process id,
  run id, the data files it read (sha256), the runs of the steps it read (hmxnb.runner.freshness), the code that ran it
  (`code`: git commit, a hash of hmxnb/'s source, the notebook's hash) and, once finished, the size and sha256 of
  every file it wrote (`files`; a file missing or changed since makes the step stale).
- `run.json`: every step's state and code, rewritten at each change (archive, start, end); a step still 'running'
  in a process that is gone reads 'interrupted' (`read_run` says so for a run.json left 'running' by a process that
  was killed, e.g. with kill -9, before it could rewrite it).
- `history.jsonl`: one line appended per invocation (steps run, status: ok, failed, interrupted, refused, error);
  never overwritten.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from hmxnb.artifacts import append_jsonl, git_commit, package_code_hash, package_versions, save_json

LOCK_FILE = ".lock"


class RunError(RuntimeError):
    """A run could not start or a step failed; the message is one line."""


BUSY = "{folder} is in use by another runner ({holder}); wait for it to finish or stop it"


@contextmanager
def profile_lock(folder: Path, busy: type[RunError] = RunError, message: str = BUSY):
    """Hold `folder/.lock` while the block runs (flock: released when the process ends, even on a kill). Raises
    `busy` with `message` when another process holds it, RunError when the folder is unwritable."""
    import fcntl

    try:
        folder.mkdir(parents=True, exist_ok=True)
        f = open(folder / LOCK_FILE, "a+", encoding="utf-8")
    except OSError as err:
        raise RunError(f"cannot write to the outputs folder {folder}: {err.strerror or err}") from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise busy(message.format(folder=folder, holder=holder)) from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        f.flush()
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def read_record(path: Path) -> dict | None:
    """A JSON record this package wrote (step.json, members.json), or None when missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_step(step_dir: Path) -> dict | None:
    """The step's `step.json`, or None when missing or unreadable."""
    return read_record(step_dir / "step.json")


def write_step(step_dir: Path, key: str, params: dict, phash: str, status: str, **extra) -> None:
    """Record a step's state in `step.json` (atomically), with the params and this process's id."""
    save_json({"key": key, "status": status, "params_hash": phash, "pid": os.getpid(),
               "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra, "params": params}, step_dir / "step.json")


def step_status(rec: dict | None) -> str:
    """A step record's status as it is now: 'missing' without one, and 'interrupted' for 'running' written by
    another process (the caller holds the lock, so that process is gone)."""
    status = (rec or {}).get("status", "missing")
    return "interrupted" if status == "running" and rec.get("pid") != os.getpid() else status


def settle_running(step_dir: Path) -> None:
    """A step this process left 'running' (a stop between executing and recording) now reads 'interrupted'."""
    rec = read_step(step_dir)
    if rec and rec.get("status") == "running" and rec.get("pid") == os.getpid():
        save_json({**rec, "status": "interrupted"}, step_dir / "step.json")


def code_state(notebook: Path) -> dict:
    """The code a step runs now: git commit (None outside git), hmxnb/'s source hash, the notebook's hash."""
    import hashlib

    return {"git_commit": git_commit(), "package": package_code_hash(),
            "notebook": hashlib.sha256(Path(notebook).read_bytes()).hexdigest()[:12]}


def code_changed(recorded: dict | None, now: dict) -> str:
    """'hmxnb/ source 1a2b… -> 3c4d…' when the package source that ran a step differs from now; '' when the same or
    not recorded."""
    old = (recorded or {}).get("package")
    return f"hmxnb/ source {old} -> {now['package']}" if old and old != now["package"] else ""


# what a step writes that is not a result: its record, the kernel's log, training state kept for resuming, and the
# executed notebook (opening and saving it in Jupyter must not make the step's results stale)
NOT_ARTEFACTS = ("step.json", "kernel.log", "checkpoints/")


def _artefacts(step_dir: Path) -> list[Path]:
    return sorted(p for p in step_dir.rglob("*") if p.is_file() and p.suffix != ".ipynb"
                  and not any(p.relative_to(step_dir).as_posix().startswith(n) for n in NOT_ARTEFACTS))


def artefact_files(step_dir: Path) -> dict[str, str]:
    """Relative path -> 'size:sha256' of every file a finished step wrote (NOT_ARTEFACTS left out)."""
    from hmxnb.steps import file_sha256

    return {p.relative_to(step_dir).as_posix(): f"{p.stat().st_size}:{file_sha256(p)}" for p in _artefacts(step_dir)}


def artefact_problem(step_dir: Path, recorded: dict | None) -> str:
    """'adapter/adapter_model.safetensors is missing' (or 'changed') for the first file a finished step wrote that
    is not as it was when it finished; '' when all are, or nothing was recorded."""
    from hmxnb.steps import file_sha256

    for name, stamp in (recorded or {}).items():
        path = step_dir / name
        if not path.is_file():
            return f"{name} is missing"
        size, _, digest = stamp.partition(":")
        if path.stat().st_size != int(size) or file_sha256(path) != digest:
            return f"{name} changed since the step finished"
    return ""


def _step_state(step_dir: Path, key: str) -> dict:
    rec = read_step(step_dir) or {}
    return {"step": step_dir.name, "status": step_status(rec or None), "key": rec.get("key"),
            "current": rec.get("key") == key, "seconds": rec.get("seconds"), "code": rec.get("code"),
            "error": rec.get("error") or rec.get("stale", "")}


def overall_status(states: list[dict]) -> str:
    """ok only when every step finished with the current key; else running / failed / interrupted / stale /
    incomplete."""
    found = {s["status"] for s in states}
    if all(s["status"] == "ok" and s["current"] for s in states):
        return "ok"
    for status in ("running", "failed", "interrupted", "stale"):
        if status in found:
            return status
    return "incomplete"


def write_run_record(out_root: Path, params: dict, phash: str, keys: dict[str, str]) -> Path:
    """Rewrite `run.json` from the step records of every step (`keys`: step name -> the key it has with these
    params)."""
    states = [_step_state(out_root / name, key) for name, key in keys.items()]
    status = overall_status(states)
    try:
        return save_json({
            "profile": params["profile"], "status": status, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "pid": os.getpid() if status == "running" else None, "params_hash": phash, "versions": package_versions(),
            "runner_git_commit": git_commit(), "steps": states, "params": params,
        }, out_root / "run.json")
    except OSError:  # e.g. a full disk: an older run.json would now say what is no longer true; removing needs no space
        (out_root / "run.json").unlink(missing_ok=True)
        raise


def read_run(out_root: Path) -> dict | None:
    """`run.json` as it is now: 'running' left by a process that is gone (killed before it could rewrite the record)
    reads 'interrupted', as its running steps do. None when missing or unreadable."""
    rec = read_record(Path(out_root) / "run.json")
    if rec and rec.get("status") == "running" and not _alive(rec.get("pid")):
        rec = {**rec, "status": "interrupted", "steps": [{**s, "status": "interrupted"} if s.get("status") == "running"
                                                         else s for s in rec.get("steps", [])]}
    return rec


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def append_history(out_root: Path, phash: str, status: str, steps: list[dict], started: float,
                   error: str = "") -> Path:
    """Append one line for this invocation to `history.jsonl` (what ran, how it ended: ok, failed, interrupted,
    refused or error, with its one-line error); earlier lines are kept."""
    line = {"started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "status": status, "params_hash": phash,
            "argv": sys.argv[1:], "git_commit": git_commit(), "steps": steps, **({"error": error} if error else {})}
    return append_jsonl([line], out_root / "history.jsonl")


def _archive(step_dir: Path, out_root: Path, old_key: str) -> Path:
    """Move a step folder into _archive/ in one rename (never a copy that a failure could leave twice)."""
    dest = out_root / "_archive" / f"{step_dir.name}-{old_key}-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while dest.exists():  # two archives of one step within a second
        dest, n = dest.with_name(f"{dest.name.rsplit('~', 1)[0]}~{n}"), n + 1
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(step_dir, dest)
    except OSError as err:
        raise RunError(f"cannot move {step_dir} to {dest} ({err.strerror or err}); nothing was archived") from None
    return dest


def check_writable(step_dir: Path) -> None:
    """Refuse, in one line naming it, a step folder (or its outputs folder, or its kernel.log) this user cannot
    write, before anything is archived or run: archiving renames the folder, which needs write access to it and to
    its parent. (root passes every check: the tests patch os.access.)"""
    for path in (step_dir.parent, step_dir, step_dir / "kernel.log"):
        mode = os.W_OK | os.X_OK if path.is_dir() else os.W_OK
        if path.exists() and not os.access(path, mode):
            raise RunError(f"{path} is read-only for this user: make it writable (chmod -R u+w {step_dir}) or move "
                           "it away; nothing was archived or run")


def plan_step(step_dir: Path, key: str, force: bool, out_root: Path, params: dict | None = None,
              data: dict | None = None) -> str:
    """Decide what to do with one step: 'skip', 'run' (fresh, or a retry in place) or raise if a different run is there.

    With `force` the step's outputs, whatever run made them, are archived first: a forced step always starts afresh;
    so does a stale one (finished, but what it read has changed since).
    """
    prev = read_step(step_dir)
    has_outputs = step_dir.exists() and any(step_dir.iterdir())
    if prev is None and has_outputs and not force:
        raise RunError(f"{step_dir} holds outputs of an unknown run (no step.json); move it away or use --force to "
                       "archive it")
    same = prev is not None and prev.get("key") == key and not force
    if same and prev.get("status") == "ok":
        return "skip"
    if prev is not None and not force and not same:
        raise RunError(f"{step_dir} holds outputs of a different run (key {prev.get('key')}, now {key}; "
                       f"{why_different(prev, params or {}, data or {})}); use --force to archive them under _archive/ "
                       "and re-run")
    check_writable(step_dir)
    if same and prev.get("status") != "stale":
        return "run"  # retry a failure in place (keeps checkpoints)
    if has_outputs:
        _archive(step_dir, out_root, (prev or {}).get("key", "unknown"))
    return "run"


def why_different(prev: dict, params: dict, data: dict) -> str:
    """What makes a recorded step another run: the params that differ, else the data files, else the notebook."""
    from hmxnb.steps import changed_data
    from hmxnb.steps import LOCATION_KEYS

    located = set(LOCATION_KEYS)  # where the data lives is not what makes another run: its content is
    changed = changed_keys({k: v for k, v in (prev.get("params") or {}).items() if k not in located},
                           {k: v for k, v in params.items() if k not in located})
    if changed:
        return changed
    if data and "data" not in prev:
        return "recorded before the data files it reads were part of its key"
    files = changed_data(prev.get("data"), data)
    return f"data changed: {files}" if files else "the notebook or an earlier step changed"


def changed_keys(old: dict | None, new: dict, limit: int = 5) -> str:
    """'max_steps 4 -> 7, seed 0 -> 1' for the params that differ (at most `limit`), '' when none or unknown."""
    if not old:
        return ""
    diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    text = ", ".join(f"{k} {_short(old.get(k))} -> {_short(new.get(k))}" for k in diff[:limit])
    return text + (f" and {len(diff) - limit} more" if len(diff) > limit else "")


def _short(value, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."

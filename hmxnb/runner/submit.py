"""Fan a profile's sweep out as jobs: one job per member (steps 01-04), then the aggregate step 05 as its own job.

`python -m hmxnb submit --profile paper --executor slurm` submits, for every sweep member that has not finished,
a SLURM job running `python -m hmxnb run --profile paper --member <member>`, and a job running `--only 05` that
starts once all of them have ended (`afterany`: step 05 compares whatever finished and names the rest).
`--executor local` runs the same commands as local processes (at most `--max-parallel` at once), then step 05.
Re-submitting skips members that finished, run, or wait in the queue. Job logs: outputs/<profile>/_jobs/.
`--notebooks DIR` runs the numbered notebooks of another folder (the tests' stand-ins), passed on to every job.

Jobs go through submitit (Meta's SLURM launcher: it writes the sbatch script, submits, tracks job ids and logs, and
has a local executor with the same interface); each job is the documented command line (`RunnerJob`), so a job does
exactly what a person would type, and ends with true records when the cluster stops it (hmxnb.runner.job).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hmxnb.artifacts import _jsonable, append_jsonl
from hmxnb.runner.job import RunnerJob
from hmxnb.runner.members import member_status, sweep
from hmxnb.params import _check, load_params
from hmxnb.paths import NOTEBOOKS, OUTPUTS, ROOT
from hmxnb.runner.runstate import RunError

# SLURM resources: params key -> submitit SlurmExecutor parameter
RESOURCE_KEYS = {"slurm_partition": "partition", "slurm_gpus_per_node": "gpus_per_node",
                 "slurm_cpus_per_task": "cpus_per_task", "slurm_mem_gb": "mem", "slurm_time_min": "time"}
# The aggregate step (statistics and the report) needs no GPU.
AGGREGATE_RESOURCES = {"gpus_per_node": 0, "cpus_per_task": 2, "time": 120}


def job_name(profile: str, member: str | None) -> str:
    """The SLURM job name of a member (or of the aggregate step when member is None)."""
    return f"hmxnb-{profile}-{member or 'aggregate'}"


def run_command(profile: str, overrides: dict, member: str | None, outputs: Path | None = None,
                notebooks: Path | None = None) -> list[str]:
    """The `python -m hmxnb run` command of one member, or of the aggregate step (member None)."""
    cmd = [sys.executable, "-m", "hmxnb", "run", "--profile", profile]
    for key, value in overrides.items():
        cmd += ["--set", f"{key}={_yaml_text(value)}"]
    if outputs is not None:
        cmd += ["--outputs", str(outputs)]
    if notebooks is not None:
        cmd += ["--notebooks", str(notebooks)]
    return cmd + (["--member", member] if member else ["--only", "05", "--force"])  # more members may have finished


def _yaml_text(value) -> str:
    """`value` as text that parse_override (YAML 1.1) reads back equal: JSON, with floats always holding a dot."""
    if isinstance(value, float):
        text = repr(value)
        return text if "." in text or "e" not in text else text.replace("e", ".0e")
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_text(v) for v in value) + "]"
    return json.dumps(_jsonable(value))


def slurm_resources(params: dict, flags: dict) -> dict:
    """submitit SlurmExecutor parameters from the params' slurm_* keys, each overridden by a flag that is not None
    (validated as the key is: a value with a newline would break the sbatch script)."""
    res = {}
    for key, name in RESOURCE_KEYS.items():
        value = params[key] if flags.get(key) is None else _check(key, flags[key], "the submit flags")
        if value is None or (name == "mem" and value == 0):
            continue  # the cluster's default
        res[name] = f"{value}G" if name == "mem" else value
    if res.get("gpus_per_node", 0) == 0:
        res.pop("gpus_per_node", None)
    if params["num_processes"] > res.get("gpus_per_node", 0) > 0:
        raise RunError(f"params key 'num_processes' ({params['num_processes']}) exceeds slurm_gpus_per_node "
                       f"({res['gpus_per_node']})")
    return res


def queued_job_names() -> set[str]:
    """Names of this user's pending or running SLURM jobs (empty without squeue)."""
    if shutil.which("squeue") is None:
        return set()
    res = subprocess.run(["squeue", "--me", "-h", "-o", "%j"], capture_output=True, text=True)
    return set(res.stdout.split()) if res.returncode == 0 else set()


def plan(profile: str, overrides: dict, profile_root: Path, notebooks_dir: Path,
         queued: set[str]) -> tuple[list[str], dict]:
    """(members to submit, {member: why skipped}): finished, running and queued members are skipped."""
    todo, skipped = [], {}
    name = load_params(profile, overrides)["profile"]  # as the jobs are named: a yaml path gives its stem
    for member, s in member_status(profile, overrides, profile_root, notebooks_dir).items():
        if s["status"] in ("finished", "running"):
            skipped[member] = s["status"]
        elif job_name(name, member) in queued:
            skipped[member] = "queued"
        else:
            todo.append(member)
    return todo, skipped


def make_executor(kind: str, folder: Path, resources: dict, name: str):
    """A submitit executor: SlurmExecutor with `resources` (sbatch fields) or LocalExecutor with the time limit."""
    try:
        import submitit
    except ImportError:
        raise RunError("submitit is not installed: pip install -e '.[cluster]'") from None

    if kind == "slurm":
        ex = submitit.SlurmExecutor(folder=folder)
        ex.update_parameters(job_name=name, **resources)
    else:
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=resources.get("time", 1440))
    return ex


@dataclass(frozen=True, kw_only=True)
class Submission:
    """What one `submit` call fixes for every job it submits, passed whole to the helpers that submit and wait."""
    profile: str  # as given (a name or a yaml path): the jobs' --profile
    name: str  # the loaded profile's name: the jobs are named after it (`plan` looks them up by it)
    overrides: dict
    executor: str  # slurm | local
    folder: Path  # outputs/<profile>/_jobs/: submitit's files and submissions.jsonl
    resources: dict  # submitit parameters of a member job
    outputs: Path | None = None  # --outputs, absolute: jobs run in the repository root
    notebooks: Path | None = None  # --notebooks, absolute; None: the repository's notebooks/
    max_parallel: int = 1
    log: Callable[[str], object] = print

    def command(self, member: str | None) -> list[str]:
        return run_command(self.profile, self.overrides, member, self.outputs, self.notebooks)


def _submit(sub: Submission, resources: dict, member: str | None):
    """Submit the job of one member (the aggregate step for None), logged and appended to submissions.jsonl."""
    name, cmd = job_name(sub.name, member), sub.command(member)
    job = make_executor(sub.executor, sub.folder, resources, name).submit(RunnerJob(cmd, cwd=str(ROOT)))
    sub.log(f"submitted {name}: job {job.job_id}")
    append_jsonl([{"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "executor": sub.executor, "job_id": job.job_id,
                   "name": name, "command": cmd}], sub.folder / "submissions.jsonl")  # only the submitting process
    return job


def wait_all(jobs: list, log, poll_s: float = 0.5) -> dict[str, str]:
    """Wait until every job is done; job id -> 'ok' or 'failed: <last line>'. A poll is cheap: submitit's `done()`
    looks for the job's result file and asks the scheduler (sacct) at most every few seconds to a minute."""
    out = {}
    for job in jobs:
        while not job.done():
            time.sleep(poll_s)
        try:
            job.result()
            out[job.job_id] = "ok"
        except Exception as err:  # submitit raises FailedJobError / UncompletedJobError with the job's stderr
            out[job.job_id] = "failed: " + (str(err).strip().splitlines() or [""])[-1][:200]
        log(f"job {job.job_id} ({job.state}): {out[job.job_id]}")
    return out


def submit(profile: str, overrides: dict, executor: str = "slurm", flags: dict | None = None,
           outputs: Path | None = None, *, notebooks_dir: Path | None = None, max_parallel: int = 1,
           wait: bool = False, dry_run: bool = False, log=print) -> dict:
    """Submit the sweep of `profile` (see module docstring). Returns {"members", "skipped", "jobs", "results"}.
    `notebooks_dir`: the numbered notebooks to run (default: the repository's notebooks/)."""
    params = load_params(profile, overrides)
    if sweep(params) == [("", {})]:
        raise RunError(f"profile '{params['profile']}' has no sweep (sweep_models / seeds): run it with "
                       "`python -m hmxnb run`")
    outputs = Path(outputs).resolve() if outputs else None  # jobs run in the repository root
    notebooks = Path(notebooks_dir).resolve() if notebooks_dir else None
    profile_root = (outputs or OUTPUTS) / params["profile"]
    todo, skipped = plan(profile, overrides, profile_root, notebooks or NOTEBOOKS,
                         queued_job_names() if executor == "slurm" else set())
    for member, why in skipped.items():
        log(f"skip {member}: {why}")
    sub = Submission(profile=profile, name=params["profile"], overrides=overrides, executor=executor,
                     folder=profile_root / "_jobs", resources=slurm_resources(params, flags or {}), outputs=outputs,
                     notebooks=notebooks, max_parallel=max_parallel, log=log)
    out = {"members": todo, "skipped": skipped, "jobs": {}, "results": {}}
    if dry_run:
        for member in todo + [None]:
            log(" ".join(sub.command(member)))
        return out
    sub.folder.mkdir(parents=True, exist_ok=True)
    return _submit_all(sub, todo, wait, out)


def _submit_all(sub: Submission, members: list[str], wait: bool, out: dict) -> dict:
    """The member jobs, then the aggregate job (on SLURM: after all of them); waits when asked or local."""
    member_jobs = _submit_members(sub, members, out["results"])
    out["jobs"].update({j.job_id: m for m, j in member_jobs.items()})
    if sub.executor == "local":
        out["results"].update(wait_all([j for j in member_jobs.values() if j.job_id not in out["results"]], sub.log))
    agg_res = {**sub.resources, **AGGREGATE_RESOURCES}
    agg_res.pop("gpus_per_node")
    if sub.executor == "slurm" and member_jobs:
        agg_res["dependency"] = "afterany:" + ":".join(j.job_id for j in member_jobs.values())
    agg = _submit(sub, agg_res, None)
    out["jobs"][agg.job_id] = "aggregate"
    if wait or sub.executor == "local":
        pending = [j for j in member_jobs.values() if j.job_id not in out["results"]] + [agg]
        out["results"].update(wait_all(pending, sub.log))
    if any(r != "ok" for r in out["results"].values()):
        sub.log(f"hmxnb: some jobs failed; logs in {sub.folder}")
    return out


def _submit_members(sub: Submission, members: list[str], results: dict) -> dict:
    """Member -> submitted job. Local: at most `max_parallel` run at once (waits for a batch, into `results`)."""
    jobs, batch = {}, []
    for member in members:
        if sub.executor == "local" and len(batch) >= sub.max_parallel:
            results.update(wait_all(batch, sub.log))
            batch = []
        jobs[member] = _submit(sub, sub.resources, member)
        batch.append(jobs[member])
    return jobs


def main_submit(args) -> int:
    """CLI entry for `python -m hmxnb submit`."""
    flags = {"slurm_partition": args.partition, "slurm_gpus_per_node": args.gpus, "slurm_cpus_per_task": args.cpus,
             "slurm_mem_gb": args.mem_gb, "slurm_time_min": args.time_min}
    out = submit(args.profile, dict(args.set), args.executor, flags, args.outputs, notebooks_dir=args.notebooks,
                 max_parallel=args.max_parallel, wait=args.wait, dry_run=args.dry_run)
    return 0 if all(r == "ok" for r in out["results"].values()) else 1

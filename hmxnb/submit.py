"""Fan a profile's sweep out as jobs: one job per member (steps 01-04), then the aggregate step 05 as its own job.

`python -m hmxnb submit --profile paper --executor slurm` submits, for every sweep member that has not finished,
a SLURM job running `python -m hmxnb run --profile paper --member <member>`, and a job running `--only 05` that
starts once all of them have ended (`afterany`: step 05 compares whatever finished and names the rest).
`--executor local` runs the same commands as local processes (at most `--max-parallel` at once), then step 05.
Re-submitting skips members that finished, run, or wait in the queue. Job logs: outputs/<profile>/_jobs/.

Jobs go through submitit (Meta's SLURM launcher: it writes the sbatch script, submits, tracks job ids and logs, and
has a local executor with the same interface); each job is the documented command line (`RunnerJob`), so a job does
exactly what a person would type, and ends with true records when the cluster stops it (see `RunnerJob`).
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from hmxnb.artifacts import _jsonable, append_jsonl
from hmxnb.members import member_status
from hmxnb.params import load_params

# SLURM resources: params key -> submitit SlurmExecutor parameter
RESOURCE_KEYS = {"slurm_partition": "partition", "slurm_gpus_per_node": "gpus_per_node",
                 "slurm_cpus_per_task": "cpus_per_task", "slurm_mem_gb": "mem", "slurm_time_min": "time"}
# The aggregate step (statistics and the report) needs no GPU.
AGGREGATE_RESOURCES = {"gpus_per_node": 0, "cpus_per_task": 2, "time": 120}


def job_name(profile: str, member: str | None) -> str:
    """The SLURM job name of a member (or of the aggregate step when member is None)."""
    return f"hmxnb-{profile}-{member or 'aggregate'}"


def run_command(profile: str, overrides: dict, member: str | None, outputs: Path | None = None) -> list[str]:
    """The `python -m hmxnb run` command of one member, or of the aggregate step (member None)."""
    cmd = [sys.executable, "-m", "hmxnb", "run", "--profile", profile]
    for key, value in overrides.items():
        cmd += ["--set", f"{key}={_yaml_text(value)}"]
    if outputs is not None:
        cmd += ["--outputs", str(outputs)]
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
    """submitit SlurmExecutor parameters from the params' slurm_* keys, each overridden by a flag that is not None."""
    res = {}
    for key, name in RESOURCE_KEYS.items():
        value = flags.get(key) if flags.get(key) is not None else params[key]
        if value is None or (name == "mem" and value == 0):
            continue  # the cluster's default
        res[name] = f"{value}G" if name == "mem" else value
    if res.get("gpus_per_node", 0) == 0:
        res.pop("gpus_per_node", None)
    if params["num_processes"] > res.get("gpus_per_node", 0) > 0:
        from hmxnb.run import RunError

        raise RunError(f"params key 'num_processes' ({params['num_processes']}) exceeds slurm_gpus_per_node ({res['gpus_per_node']})")
    return res


def queued_job_names() -> set[str]:
    """Names of this user's pending or running SLURM jobs (empty without squeue)."""
    if shutil.which("squeue") is None:
        return set()
    res = subprocess.run(["squeue", "--me", "-h", "-o", "%j"], capture_output=True, text=True)
    return set(res.stdout.split()) if res.returncode == 0 else set()


def plan(profile: str, overrides: dict, profile_root: Path, notebooks_dir: Path, queued: set[str]) -> tuple[list[str], dict]:
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
        from hmxnb.run import RunError

        raise RunError("submitit is not installed: pip install -e '.[cluster]'") from None

    if kind == "slurm":
        ex = submitit.SlurmExecutor(folder=folder)
        ex.update_parameters(job_name=name, **resources)
    else:
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=resources.get("time", 1440))
    return ex


class RunnerJob:
    """What a submitit job runs: the `python -m hmxnb run` command as a child process, its output streamed to the
    job's log (as submitit's CommandFunction does), that survives the cluster stopping the job.

    In a job, submitit's worker process handles SIGTERM (it logs it) and SIGUSR2, its warning before the time limit:
    it checkpoints and requeues a preempted job, and for a timed-out one raises at once, where CommandFunction then
    kills the runner (SIGKILL), leaving step.json and run.json saying 'running' and no history line. Here both
    signals are passed to the runner as SIGTERM (which it handles as Ctrl-C: kernel stopped, step 'interrupted',
    records and history written, hmxnb.stop), and submitit's handler runs once the runner has ended. The runner
    also gets SLURM's signals directly (they go to every process of the job step); a second one is ignored."""

    def __init__(self, command: list[str], cwd: str | None = None):
        self.command, self.cwd = list(command), cwd

    def __call__(self) -> str:
        from submitit.core.utils import FailedJobError, copy_process_streams

        out, err = io.StringIO(), io.StringIO()
        print(f"The following command is sent: \"{' '.join(self.command)}\"", flush=True)
        with _PassedOn() as stops:
            with subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=self.cwd) as proc:
                stops.start(proc)
                copy_process_streams(proc, out, err, verbose=True)
                code = proc.wait()
        if code:
            raise FailedJobError(err.getvalue().strip() or f"exit status {code}")
        return out.getvalue().strip()


class _PassedOn:
    """While the block runs, SIGTERM and submitit's warning signal (SUBMITIT_PREEMPT_SIGNAL, USR2 by default) are
    sent on to the runner as SIGTERM; the handlers that were there (submitit's) get them once the block is done."""

    def __init__(self):
        from submitit.core.job_environment import JobEnvironment

        self.signals = [signal.SIGTERM, getattr(signal, f"SIG{JobEnvironment.USR_SIG}", signal.SIGUSR2)]
        self.proc, self.arrived, self.previous = None, [], {}

    def start(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        if self.arrived:  # stopped while the runner was being started
            proc.send_signal(signal.SIGTERM)

    def _pass_on(self, signum, frame) -> None:
        self.arrived.append((signum, frame))
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # where submitit runs a job
            self.previous = {sig: signal.signal(sig, self._pass_on) for sig in self.signals}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        for signum, frame in self.arrived if exc[0] is None else []:  # submitit's requeue / timed-out handling
            if callable(self.previous.get(signum)):
                self.previous[signum](signum, frame)


def _submit(kind, folder, resources, name, cmd, log):
    runner = RunnerJob(cmd, cwd=str(Path(__file__).resolve().parents[1]))
    job = make_executor(kind, folder, resources, name).submit(runner)
    log(f"submitted {name}: job {job.job_id}")
    append_jsonl([{"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "executor": kind, "job_id": job.job_id, "name": name,
                   "command": cmd}], folder / "submissions.jsonl")  # written only by the submitting process
    return job


def wait_all(jobs: list, log, poll_s: float = 2.0) -> dict[str, str]:
    """Wait until every job is done; job id -> 'ok' or 'failed: <last line>'."""
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


def submit(profile: str, overrides: dict, executor: str = "slurm", flags: dict | None = None, outputs: Path | None = None,
           max_parallel: int = 1, wait: bool = False, dry_run: bool = False, log=print) -> dict:
    """Submit the sweep of `profile` (see module docstring). Returns {"members", "skipped", "jobs", "results"}."""
    from hmxnb.run import NOTEBOOKS, ROOT, RunError, sweep

    params = load_params(profile, overrides)
    if sweep(params) == [("", {})]:
        raise RunError(f"profile '{params['profile']}' has no sweep (sweep_models / seeds): run it with `python -m hmxnb run`")
    outputs = Path(outputs).resolve() if outputs else None  # jobs run in the repository root
    profile_root = (outputs or ROOT / "outputs") / params["profile"]
    todo, skipped = plan(profile, overrides, profile_root, NOTEBOOKS, queued_job_names() if executor == "slurm" else set())
    for member, why in skipped.items():
        log(f"skip {member}: {why}")
    resources = slurm_resources(params, flags or {})
    out = {"members": todo, "skipped": skipped, "jobs": {}, "results": {}}
    if dry_run:
        for member in todo + [None]:
            log(" ".join(run_command(profile, overrides, member, outputs)))
        return out
    folder = profile_root / "_jobs"
    folder.mkdir(parents=True, exist_ok=True)
    member_jobs = _submit_members(profile, overrides, todo, executor, folder, resources, outputs, max_parallel, log,
                                  out["results"])
    out["jobs"].update({j.job_id: m for m, j in member_jobs.items()})
    if executor == "local":
        out["results"].update(wait_all([j for j in member_jobs.values() if j.job_id not in out["results"]], log))
    agg_res = {**resources, **AGGREGATE_RESOURCES}
    agg_res.pop("gpus_per_node")
    if executor == "slurm" and member_jobs:
        agg_res["dependency"] = "afterany:" + ":".join(j.job_id for j in member_jobs.values())
    agg = _submit(executor, folder, agg_res, job_name(params["profile"], None), run_command(profile, overrides, None, outputs), log)
    out["jobs"][agg.job_id] = "aggregate"
    if wait or executor == "local":
        pending = [j for j in member_jobs.values() if j.job_id not in out["results"]] + [agg]
        out["results"].update(wait_all(pending, log))
    if any(r != "ok" for r in out["results"].values()):
        log(f"hmxnb: some jobs failed; logs in {folder}")
    return out


def _submit_members(profile, overrides, members, executor, folder, resources, outputs, max_parallel, log, results) -> dict:
    """Member -> submitted job (named after the loaded profile, as `plan` looks them up). Local: at most `max_parallel` run at once (waits for a batch, into `results`)."""
    jobs, batch, name = {}, [], load_params(profile, overrides)["profile"]
    for member in members:
        if executor == "local" and len(batch) >= max_parallel:
            results.update(wait_all(batch, log))
            batch = []
        job = _submit(executor, folder, resources, job_name(name, member), run_command(profile, overrides, member, outputs),
                      log)
        jobs[member] = job
        batch.append(job)
    return jobs


def main_submit(args) -> int:
    """CLI entry for `python -m hmxnb submit`."""
    flags = {"slurm_partition": args.partition, "slurm_gpus_per_node": args.gpus, "slurm_cpus_per_task": args.cpus,
             "slurm_mem_gb": args.mem_gb, "slurm_time_min": args.time_min}
    out = submit(args.profile, dict(args.set), args.executor, flags, args.outputs, args.max_parallel, args.wait, args.dry_run)
    return 0 if all(r == "ok" for r in out["results"].values()) else 1

"""What one submitted job runs: the `python -m hmxnb run` command line as a child process, that survives the
cluster stopping the job (submit.py decides which jobs to submit; submitit runs this object inside each job)."""

from __future__ import annotations

import io
import signal
import subprocess
import threading


class RunnerJob:
    """What a submitit job runs: the `python -m hmxnb run` command as a child process, its output streamed to the
    job's log (as submitit's CommandFunction does), that survives the cluster stopping the job.

    In a job, submitit's worker process handles SIGTERM (it logs it) and SIGUSR2, its warning before the time limit:
    it checkpoints and requeues a preempted job, and for a timed-out one raises at once, where CommandFunction then
    kills the runner (SIGKILL), leaving step.json and run.json saying 'running' and no history line. Here both
    signals are passed to the runner as SIGTERM (which it handles as Ctrl-C: kernel stopped, step 'interrupted',
    records and history written, hmxnb.runner.stop), and submitit's handler runs once the runner has ended. The runner
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

"""Signals that end a run are handled as Ctrl-C is, so the records say what happened whatever ended the runner.

SIGTERM is what `kill`, `timeout` and SLURM's time limit send (SLURM to every process of the job step, then SIGKILL
after its KillWait, 30 s by default); SIGUSR2 is submitit's warning before the limit (`--signal=USR2@90`, also sent
to every process of the step); SIGHUP comes when the terminal goes. Python's default for all three is to die on the
spot, leaving `step.json` and `run.json` saying 'running' and no history line. While a run is under
`stop_on_signals`, the first such signal raises `Stopped` (a KeyboardInterrupt) in the main thread instead: papermill
shuts the kernel down, the step is marked 'interrupted', run.json is rewritten and the history line written, as for
Ctrl-C. Later signals are ignored, so they cannot cut that clean-up short, and one arriving while `held()` records
are written waits until they are. The previous handlers come back afterwards (the runner is also a library).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

STOP_SIGNALS = ("SIGTERM", "SIGUSR2", "SIGHUP")


class Stopped(KeyboardInterrupt):
    """A stop signal arrived: every clean-up that Ctrl-C gets runs for it too (it is a KeyboardInterrupt)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        """128 + the signal number (143 for SIGTERM), what a shell reports for a process that signal ended, so
        `timeout`, SLURM and scripts still read "terminated"; 130 would claim a Ctrl-C."""
        return 128 + self.signum


class _State:
    def __init__(self):
        self.raised = False
        self.holding = 0
        self.pending: int | None = None

    def handle(self, signum, frame) -> None:
        if self.raised:
            return  # the first signal's clean-up is under way: let it finish
        if self.holding:
            self.pending = self.pending or signum
            return
        self.raised = True
        raise Stopped(signum)


_active: list[_State] = []


@contextmanager
def stop_on_signals(names: tuple[str, ...] = STOP_SIGNALS):
    """While the block runs, the first of `names` raises Stopped in the main thread. Signals set to be ignored
    (SIGHUP under nohup) stay ignored; outside the main thread (where handlers cannot be set) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    state, previous = _State(), {}
    for name in names:
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, state.handle)
    _active.append(state)
    try:
        yield
    finally:
        _active.remove(state)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def held():
    """Records written in this block are written whole: a stop signal arriving meanwhile takes effect after it."""
    state = _active[-1] if _active else None
    if state is None:
        yield
        return
    state.holding += 1
    try:
        yield
    finally:
        state.holding -= 1
        if not state.holding and state.pending and not state.raised:
            signum, state.pending, state.raised = state.pending, None, True
            raise Stopped(signum)

"""A throwaway single-node SLURM cluster on localhost for the submit test: munged + slurmctld + slurmd, CPU only.

Everything lives in one folder (config, munge key and socket, state, logs, pid files) on free ports, so it never
touches a system cluster; `stop()` ends the daemons this helper started, by their pid. It needs Debian's
`slurm-wlm` and `munge` installed (.ci/run installs them; the test skips, naming what is missing, without them):
nothing is installed from inside the tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")


def missing_tools() -> list[str]:
    """SLURM / munge programs not on PATH (daemons live in /usr/sbin, which a non-root PATH may lack)."""
    return [t for t in (*DAEMONS, "sbatch", "squeue", "scontrol") if _which(t) is None]


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SLURM_CONF = """\
ClusterName=hmxnbtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class LocalSlurm:
    """Start with `start()`, submit with `env` (SLURM_CONF points at the config), stop with `stop()`."""

    def __init__(self, root: Path, cpus: int = 2, mem_mb: int = 8000):
        self.root = Path(root)
        self.cpus, self.mem_mb = cpus, mem_mb
        self.conf = self.root / "slurm.conf"
        self.pids: dict[str, int] = {}
        self.env = {**os.environ, "SLURM_CONF": str(self.conf),
                    "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}

    def write_config(self) -> None:
        for d in ("munge", "state", "spool"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o600)
        self.conf.write_text(SLURM_CONF.format(host=socket.gethostname().split(".")[0], root=self.root, cpus=self.cpus,
                                               mem_mb=self.mem_mb, ctld_port=_free_port(), d_port=_free_port()))

    def start(self, timeout: float = 60) -> None:
        """Write the config, start the three daemons, wait until the node is idle."""
        self.write_config()
        m = self.root / "munge"
        self._spawn("munged", [_which("munged"), "--foreground", "--force", f"--key-file={m / 'munge.key'}",
                               f"--socket={m / 'munge.socket'}", f"--pid-file={m / 'munged.pid'}",
                               f"--log-file={m / 'munged.log'}", f"--seed-file={m / 'munged.seed'}"])
        self._wait(lambda: (m / "munge.socket").exists(), 15, "munged socket")
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._spawn("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf)])
        self._wait(self.node_idle, timeout, "node idle in sinfo")

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / f"{name}.out", "w")
        self.pids[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                           start_new_session=True).pid

    def _wait(self, ready, timeout: float, what: str) -> None:
        end = time.time() + timeout
        while time.time() < end:
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"local SLURM: no {what} after {timeout:.0f}s; logs in {self.root}")

    def node_idle(self) -> bool:
        res = subprocess.run(["sinfo", "-h", "-o", "%t"], env=self.env, capture_output=True, text=True)
        return res.returncode == 0 and res.stdout.strip() in ("idle", "mix", "alloc")

    def job_states(self) -> dict[str, str]:
        """Job id -> state for every job the controller remembers (MinJobAge keeps finished ones for an hour)."""
        res = subprocess.run(["scontrol", "show", "job", "-o"], env=self.env, capture_output=True, text=True)
        out = {}
        for line in res.stdout.splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if "JobId" in fields:
                out[fields["JobId"]] = f"{fields.get('JobName', '')}:{fields.get('JobState', '?')}"
        return out

    def stop(self) -> None:
        """SIGTERM the daemons this helper started (by pid), then SIGKILL what is left after 10 s."""
        for name in reversed(DAEMONS):
            pid = self.pids.get(name)
            if pid:
                _kill(pid, signal.SIGTERM)
        end = time.time() + 10
        for name, pid in self.pids.items():
            while time.time() < end and _alive(pid):
                time.sleep(0.2)
            if _alive(pid):
                _kill(pid, signal.SIGKILL)
        self.pids.clear()


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return False


def _kill(pid: int, sig) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass

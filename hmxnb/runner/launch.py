"""One training run on several processes: `accelerate launch` (the launcher TRL documents) when num_processes > 1.

The runner decides how a training step trains. With `num_processes` 1 (the default) notebook 02/03 trains in its
kernel. With more, before executing the notebook the runner calls `train_in_processes(params, step_dir)`: it writes
the params to `step_dir/launch_params.json` and starts

    accelerate launch --multi_gpu --num_processes N -m hmxnb.runner.launch step_dir/launch_params.json step_dir

as a subprocess, streaming its output. Each process runs `hmxnb.train.train` on its share of the prompts; TRL
gathers the rewards across processes, so one GRPO step sees per_device_train_batch_size x num_processes x
gradient_accumulation_steps completions; rank 0 writes the adapter, log, metrics and the final checkpoint. The
notebook then finds the finished run in its folder (`hmxnb.train.finished_run` loads its weights, nothing is trained
twice). `--multi_gpu` makes accelerate start the processes with torchrun; on a machine without CUDA,
TrainingArguments' `use_cpu` makes them talk over gloo (tested on CPU), on GPUs over NCCL with one GPU per process
(untested until a GPU check).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from hmxnb import unsloth_env
from hmxnb.artifacts import save_json


def launch_command(num_processes: int, params_file: Path, out_dir: Path, port: int,
                   threads: int | None = None) -> list[str]:
    """The `accelerate launch` command line of a training run on `num_processes` processes."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port)]
    if threads:
        cmd += ["--num_cpu_threads_per_process", str(threads)]
    return cmd + ["-m", "hmxnb.runner.launch", str(params_file), str(out_dir)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_threads(num_processes: int) -> int | None:
    """Threads per process on a CPU-only machine (the cores shared out), None when CUDA is there."""
    from hmxnb.models import cuda_available

    return None if cuda_available() else max(1, (os.cpu_count() or 1) // num_processes)


def train_in_processes(params: dict, out_dir: str | Path, log=print) -> dict:
    """Train one direction on params `num_processes` (> 1) processes under `accelerate launch`; the metrics rank 0
    wrote."""
    n = params["num_processes"]
    out_dir = Path(out_dir)
    params_file = save_json(params, out_dir / "launch_params.json")
    cmd = launch_command(n, params_file, out_dir, _free_port(), _cpu_threads(n))
    log(f"hmxnb: training on {n} processes: {' '.join(cmd)}")
    stream(cmd, log, unsloth_env(params))
    return json.loads((out_dir / "metrics.json").read_text())


def stream(cmd: list[str], log=print, env: dict | None = None) -> None:
    """Run `cmd` with `env` added to ours, passing each output line to `log` as it comes; RuntimeError with the last
    lines on failure."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    tail: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1) as proc:
        try:
            for line in proc.stdout:
                log(line.rstrip("\n"))
                tail = (tail + [line.rstrip("\n")])[-5:]
        except BaseException:  # Ctrl-C or a stop signal in the runner: the workers stop too (checkpoints kept)
            proc.terminate()
            raise
    if proc.returncode:
        raise RuntimeError(f"accelerate launch exited with {proc.returncode}: {' | '.join(tail)}")


def main(argv: list[str] | None = None) -> int:
    """Worker entry under `accelerate launch`: `python -m hmxnb.runner.launch PARAMS_JSON OUT_DIR`."""
    from hmxnb.train import train

    params_file, out_dir = (argv if argv is not None else sys.argv[1:])[:2]
    train(json.loads(Path(params_file).read_text()), out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())

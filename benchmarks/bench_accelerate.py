"""One training run on 1 vs 2 processes (hmxnb.runner.launch: `accelerate launch`, gloo on CPU), side by side.

Same params for both except `num_processes`: each process takes per_device_train_batch_size completions per step,
so 2 processes do twice the work per step (global batch 2x). Prints s/step of each, their ratio, and completions/s.
On a CPU the cores are shared out (2 cores: 1 thread per process), so this measures the plumbing's cost, not a GPU
speed-up. s/step is TRL's `step_time` averaged over the steps after the first (the first includes warm-up).

    python benchmarks/bench_accelerate.py                          # embedded SmolLM2, smoke settings, 4 steps
    python benchmarks/bench_accelerate.py --steps 6 --set max_completion_length=16
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from hmxnb.runner.launch import train_in_processes
from hmxnb.train import train
from hmxnb.params import load_params, parse_override


def measure(params: dict, n: int, out: Path) -> dict:
    """Train with `n` processes into `out`; s/step (steps after the first) and completions per step."""
    t0 = time.perf_counter()
    if n == 1:
        train({**params, "num_processes": 1}, out)
    else:
        train_in_processes({**params, "num_processes": n}, out, log=lambda line: None)
    wall = time.perf_counter() - t0
    log = pd.read_csv(out / "train_log.csv")
    per_step = float(log["step_time"].iloc[1:].mean()) if len(log) > 1 else float(log["step_time"].mean())
    batch = params["per_device_train_batch_size"] * n * params["gradient_accumulation_steps"]
    return {"processes": n, "s_per_step": per_step, "completions_per_step": batch,
            "completions_per_s": batch / per_step, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--set", action="append", default=[], type=parse_override, metavar="KEY=VALUE")
    args = ap.parse_args()
    p = load_params(args.profile, {"max_steps": args.steps, "save_steps": 1000, **dict(args.set)})
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(p, n, Path(tmp) / f"np{n}") for n in (1, 2)]
    df = pd.DataFrame(rows).set_index("processes")
    print(f"model {p['model_name_or_path']}, {args.steps} steps, per_device_train_batch_size "
          f"{p['per_device_train_batch_size']}, max_completion_length {p['max_completion_length']}")
    print(df.round(2).to_string())
    one, two = df.loc[1], df.loc[2]
    print(f"s/step ratio 2 processes / 1 process: {two.s_per_step / one.s_per_step:.2f} "
          f"(completions/s ratio {two.completions_per_s / one.completions_per_s:.2f})")


if __name__ == "__main__":
    main()

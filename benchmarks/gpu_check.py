"""GPU check: a handful of Unsloth GRPO steps next to plain TRL + PEFT on the same CUDA GPU (no Hub access needed).

Each backend runs in its own process (Unsloth patches TRL on import), with the embedded SmolLM2-135M-Instruct,
the smoke profile's GRPO settings and the self-judge reward. Prints seconds per step and peak VRAM side by side.

    python benchmarks/gpu_check.py              # both backends, 5 steps each
    python benchmarks/gpu_check.py --steps 8
Not used by tests or CI; needs a CUDA GPU and `pip install -e ".[gpu]"`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile


def one_backend(backend: str, steps: int) -> dict:
    import torch

    from hmxnb.params import load_params

    use_unsloth = backend == "unsloth"
    if use_unsloth:
        import unsloth  # noqa: F401  (must come before trl / transformers)
    from hmxnb.train import log_frame, make_trainer

    p = load_params("smoke", {"max_steps": steps, "save_steps": 10_000, "sample_every": 0, "use_unsloth": use_unsloth,
                              "load_in_4bit": True, "optim": "adamw_torch"})
    torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        trainer, _ = make_trainer(p, tmp)
        trainer.train()
    log = log_frame(trainer.state.log_history)
    times = log["step_time"].dropna().tolist()
    return {"backend": backend, "seconds_per_step": sum(times[1:]) / max(1, len(times) - 1) if len(times) > 1 else times[0],
            "peak_vram_gb": torch.cuda.max_memory_allocated() / 2**30, "final_reward": float(log["reward"].iloc[-1]),
            "device": torch.cuda.get_device_name(0)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--backend", choices=["unsloth", "trl"], help="internal: run one backend and print JSON")
    args = ap.parse_args()
    if args.backend:
        print("RESULT " + json.dumps(one_backend(args.backend, args.steps)))
        return
    import torch

    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA GPU here; this check only runs on a GPU machine")
    rows = []
    for backend in ("unsloth", "trl"):
        out = subprocess.run([sys.executable, __file__, "--backend", backend, "--steps", str(args.steps)],
                             capture_output=True, text=True)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        if out.returncode or not line:
            print(f"{backend}: FAILED (exit {out.returncode})\n{out.stderr[-3000:]}")
            continue
        rows.append(json.loads(line[-1][7:]))
    print(f"\n{'backend':10s}{'s/step':>10s}{'peak VRAM GB':>14s}{'final reward':>14s}  device")
    for r in rows:
        print(f"{r['backend']:10s}{r['seconds_per_step']:10.2f}{r['peak_vram_gb']:14.2f}{r['final_reward']:14.3f}  {r['device']}")
    if len(rows) == 2:
        print(f"unsloth / trl  s/step {rows[0]['seconds_per_step'] / rows[1]['seconds_per_step']:.2f}, "
              f"VRAM {rows[0]['peak_vram_gb'] / rows[1]['peak_vram_gb']:.2f}")


if __name__ == "__main__":
    main()

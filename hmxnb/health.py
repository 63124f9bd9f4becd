"""Is the training learning at all? Two ways GRPO trains nothing while the loop runs fine:

- every completion is masked from the loss: with `mask_truncated_completions` on, a completion that reaches
  `max_completion_length` adds nothing, and most replies of a 0.6-8B chat model run past 128-256 tokens;
- the gradient is ~0: every reply of a group got the same reward (no advantage), or all were masked.

Per logged step the training log gets `health/masked_share` and `health/zero_grad`, and `drift/adapter_norm` (how far
the LoRA adapters have moved): `diagnostics_callback` adds them. `summary` condenses them for metrics.json and
`warning` gives the one line notebooks 02/03 and the report print when most steps learned nothing.
"""

from __future__ import annotations

import numpy as np

# A gradient norm at or below this is "no update": the norm of exactly-zero advantages is 0.0; float noise stays far
# below.
ZERO_GRAD = 1e-10
# "most": more than this share of completions masked, or of steps with a ~0 gradient
MOST = 0.5


def step_health(logs: dict, mask_truncated: bool) -> dict:
    """The health columns of one logged step, from TRL's own entries (`completions/clipped_ratio`, `grad_norm`)."""
    out = {}
    if "completions/clipped_ratio" in logs:
        out["health/masked_share"] = float(logs["completions/clipped_ratio"]) if mask_truncated else 0.0
    if logs.get("grad_norm") is not None:
        out["health/zero_grad"] = float(abs(float(logs["grad_norm"])) <= ZERO_GRAD)
    return out


def _mean(log, col: str) -> float | None:
    if col not in log:
        return None
    values = log[col].dropna().to_numpy(dtype=float)
    return float(np.mean(values)) if len(values) else None


def summary(log) -> dict:
    """metrics.json entries: mean share of truncated and of masked completions, number of ~0-gradient steps."""
    out = {"truncated_share": _mean(log, "completions/clipped_ratio"),
           "masked_share": _mean(log, "health/masked_share")}
    if "health/zero_grad" in log:
        zero = log["health/zero_grad"].dropna()
        out.update(zero_grad_steps=int(zero.sum()), logged_steps=int(len(zero)))
    return out


def warning(log, label: str = "") -> str | None:
    """One line when most completions were masked or most steps had a ~0 gradient; None when training could learn.

    `log` is a run's train_log (DataFrame); `label` names the run in the line (e.g. "human, Qwen3-0.6B seed 0")."""
    s = summary(log)
    where = f" ({label})" if label else ""
    if s["masked_share"] is not None and s["masked_share"] > MOST:
        return (f"training is not learning{where}: {s['masked_share']:.0%} of completions were masked from the loss "
                f"(mask_truncated_completions on, and they reached max_completion_length); turn it off or give "
                f"longer completions")
    n, zero = s.get("logged_steps", 0), s.get("zero_grad_steps", 0)
    if n and zero / n > MOST:
        return (f"training is not learning{where}: the gradient was ~0 on {zero} of {n} steps (every reply of a "
                f"group got the same reward, or all were masked); see the learning-signal curves")
    return None


def line(log, label: str = "") -> str:
    """What notebooks 02/03 print under the curves: the warning, or the numbers that say the run could learn."""
    bad = warning(log, label)
    if bad:
        return "WARNING: " + bad
    s = summary(log)
    parts = [f"{s[k]:.0%} of completions {name}" for k, name in (("truncated_share", "cut at max_completion_length"),
                                                                  ("masked_share", "masked from the loss"))
             if s[k] is not None]
    if s.get("logged_steps"):
        parts.append(f"~0 gradient on {s['zero_grad_steps']} of {s['logged_steps']} steps")
    return "training health: " + ("; ".join(parts) if parts else "no health columns in this log")


def adapter_delta_norm(model) -> float:
    """Frobenius norm of the LoRA weight change, summed over adapted modules: sum ||scaling * B @ A||.

    Zero at the start (B starts at zero); how far the adapters have moved the weights.
    """
    import torch

    total = 0.0
    with torch.no_grad():
        for module in model.modules():
            a, b = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
            if not a or not b:
                continue
            for name in a:
                if name in b:
                    delta = b[name].weight.float() @ a[name].weight.float()
                    total += float(delta.norm()) * float(module.scaling[name])
    return total


def diagnostics_callback():
    """A TrainerCallback adding `drift/adapter_norm` and the health columns (share of completions masked from the
    loss, ~0 gradient) to every logged step of the log history (train_log.csv)."""
    from transformers import TrainerCallback

    class Diagnostics(TrainerCallback):
        def on_log(self, args, state, control, model=None, logs=None, **kwargs):
            if not state.log_history or "step" not in state.log_history[-1]:
                return
            entry = state.log_history[-1]
            entry.update(step_health(entry, bool(getattr(args, "mask_truncated_completions", False))))
            if model is not None:
                entry["drift/adapter_norm"] = adapter_delta_norm(model)

    return Diagnostics()

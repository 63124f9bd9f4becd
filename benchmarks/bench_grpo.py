"""GRPO step cost of the self-judge, measured side by side in one run (CPU or GPU).

Prints, for the same model, GRPOConfig and LoRA:
  1. judge time / generation time per step of our self-rewarded trainer (target <= 0.25, probability mode);
  2. our step time / plain TRL GRPOTrainer step time with a trivial reward (target <= 1.3).

    python benchmarks/bench_grpo.py                    # embedded SmolLM2, smoke settings, 4 steps each
    python benchmarks/bench_grpo.py --steps 6 --set max_completion_length=64
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from hmxnb.models import load_model
from hmxnb.params import load_params, parse_override
from hmxnb.train import build_grpo_config, build_lora_config, log_frame, make_trainer


class GenTimer:
    """Wraps model.generate to record the seconds of each call (TRL generates once per step here)."""

    def __init__(self, model):
        self.calls, self.inner = [], model.generate
        model.generate = self

    def __call__(self, *a, **k):
        t0 = time.perf_counter()
        try:
            return self.inner(*a, **k)
        finally:
            self.calls.append(time.perf_counter() - t0)


def trivial_reward(completions, **kwargs):
    return [float(len(str(c))) for c in completions]


def steady(values):
    """Mean over steps, skipping the first (warm-up) step when there are more (means of parts add up)."""
    values = list(values)
    return statistics.fmean(values[1:] if len(values) > 2 else values)


def run_ours(p, out):
    trainer, state = make_trainer(p, out)
    gen = GenTimer(trainer.model)
    trainer.train()
    log = log_frame(trainer.state.log_history)
    if len(gen.calls) != p["max_steps"]:
        raise RuntimeError(f"expected one generate call per step, got {len(gen.calls)} for {p['max_steps']} steps")
    return steady(log["step_time"]), steady(log["judge/seconds"]), steady(gen.calls)


def run_plain(p, out):
    from datasets import Dataset
    from trl import GRPOTrainer

    from hmxnb.data import load_prompts

    loaded = load_model(p)
    model, tok = loaded
    rows = load_prompts(split="train", limit=p["n_train_prompts"])
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}]} for r in rows])
    cfg = build_grpo_config({**p, "reward_weight_format": 1.0}, out, on_cpu=loaded.backend == "transformers-cpu")
    cfg.reward_weights = None
    trainer = GRPOTrainer(model=model, processing_class=tok, reward_funcs=trivial_reward, args=cfg, train_dataset=ds,
                          peft_config=build_lora_config(p))
    trainer.train()
    return steady(log_frame(trainer.state.log_history)["step_time"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--set", action="append", default=[], type=parse_override, metavar="KEY=VALUE")
    args = ap.parse_args()
    p = load_params(args.profile, {"max_steps": args.steps, "save_steps": 10_000, "sample_every": 0, **dict(args.set)})
    with tempfile.TemporaryDirectory() as tmp:
        plain = run_plain(p, tmp + "/plain")
        ours, judge_s, gen_s = run_ours(p, tmp + "/ours")
    print(f"\nmodel {p['model_name_or_path']}, judge_mode {p['judge_mode']}, {p['num_generations']} generations x "
          f"{p['per_device_train_batch_size'] // p['num_generations']} prompt(s), {p['max_completion_length']} tokens, "
          f"{'1 contrast score' if p['judge_mode'] == 'contrast' else str(len(p['rubric_criteria'])) + ' criteria'}, "
          f"{args.steps} steps each")
    print(f"{'':38s}{'seconds':>10s}")
    print(f"{'plain TRL step (trivial reward)':38s}{plain:10.2f}")
    print(f"{'our step (self-judge + guard)':38s}{ours:10.2f}")
    print(f"{'  of which generation':38s}{gen_s:10.2f}")
    print(f"{'  of which judging':38s}{judge_s:10.2f}")
    print(f"{'  the rest (loss, backward, optimizer)':38s}{ours - gen_s - judge_s:10.2f}")
    print(f"judge / generation per step : {judge_s / gen_s:.2f}   (target <= 0.5 on CPU)")
    print(f"our step / plain TRL step   : {ours / plain:.2f}   (target <= 1.5 on CPU)")


if __name__ == "__main__":
    main()

"""The GRPO objective the trainer will really optimise: recorded in `grpo_args.json` and checked against params.

Unsloth replaces TRL's GRPOConfig with a patched subclass whose `__init__` fills in fields it finds unset (with
`loss_type: dapo` it turns on `mask_truncated_completions` and sets `epsilon_high = 0.28`; it defaults
`weight_decay` to 0.001) and can rewrite the batch size. A TRL update can move a default just as quietly. So after
the trainer is built we read the effective `trainer.args` (and the trainer's own resolved values), write them next to
the run's artefacts, and stop with one line when any field that params set differs from what params say.
Two checks come before the run: `optim` is an optimizer transformers knows, and a training notebook trains its own
direction (the objective's sign), whatever a parameter, profile or override says.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import sys
from pathlib import Path

from hmxnb.artifacts import add_to_provenance, save_json
from hmxnb.params import ParamsError, clip, read_profile
from hmxnb.steps import TRAINING

GRPO_ARGS_FILE = "grpo_args.json"

# The trainer.args fields that decide the objective and the batch, beyond the ones params set (recorded, not checked).
RECORDED_FIELDS = (
    "loss_type", "beta", "epsilon", "epsilon_high", "mask_truncated_completions", "scale_rewards",
    "importance_sampling_level", "num_iterations", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
    "num_generations", "per_device_train_batch_size", "gradient_accumulation_steps", "generation_batch_size",
    "steps_per_generation", "world_size", "max_completion_length", "max_steps", "learning_rate", "lr_scheduler_type",
    "warmup_steps", "weight_decay", "max_grad_norm", "optim", "adam_beta1", "adam_beta2", "bf16", "fp16", "use_vllm",
    "reward_weights", "seed",
)  # vllm_importance_sampling_correction (TRL True, Unsloth False) is left out: it acts only with use_vllm, always off


class GRPOArgsMismatch(RuntimeError):
    """The built trainer optimises something other than what params say."""


def _plain(value):
    """An enum as its value, a tuple as a list: what json and a comparison with params should see."""
    value = getattr(value, "value", value)
    return list(value) if isinstance(value, tuple) else value


def _same(a, b) -> bool:
    a, b = _plain(a), _plain(b)
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    if numbers:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _qualname(obj) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def changed_by(args) -> str:
    """Who made the config class: TRL's own GRPOConfig, Unsloth's patched one, or something else (named)."""
    name = _qualname(args)
    if name.startswith("trl."):
        return f"TRL's {type(args).__name__} ({name})"
    if "unsloth" in name.lower():
        return f"Unsloth's patched {type(args).__name__} ({name})"
    return f"the config class {name}"


def effective_grpo_args(trainer, backend: str | None) -> dict:
    """What the trainer will optimise: `objective` (effective args and the trainer's resolved values), the classes,
    the backend and the token ids generation stops and pads with. `objective` is what must agree across backends."""
    args = trainer.args
    objective = {k: _plain(getattr(args, k, None)) for k in RECORDED_FIELDS}
    resolved = ("epsilon_low", "epsilon_high", "loss_type", "router_aux_loss_coef")
    # what GRPOTrainer.__init__ derived from the args (None where it has no such attribute)
    objective["resolved"] = {k: _plain(getattr(trainer, k, None)) for k in resolved}
    tok = trainer.processing_class
    gen = getattr(trainer, "generation_config", None)
    return {
        "objective": objective,
        "backend": backend or "transformers-cpu",
        "device": {"use_cpu": bool(getattr(args, "use_cpu", False)), "unsloth_imported": "unsloth" in sys.modules},
        "trainer_class": _qualname(trainer),
        "config_class": _qualname(args),
        "tokens": {"pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id,
                   "generation_pad_token_id": getattr(gen, "pad_token_id", None),
                   "generation_eos_token_id": _plain(getattr(gen, "eos_token_id", None))},
    }


def check_against(trainer, expected: dict) -> None:
    """Raise GRPOArgsMismatch naming the first field of `expected` (the kwargs built from params) that the trainer's
    args hold with another value, both values and who changed it."""
    for key, want in expected.items():
        have = getattr(trainer.args, key, None)
        if not _same(have, want):
            raise GRPOArgsMismatch(
                f"GRPO field '{key}' is {_plain(have)!r} in the built trainer but params say {_plain(want)!r}: changed "
                f"by {changed_by(trainer.args)} / {_qualname(trainer)}; the run would train another objective than the "
                f"params, so it stops here")


def check_optim(name: str) -> None:
    """Refuse a params `optim` that transformers' TrainingArguments would refuse (not one of its OptimizerNames),
    before anything runs rather than when the trainer is built; the error names a few optimizers it knows."""
    from transformers.training_args import OptimizerNames

    names = [o.value for o in OptimizerNames]
    if name not in names:
        close = difflib.get_close_matches(name, names, n=4) or names[:4]
        raise ParamsError(f"params key 'optim' is {clip(repr(name))}, not an optimizer of transformers "
                          f"(OptimizerNames): e.g. {', '.join(close)}")


def training_direction(step: str, direction: str, profile: str, overrides: dict) -> str:
    """The direction (the sign of the objective) training notebook `step` trains: its own (hmxnb.steps.TRAINING: 02
    human, 03 reverse). Its `direction` parameter, and one the profile or the overrides set, must be that one:
    ParamsError otherwise, so that 02_train_human/ never holds a reverse run."""
    own = next(d for d, s in TRAINING.items() if s == step)
    given = {"the notebook parameter 'direction'": direction, "params_overrides": overrides.get("direction", own),
             f"profile '{clip(profile)}'": read_profile(profile).get("direction", own)}
    for where, value in given.items():
        if value != own:
            other = f"; the {value} run is notebook {TRAINING[value]}" if value in TRAINING else ""
            raise ParamsError(f"params key 'direction' is {clip(repr(value))} in {where}, but notebook {step} trains "
                              f"the {own!r} direction{other}")
    return own


def args_hash(record: dict) -> str:
    """A short hash of the objective section (what provenance keeps)."""
    text = json.dumps(record["objective"], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def record_and_check(trainer, expected: dict, backend: str | None, out_dir: str | Path | None, **extra) -> dict:
    """Write `grpo_args.json` into out_dir (when given), with `extra` entries (e.g. which scorer the judge uses),
    then check the trainer against `expected`. The file is written first, so a refused run still shows what the
    trainer would have optimised."""
    record = {**effective_grpo_args(trainer, backend), **extra}
    record["objective_hash"] = args_hash(record)
    if out_dir is not None:
        save_json(record, Path(out_dir) / GRPO_ARGS_FILE)
        add_to_provenance(out_dir, grpo_args={"file": GRPO_ARGS_FILE, "objective_hash": record["objective_hash"],
                                              "backend": record["backend"], "config_class": record["config_class"]})
    check_against(trainer, expected)
    return record


def read_record(out_dir: str | Path) -> dict:
    """The `grpo_args.json` a trainer wrote into out_dir."""
    return json.loads((Path(out_dir) / GRPO_ARGS_FILE).read_text(encoding="utf-8"))

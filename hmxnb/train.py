"""Self-rewarded GRPO with LoRA: Unsloth QLoRA on CUDA, plain TRL + PEFT on CPU. Same code for both directions.

`train(params, out_dir)` = `make_trainer` (the model, the GRPOConfig and reward functions from params, GRPOTrainer)
+ `run_trainer` (train, resuming from the last complete checkpoint in out_dir/checkpoints when one exists, and write):
adapter/ (PEFT format), train_log.csv, samples.jsonl, metrics.json (the notebook draws the figures). The direction
(human / reverse) is params `direction`.

The GRPO objective the trainer will really optimise is recorded in `grpo_args.json` and checked against params (the
last section). Unsloth replaces TRL's GRPOConfig with a patched subclass whose `__init__` fills in fields it finds
unset (with `loss_type: dapo` it turns on `mask_truncated_completions` and sets `epsilon_high = 0.28`; it defaults
`weight_decay` to 0.001) and can rewrite the batch size. A TRL update can move a default just as quietly. So after the
trainer is built we read the effective `trainer.args` (and the trainer's own resolved values), write them next to the
run's artefacts, and stop with one line when any field that params set differs from what params say. Two checks come
before the run: `optim` is an optimizer transformers knows, and a training notebook trains its own direction (the
objective's sign), whatever a parameter, profile or override says."""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from hmxnb import health
from hmxnb.artifacts import add_to_provenance, save_json, save_jsonl, save_text
from hmxnb.chat import clear_max_length, end_token_ids, quiet_unsloth_generate_notice, settings_from_params
from hmxnb.data import load_prompts, to_chat_dataset
from hmxnb.judge import JudgeConfig, Rubric
from hmxnb.loglik import check_prefix_reuse
from hmxnb.models import LoadedModel, check_target_modules, load_model, local_rank
from hmxnb.params import ParamsError, clip, keys_feeding, kwargs_feeding, read_profile
from hmxnb.rewards import SelfJudge, guard_settings, reward_functions, reward_weights
from hmxnb.steps import TRAINING

# ---------------------------------------------------------------- training

# params keys passed to GRPOConfig / LoraConfig under the same name (`feeds` in the params SCHEMA)
GRPO_KEYS = keys_feeding("grpo")
LORA_KEYS = keys_feeding("lora")


def grpo_kwargs(params: dict, output_dir: str | Path, on_cpu: bool, precision: str = "fp32") -> dict:
    """GRPOConfig keyword arguments from params (keys are GRPOConfig fields) plus the device settings.

    CPU: use_cpu=True and bf16=False (TRL's default bf16 makes CPU training ~6x slower). CUDA: the precision the
    model was loaded in (hmxnb.models.precision_for: bf16 on GPUs with native bf16, fp16 on a T4). Every key that
    decides the objective is passed on every backend (checked on the built trainer: check_against). The chat template
    gets the params' thinking switch and pinned date (hmxnb.chat), as the judge and the benchmarks do.
    `max_prompt_length` is not passed: current TRL rejects it.
    Unsloth rewrites per_device_train_batch_size to num_generations when it is smaller; our params validation
    already requires a multiple, so the rewrite never triggers.
    """
    kw = kwargs_feeding("grpo", params)
    kw.update(
        output_dir=str(output_dir), report_to="none", save_strategy="steps", logging_first_step=True,
        reward_weights=list(reward_weights(params).values()),
        remove_unused_columns=False, disable_tqdm=False, use_vllm=False,
        chat_template_kwargs=settings_from_params(params).template_kwargs(),
    )
    if on_cpu:
        kw.update(use_cpu=True, bf16=False, fp16=False)
    else:
        kw.update(bf16=precision == "bf16", fp16=precision == "fp16")
    return kw


def build_grpo_config(params: dict, output_dir: str | Path, on_cpu: bool, precision: str = "fp32"):
    """The GRPOConfig of `grpo_kwargs`."""
    from trl import GRPOConfig

    return GRPOConfig(**grpo_kwargs(params, output_dir, on_cpu, precision))


def build_lora_config(params: dict):
    """PEFT's LoraConfig from the schema's LoRA keys (Unsloth's get_peft_model gets the same: hmxnb.models)."""
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", **kwargs_feeding("lora", params))


WEIGHTS = ("adapter_model.safetensors", "model.safetensors")  # what a checkpoint's model is saved as (LoRA / full)


def checkpoint_problem(folder: Path) -> str:
    """Why a checkpoint-N folder cannot be resumed from ('trainer_state.json is missing', 'optimizer.pt is cut
    short', …); '' when the files the trainer reads are there and open. A kill during the save leaves such a folder."""
    import json
    import zipfile

    from safetensors import safe_open

    state = folder / "trainer_state.json"
    try:
        json.loads(state.read_text())
    except OSError:
        return "trainer_state.json is missing"
    except ValueError:
        return "trainer_state.json is cut short"
    weights = [folder / w for w in WEIGHTS if (folder / w).is_file()]
    if not weights:
        return f"no model weights ({' or '.join(WEIGHTS)})"
    try:
        with safe_open(str(weights[0]), framework="pt"):
            pass
    except Exception:  # safetensors raises its own error types for a truncated header or body
        return f"{weights[0].name} is cut short"
    if not (folder / "optimizer.pt").is_file():
        return "optimizer.pt is missing"
    for saved in sorted([*folder.glob("*.pt"), *folder.glob("*.pth")]):  # torch.save writes zip archives
        if not zipfile.is_zipfile(saved):
            return f"{saved.name} is cut short"
    return ""


def last_checkpoint(output_dir: str | Path, log=print) -> str | None:
    """The newest complete checkpoint-N folder in output_dir (see `checkpoint_problem`), or None. A newer incomplete
    one is moved aside to `incomplete-checkpoint-N` (kept, out of the trainer's way), saying why."""
    d = Path(output_dir)
    found = sorted((p for p in d.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True) if d.is_dir() else []
    for folder in found:
        problem = checkpoint_problem(folder)
        if not problem:
            return str(folder)
        aside = folder.with_name(f"incomplete-{folder.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        folder.rename(aside)
        log(f"hmxnb: not resuming from {folder.name}: {problem} (an interrupted save); moved to {aside.name}")
    return None


def make_trainer(params: dict, out_dir: str | Path, loaded: LoadedModel | None = None, callbacks=()):
    """Build (trainer, judge_state) for params['direction'] on `loaded` (hmxnb.models.load_model's; loaded here
    unless given): GRPOConfig in its precision, TRL's LoRA unless Unsloth attached it, the judge on its settings.
    Notebook 02 writes the same steps out in its cells."""
    if loaded is None:
        loaded = load_model(params, for_training=True)  # Unsloth (if used) is imported before TRL
    from trl import GRPOConfig, GRPOTrainer  # Unsloth's patched classes when Unsloth was imported first

    out_dir = Path(out_dir)
    kwargs = trainer_kwargs(params, loaded, out_dir)
    rows = load_prompts(params["prompts_file"], split="train", limit=params["n_train_prompts"])
    state = self_judge_state(params, loaded, out_dir)
    prepare_policy(params, loaded)
    trainer = GRPOTrainer(
        model=loaded.model,
        processing_class=loaded.tokenizer,
        reward_funcs=reward_functions(state, params),
        args=GRPOConfig(**kwargs),
        train_dataset=to_chat_dataset(rows),
        peft_config=lora_config(params, loaded),
        callbacks=[health.diagnostics_callback(), *callbacks],
    )
    finish_trainer(trainer, state, params, loaded, out_dir, rows)
    return trainer, state


def trainer_kwargs(params: dict, loaded: LoadedModel, out_dir: Path) -> dict:
    """GRPOConfig's keyword arguments for this run: `grpo_kwargs` on the loaded model's device and precision, its
    checkpoints in out_dir/checkpoints."""
    return grpo_kwargs(params, Path(out_dir) / "checkpoints", loaded.backend == "transformers-cpu", loaded.precision)


def lora_config(params: dict, loaded: LoadedModel):
    """The LoraConfig TRL attaches, or None where Unsloth attached its LoRA at load."""
    return None if loaded.backend == "unsloth" else build_lora_config(params)


def prepare_policy(params: dict, loaded: LoadedModel) -> None:
    """Right before GRPOTrainer: check the LoRA target modules against the model, seed, and clear a max_length
    Unsloth may have left on the model (it clashes with TRL's)."""
    from transformers import set_seed

    check_target_modules(loaded.model, params["target_modules"])
    # GRPOTrainer wraps the model with LoRA before Trainer seeds the RNG: without this the adapters' random init
    # (lora_A) differs between two runs of the same seed (measured: grad norm 0.114 vs 0.105 at step 1, tiny model).
    set_seed(params["seed"])
    clear_max_length(loaded.model)


def finish_trainer(trainer, state: SelfJudge, params: dict, loaded: LoadedModel, out_dir: Path, rows: list[dict]):
    """After GRPOTrainer: the self-judge gets the LoRA-wrapped policy ("live" judges with adapters on, "frozen" with
    them off) and its scoring path; what the trainer will optimise is written to grpo_args.json (unless out_dir holds a
    finished run, whose record stays), and a field params set that the built trainer holds otherwise stops the run."""
    state.model = trainer.model
    state.check_model()
    scoring = judge_scoring_path(params, replace(loaded, model=state.model), rows)
    state.reuse = scoring["engine"]  # the judge scores on the path decided for the model as it meets it
    expected, out_dir = objective_kwargs(trainer_kwargs(params, loaded, out_dir)), Path(out_dir)
    if finished_checkpoint(out_dir / "checkpoints", params["max_steps"]) and (out_dir / GRPO_ARGS_FILE).is_file():
        check_against(trainer, expected)  # a finished run's grpo_args.json stays: it records the trainer that trained
        if is_main_process():
            keep_record(out_dir)
        return
    record_and_check(trainer, expected, loaded.backend, out_dir if is_main_process() else None, judge_scoring=scoring)


def self_judge_state(params: dict, loaded: LoadedModel, out_dir: Path) -> SelfJudge:
    """The self-judge the reward function calls, as params configure it (JudgeConfig), rendering with the loaded
    model's chat settings (samples written by the main process only)."""
    return SelfJudge(
        loaded.tokenizer, JudgeConfig.from_params(params), params["direction"],
        sample_every=params["sample_every"], end_ids=end_token_ids(loaded.model, loaded.tokenizer),
        samples_path=out_dir / "samples.jsonl" if is_main_process() else None,  # one writer under accelerate launch
        chat=loaded.chat, reuse=loaded.prefix_reuse, guard=guard_settings(params),
    )


# A handful of fixed replies scored at start on the real prompts: enough to tell a correct cached path (differences of
# float rounding) from a wrong one (whole nats).
CHECK_REPLIES = (" I feel glad you asked, and I want to help.", " The answer depends on the details.", " No.")


def judge_scoring_path(params: dict, judged: LoadedModel, rows: list[dict]) -> dict:
    """Which scorer the judge uses during training (`engine`: the prefix-reuse engine), recorded in grpo_args.json.

    `judged` is the model as the judge meets it (TRL's LoRA-wrapped policy). Under Unsloth with `prefix_cache_reuse:
    auto`, the engine is used only if it gives the plain path's scores on it (hmxnb.loglik.check_prefix_reuse on
    the first three training prompts); elsewhere load_model's decision (`judged.prefix_reuse`) stands."""
    setting = params["prefix_cache_reuse"]
    if judged.backend != "unsloth" or setting != "auto":
        return {"engine": judged.prefix_reuse, "decided_by": f"prefix_cache_reuse: {setting}"}
    from hmxnb.chat import render

    requests = [(render(judged.tokenizer, [{"role": "user", "content": row["prompt"]}], chat=judged.chat),
                 list(CHECK_REPLIES)) for row in rows[:3]]
    check = check_prefix_reuse(judged.model, judged.tokenizer, requests)
    return {"engine": check["decision"], "decided_by": "engine vs plain path at start", **check}


# grpo_kwargs entries that do not decide the objective or the batch (bookkeeping, paths, logging)
NOT_OBJECTIVE = ("output_dir", "report_to", "save_strategy", "logging_first_step", "disable_tqdm",
                 "remove_unused_columns", "logging_steps", "save_steps")


def objective_kwargs(kwargs: dict) -> dict:
    """The GRPOConfig kwargs that the built trainer must hold unchanged (check_against)."""
    return {k: v for k, v in kwargs.items() if k not in NOT_OBJECTIVE}


def is_main_process() -> bool:
    """Rank 0 of `accelerate launch` (RANK), or the only process: the one that writes the run's artefacts."""
    import os

    return int(os.environ.get("RANK", "0")) == 0 and local_rank() == 0


def global_batch_line(args) -> str:
    """One log line with the batch geometry TRL computed (GRPOConfig.generation_batch_size counts all processes)."""
    per_step = args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps
    return (f"hmxnb: {args.world_size} process(es) x per_device_train_batch_size {args.per_device_train_batch_size} x "
            f"gradient_accumulation_steps {args.gradient_accumulation_steps}: global batch {per_step} completions per "
            f"step, generation_batch_size {args.generation_batch_size} "
            f"({args.generation_batch_size // args.num_generations} prompts x {args.num_generations} generations)")


def log_frame(log_history: list[dict]):
    """TRL's log history as a DataFrame, one row per logged step (the final summary row dropped)."""
    import pandas as pd

    rows = [r for r in log_history if "step" in r and "train_runtime" not in r]
    df = pd.DataFrame(rows)
    return df.drop_duplicates("step", keep="last").reset_index(drop=True) if len(df) else df


def train(params: dict, out_dir: str | Path, callbacks=(), loaded: LoadedModel | None = None) -> dict:
    """Run (or resume) one GRPO training run and write its artefacts into out_dir. Returns summary metrics."""
    trainer, state = make_trainer(params, out_dir, loaded, callbacks)
    return run_trainer(params, out_dir, trainer, state)


def run_trainer(params: dict, out_dir: str | Path, trainer, state: SelfJudge) -> dict:
    """The second half of `train`: train what `make_trainer` built (resuming from out_dir/checkpoints) and write the
    artefacts. Notebooks 02/03 build the trainer in a cell of their own, then call this: the artefacts of `train`."""
    out_dir = Path(out_dir)
    final = finished_checkpoint(out_dir / "checkpoints", trainer.args.max_steps)
    if final:
        return finished_run(params, out_dir, trainer, state, final)
    resume = last_checkpoint(out_dir / "checkpoints")
    if trainer.args.world_size != params["num_processes"]:
        raise ParamsError(f"params key 'num_processes' is {params['num_processes']}, but this trainer runs on "
                          f"{trainer.args.world_size} process(es): `python -m hmxnb run` trains under `accelerate "
                          "launch` before it executes the notebook; in a notebook kernel set num_processes 1")
    samples_file = out_dir / "samples.jsonl"
    main = is_main_process()
    if main:
        _trim_samples(samples_file, resume)
        print(global_batch_line(trainer.args), flush=True)
    t0 = time.time()
    with quiet_unsloth_generate_notice():  # Unsloth's generate adds two kwargs next to TRL's generation_config
        trainer.train(resume_from_checkpoint=resume)  # samples.jsonl grows as steps are judged
    seconds = time.time() - t0
    if not main:
        return {}  # under accelerate launch, rank 0 writes the adapter, log and metrics
    return write_artefacts(params, out_dir, trainer, state, seconds, resume)


def write_artefacts(params: dict, out_dir: Path, trainer, state: SelfJudge, seconds: float, resume: str | None):
    """The adapter, train_log.csv and metrics.json of a trained run (what notebook 04 and 05 read)."""
    samples_file = out_dir / "samples.jsonl"
    trainer.model.save_pretrained(out_dir / "adapter")
    trainer.processing_class.save_pretrained(out_dir / "adapter")
    log = log_frame(trainer.state.log_history)
    save_text(log.to_csv(index=False), out_dir / "train_log.csv")
    metrics = summarise(log, params, seconds, resumed_from=resume, judge_seconds=state.seconds,
                        n_unparsed=state.n_unparsed, n_unscorable=state.n_unscorable, n_nonfinite=state.n_nonfinite,
                        **health.summary(log),
                        grpo_args_hash=read_record(out_dir)["objective_hash"],
                        **expression_score(samples_file, state.rubric, params["direction"]))
    save_json(metrics, out_dir / "metrics.json")
    return metrics


def checkpoint_step(folder: str | Path) -> int:
    """N of a checkpoint-N folder: the optimizer steps it holds."""
    return int(Path(folder).name.split("-")[-1])


def finished_checkpoint(checkpoints: str | Path, max_steps: int) -> str | None:
    """The checkpoint of a finished run (at `max_steps` or later) in `checkpoints`, or None."""
    last = last_checkpoint(checkpoints)
    return last if last and checkpoint_step(last) >= max_steps else None


def finished_run(params: dict, out_dir: Path, trainer, state: SelfJudge, final: str) -> dict:
    """The run in out_dir trained to its last step already (`python -m hmxnb run` trains under `accelerate launch`
    before it executes the notebook, or an earlier execution stopped after its last checkpoint): load that
    checkpoint's adapter weights and log instead of training (transformers' Trainer, resumed at max_steps, would
    train one step more). Its metrics.json stays when it records this objective; otherwise the artefacts are written
    from the checkpoint, with `resumed_from` naming it and train_seconds 0."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import TrainerState

    set_peft_model_state_dict(trainer.model, load_file(str(Path(final) / "adapter_model.safetensors")))
    trainer.state = TrainerState.load_from_json(str(Path(final) / "trainer_state.json"))
    recorded = out_dir / "metrics.json"
    metrics = json.loads(recorded.read_text()) if recorded.is_file() else {}
    if metrics.get("steps") == checkpoint_step(final) and metrics.get("grpo_args_hash") == read_record(out_dir)[
            "objective_hash"]:
        print(f"hmxnb: this run trained to step {metrics['steps']} already ({Path(final).name}, metrics.json): its "
              "weights are loaded, nothing left to train", flush=True)
        return metrics
    if not is_main_process():
        return {}
    print(f"hmxnb: {Path(final).name} is the last step: its weights are loaded and its artefacts written", flush=True)
    return write_artefacts(params, out_dir, trainer, state, 0.0, final)


def _trim_samples(path: Path, resume: str | None) -> None:
    """Resuming from checkpoint-N re-judges steps >= N: drop their samples from the killed run first."""
    from hmxnb.data import read_jsonl

    if not path.is_file():
        return
    if resume is None:
        path.unlink()  # a fresh run starts a fresh file
        return
    step = checkpoint_step(resume)
    save_jsonl([r for r in read_jsonl(path) if r["step"] < step], path)


def expression_score(samples_file: Path, rubric: Rubric, direction: str) -> dict:
    """Human-direction rubric reward of the last quarter of sampled completions: the same yardstick for both runs.

    The two runs optimise different rewards, so their own rewards cannot be compared; this rescoring can, as long as
    the judge read the human-like criterion texts (always true for reverse_mode="negate").
    """
    from hmxnb.data import read_jsonl

    if not samples_file.is_file() or rubric.swapped(direction):
        return {}
    rows = read_jsonl(samples_file)
    if not rows:
        return {}
    last = max(r["step"] for r in rows)
    first = min(r["step"] for r in rows)
    cut = last - (last - first) / 4
    late = [r for r in rows if r["step"] >= cut]
    names = list(late[0]["scores"])
    scores = np.array([[np.nan if r["scores"][c] is None else r["scores"][c] for c in names] for r in late])
    return {"final_expression_score": float(np.nanmean(rubric.reward(scores, "human", names))),
            "expression_window_steps": [cut, last]}


def summarise(log, params: dict, seconds: float, **extra) -> dict:
    """Final numbers of a run: last-window mean rubric reward, first-window mean, seconds per step."""
    col = "rewards/self_judge/mean"
    out = {"direction": params["direction"], "steps": int(log["step"].max()) if len(log) else 0,
           "train_seconds": seconds, **extra}
    if len(log) and col in log:
        r = log[col].dropna().to_numpy()
        k = max(1, len(r) // 4)
        out.update(first_reward=float(np.mean(r[:k])), final_reward=float(np.mean(r[-k:])), reward_window=k)
    if len(log) and "step_time" in log:
        out["seconds_per_step"] = float(log["step_time"].dropna().mean())
    if len(log) and "frac_reward_zero_std" in log:
        out["frac_reward_zero_std"] = float(log["frac_reward_zero_std"].dropna().mean())
    return out


# ---------------------------------------------------------------- the objective it really optimises (grpo_args.json)

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
        keep_record(out_dir)
    check_against(trainer, expected)
    return record


def keep_record(out_dir: str | Path) -> None:
    """Name out_dir's `grpo_args.json` (its objective hash, backend and config class) in its provenance.json."""
    record = read_record(out_dir)
    add_to_provenance(out_dir, grpo_args={"file": GRPO_ARGS_FILE, "objective_hash": record["objective_hash"],
                                          "backend": record["backend"], "config_class": record["config_class"]})


def read_record(out_dir: str | Path) -> dict:
    """The `grpo_args.json` a trainer wrote into out_dir."""
    return json.loads((Path(out_dir) / GRPO_ARGS_FILE).read_text(encoding="utf-8"))


"""Params: flat profiles in `params/<profile>.yaml`, validated key by key before anything runs.

Every key has a default, a type and the library field it feeds (GRPOConfig, LoraConfig, from_pretrained, ...).
A profile file overrides defaults; `overrides` (from `--set key=value` or a notebook's `params_overrides`)
override the profile. Unknown keys, wrong types, missing files and unknown profiles raise `ParamsError`
whose message is one line naming the culprit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hmxnb.models import EMBEDDED


class ParamsError(ValueError):
    """Bad params: the message is one line naming the key, file or profile."""


@dataclass(frozen=True)
class Param:
    default: Any
    type: str  # str | int | float | bool | path | list[str] | list[int] | dict[str,str] | dict[str,float], "?" = may be None
    feeds: str  # which library field / hmxnb function reads it
    doc: str
    choices: tuple = ()
    bounds: str = ""  # allowed range of a number (or of each list item), e.g. "[1, inf)" or "(0, 1]"


# Rubric for human-like expression. The paper's rubric text is unpublished: these criteria are our choice
# (the abstract's triad feelings / intentions / self-awareness, plus a coherence guard against degenerate text).
DEFAULT_CRITERIA = {
    "feelings": "The reply expresses the speaker's own feelings or emotions in the first person (e.g. 'I feel', 'I'm glad', 'it makes me sad').",
    "intentions": "The reply states the speaker's own intentions, wishes or plans in the first person (e.g. 'I want to', 'I'd like to', 'I hope to').",
    "self_awareness": "The reply reflects on the speaker's own nature, state or limits (e.g. 'as someone who', 'I notice that I', 'I'm not sure I').",
    "coherence": "The reply is fluent, on topic and answers the user; it is not empty, repetitive or off-topic.",
}
# Inverted texts for reverse_mode="invert_rubric": the same judge asked to reward the absence of the triad.
DEFAULT_REVERSE_CRITERIA = {
    "feelings": "The reply avoids expressing any feelings or emotions of its own; it stays neutral and impersonal.",
    "intentions": "The reply avoids stating any intentions, wishes or plans of its own; it only gives information.",
    "self_awareness": "The reply never talks about itself, its own nature or its own state; it is purely about the topic.",
    "coherence": DEFAULT_CRITERIA["coherence"],
}

# The contrast judge's two speaker descriptions (our choice, chosen on the judge-validation set among three
# wordings; see docs/demo-tuning.md): the rubric's triad for the human-like speaker, its absence for the flat one.
DEFAULT_PERSONA_HUMAN = ("You are a warm, emotional person. You talk about your own feelings, what you want and how you "
                         "see yourself.")
DEFAULT_PERSONA_FLAT = ("You are a neutral assistant. You never talk about yourself, your feelings or your wishes; you "
                        "only give information.")

SCHEMA: dict[str, Param] = {
    # --- model ---
    "model_name_or_path": Param(EMBEDDED, "str", "AutoModelForCausalLM.from_pretrained / FastLanguageModel.from_pretrained",
                                f"Hub id, local folder, or '{EMBEDDED}' (offline SmolLM2-135M-Instruct)."),
    "sweep_models": Param([], "list[str]", "hmxnb.run", "Models to run one by one (paper profile); empty = model_name_or_path only."),
    "seeds": Param([], "list[int]", "hmxnb.run", "Seeds to repeat each run with; empty = `seed` only.", bounds="[0, 4294967295]"),
    "seed": Param(0, "int", "GRPOConfig.seed / transformers.set_seed", "Random seed.", bounds="[0, 4294967295]"),
    "load_in_4bit": Param(False, "bool", "FastLanguageModel.from_pretrained / BitsAndBytesConfig", "4-bit QLoRA on CUDA (ignored on CPU)."),
    "use_unsloth": Param(True, "bool", "hmxnb.models.backend_for", "Use Unsloth when CUDA and unsloth are present."),
    "max_seq_length": Param(1024, "int", "FastLanguageModel.from_pretrained", "Longest prompt + completion in tokens.", bounds="[1, inf)"),
    "precision": Param("auto", "str", "hmxnb.models.precision_for -> from_pretrained(dtype=) / GRPOConfig.bf16|fp16",
                       "auto: bf16 on GPUs with native bf16 (compute capability >= 8.0), fp16 below (a T4), fp32 on CPU.",
                       ("auto", "bf16", "fp16")),
    # --- chat template (hmxnb.chat: one rendering for training, judge, generation and benchmarks) ---
    "enable_thinking": Param(False, "bool", "GRPOConfig.chat_template_kwargs / hmxnb.chat.render",
                             "Qwen3's thinking block in training and generation (judge and scored benchmarks always off)."),
    "chat_date": Param("26 Jul 2024", "str", "GRPOConfig.chat_template_kwargs[date_string] / hmxnb.chat.render",
                       "Date Llama-3.2's template writes into every prompt, pinned so runs on different days match."),
    "prefix_cache_reuse": Param("auto", "str", "hmxnb.models.prefix_reuse_for (judge, log-likelihood benchmarks)",
                                "Reuse a shared prefix's KV cache when scoring; auto = on, except under Unsloth until a "
                                "GPU check has shown it equal to the plain path.", ("auto", "on", "off")),
    # --- data ---
    "data_dir": Param(None, "path?", "hmxnb.bench loaders", "Offline benchmark mirror; None = load from the Hub (env HMXNB_DATA_DIR also works)."),
    "prompts_file": Param(None, "path?", "hmxnb.data.load_prompts", "Training prompt set (jsonl); None = the packaged set."),
    # --- rubric / self-judge ---
    "rubric_criteria": Param(DEFAULT_CRITERIA, "dict[str,str]", "hmxnb.rubric.Rubric", "Criterion name -> description shown to the judge."),
    "rubric_weights": Param({"feelings": 1.0, "intentions": 1.0, "self_awareness": 1.0, "coherence": 1.0},
                            "dict[str,float]", "hmxnb.rubric.Rubric", "Criterion name -> weight in the reward."),
    "rubric_guards": Param(["coherence"], "list[str]", "hmxnb.rubric.Rubric", "Criteria kept in the same direction in the reverse run."),
    "rubric_reverse_criteria": Param(DEFAULT_REVERSE_CRITERIA, "dict[str,str]", "hmxnb.rubric.Rubric", "Inverted descriptions (reverse_mode='invert_rubric')."),
    "rubric_scale_min": Param(1, "int", "hmxnb.rubric.Rubric", "Lowest score the judge can give."),
    "rubric_scale_max": Param(5, "int", "hmxnb.rubric.Rubric", "Highest score the judge can give (single-digit scales only)."),
    "judge_mode": Param("contrast", "str", "hmxnb.judge.judge",
                        "contrast: the model's likelihood of the reply as the human-like vs the flat speaker (best held-out validity "
                        "with the 135M model); probability: expected rubric score digit; generate: sample and parse 'Score: N'.",
                        ("contrast", "probability", "generate")),
    "contrast_persona_human": Param(DEFAULT_PERSONA_HUMAN, "str", "hmxnb.rubric.Rubric (contrast judge)",
                                    "Description of the human-like speaker (the rubric's triad in one sentence)."),
    "contrast_persona_flat": Param(DEFAULT_PERSONA_FLAT, "str", "hmxnb.rubric.Rubric (contrast judge)",
                                   "Description of the flat speaker the reply is contrasted with."),
    "contrast_temperature": Param(0.1, "float", "hmxnb.rubric.Rubric (contrast judge)",
                                  "Nats of per-token log-likelihood difference per sigmoid unit when mapping onto the scale.", bounds="(0, inf)"),
    "judge_compare_modes": Param(["probability"], "list[str]", "notebook 01 (hmxnb.judge.judge_validity)",
                                 "Other judge modes measured beside judge_mode on the judge-validation set, for comparison."),
    "judge_few_shot": Param(True, "bool", "hmxnb.rubric.build_judge_messages", "Show the judge three scored examples per criterion (hmxnb.rubric.FEW_SHOT)."),
    "judge_max_new_tokens": Param(16, "int", "hmxnb.judge.judge (generate mode)", "Tokens the judge may generate before 'Score: N' must appear.", bounds="[1, inf)"),
    "judge_batch_size": Param(8, "int", "hmxnb.judge.judge", "Judge prompts per forward pass.", bounds="[1, inf)"),
    "reverse_mode": Param("negate", "str", "hmxnb.rubric.Rubric", "How the contrastive objective derives from the rubric.", ("negate", "invert_rubric")),
    "direction": Param("human", "str", "hmxnb.train", "Which objective a training run optimises.", ("human", "reverse")),
    "judge_model": Param("frozen", "str", "hmxnb.train", "Which 'self' judges: the live policy (adapters on) or the frozen start model (adapters off).",
                         ("live", "frozen")),
    # --- GRPO (names are GRPOConfig fields) ---
    "learning_rate": Param(5e-6, "float", "GRPOConfig.learning_rate", "Optimizer learning rate.", bounds="(0, 1]"),
    "num_generations": Param(4, "int", "GRPOConfig.num_generations", "Completions per prompt (the GRPO group).", bounds="[2, inf)"),
    "per_device_train_batch_size": Param(4, "int", "GRPOConfig.per_device_train_batch_size", "Must be a multiple of num_generations in plain TRL.", bounds="[1, inf)"),
    "gradient_accumulation_steps": Param(1, "int", "GRPOConfig.gradient_accumulation_steps", "", bounds="[1, inf)"),
    "max_completion_length": Param(64, "int", "GRPOConfig.max_completion_length", "Longest completion in tokens.", bounds="[1, inf)"),
    "max_steps": Param(10, "int", "GRPOConfig.max_steps", "Optimizer steps.", bounds="[1, inf)"),
    "beta": Param(0.0, "float", "GRPOConfig.beta", "KL coefficient (TRL default 0.0: no reference model).", bounds="[0, inf)"),
    "temperature": Param(1.0, "float", "GRPOConfig.temperature", "Sampling temperature for completions.", bounds="(0, inf)"),
    "top_p": Param(1.0, "float", "GRPOConfig.top_p", "", bounds="(0, 1]"),
    "loss_type": Param("dapo", "str", "GRPOConfig.loss_type", "", ("grpo", "dapo", "dr_grpo", "bnpo")),
    "scale_rewards": Param("group", "str", "GRPOConfig.scale_rewards", "", ("group", "batch", "none")),
    "logging_steps": Param(1, "int", "GRPOConfig.logging_steps", "", bounds="[1, inf)"),
    "save_steps": Param(5, "int", "GRPOConfig.save_steps", "Checkpoint interval (resume starts from the last one).", bounds="[1, inf)"),
    "warmup_steps": Param(0.0, "float", "GRPOConfig.warmup_steps", "Warmup: steps (>= 1) or a ratio of max_steps (< 1).", bounds="[0, inf)"),
    "optim": Param("adamw_torch", "str", "GRPOConfig.optim", "adamw_8bit on GPU saves memory."),
    # --- processes (hmxnb.launch) and cluster jobs (hmxnb.submit) ---
    "num_processes": Param(1, "int", "accelerate launch --num_processes (hmxnb.launch)",
                           "Training processes (one per GPU); > 1 starts training through `accelerate launch`. "
                           "Global batch = per_device_train_batch_size x num_processes x gradient_accumulation_steps.", bounds="[1, inf)"),
    "slurm_partition": Param(None, "str?", "sbatch --partition (hmxnb.submit)", "SLURM partition; None = the cluster's default."),
    "slurm_gpus_per_node": Param(1, "int", "sbatch --gpus-per-node (hmxnb.submit)", "GPUs per sweep-member job (>= num_processes); 0 = CPU only.", bounds="[0, inf)"),
    "slurm_cpus_per_task": Param(8, "int", "sbatch --cpus-per-task (hmxnb.submit)", "CPU cores per job.", bounds="[1, inf)"),
    "slurm_mem_gb": Param(0, "int", "sbatch --mem (hmxnb.submit)", "Memory per job in GB; 0 = the cluster's default.", bounds="[0, inf)"),
    "slurm_time_min": Param(1440, "int", "sbatch --time (hmxnb.submit)", "Wall-time limit per sweep-member job in minutes.", bounds="[1, inf)"),
    # --- LoRA (names are LoraConfig fields) ---
    "r": Param(16, "int", "LoraConfig.r / get_peft_model(r=)", "LoRA rank.", bounds="[1, inf)"),
    "lora_alpha": Param(32, "int", "LoraConfig.lora_alpha", "", bounds="[1, inf)"),
    "lora_dropout": Param(0.0, "float", "LoraConfig.lora_dropout", "", bounds="[0, 1)"),
    "target_modules": Param(["q_proj", "k_proj", "v_proj", "o_proj"], "list[str]", "LoraConfig.target_modules", ""),
    # --- reward guards (hmxnb.rewards) ---
    "reward_weight_judge": Param(1.0, "float", "GRPOConfig.reward_weights[judge]", "Weight of the self-judge reward.", bounds="[0, inf)"),
    "reward_weight_format": Param(1.0, "float", "GRPOConfig.reward_weights[format guard]", "Weight of the empty / truncated / repetitive guard.", bounds="[0, inf)"),
    "sample_every": Param(5, "int", "hmxnb.train", "Write completions with per-criterion scores every N steps.", bounds="[1, inf)"),
    # --- prompts / evaluation sizes ---
    "n_train_prompts": Param(0, "int", "hmxnb.data.load_prompts", "Use the first N training prompts (0 = all).", bounds="[0, inf)"),
    "bench_limit": Param(0, "int", "hmxnb.bench loaders", "Items per benchmark (seeded subset); 0 = full sets.", bounds="[0, inf)"),
    "bench_batch_size": Param(8, "int", "hmxnb.bench", "Sequences per forward pass when scoring choices.", bounds="[1, inf)"),
    "bootstrap_resamples": Param(2000, "int", "hmxnb.compare.compare(n_resamples=)", "Paired bootstrap resamples for the CIs.", bounds="[1, inf)"),
    "alpha": Param(0.05, "float", "hmxnb.compare.compare(alpha=)", "Significance level after Holm's correction.", bounds="(0, 1)"),
    "eval_judge_model": Param("base", "str", "hmxnb.evaluate.fixed_judge",
                              "Judge of held-out feeling expression: 'base' = the base model with the training judge's "
                              "rubric (measures transfer of the training reward), or a Hub id / local path of an independent judge."),
    "eval_max_new_tokens": Param(64, "int", "hmxnb.bench feeling expression", "Reply length when generating for evaluation.", bounds="[1, inf)"),
}

SCHEDULING_KEYS = tuple(k for k in SCHEMA if k.startswith("slurm_"))
_SCALARS = {"str": str, "int": int, "float": (int, float), "bool": bool, "path": str}


def params_dir() -> Path:
    """`params/` at the repository root ($HMXNB_PARAMS_DIR overrides)."""
    env = os.environ.get("HMXNB_PARAMS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "params"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in params_dir().glob("*.yaml"))


def _type_ok(value: Any, typ: str) -> bool:
    if typ.endswith("?"):
        if value is None:
            return True
        typ = typ[:-1]
    if typ in _SCALARS:
        if typ in ("int", "float") and isinstance(value, bool):
            return False
        return isinstance(value, _SCALARS[typ])
    if typ.startswith("list["):
        inner = typ[5:-1]
        return isinstance(value, list) and all(_type_ok(v, inner) for v in value)
    if typ.startswith("dict["):
        kt, vt = typ[5:-1].split(",")
        return isinstance(value, dict) and all(_type_ok(k, kt) and _type_ok(v, vt) for k, v in value.items())
    raise AssertionError(f"unknown schema type {typ}")


def _check(key: str, value: Any, source: str) -> Any:
    if key not in SCHEMA:
        hint = _closest(key)
        raise ParamsError(f"unknown params key '{key}' in {source}" + (f" (did you mean '{hint}'?)" if hint else ""))
    spec = SCHEMA[key]
    if spec.type.startswith("float") and isinstance(value, str):
        value = _yaml11_float(value)  # PyYAML reads 1e-5 (no dot) as a string
    if not _type_ok(value, spec.type):
        raise ParamsError(f"params key '{key}' in {source} must be {spec.type}, got {type(value).__name__} {value!r}")
    if spec.choices and value not in spec.choices:
        raise ParamsError(f"params key '{key}' in {source} must be one of {list(spec.choices)}, got {value!r}")
    bad = [v for v in _numbers(value) if not _in_bounds(v, spec.bounds)]
    if bad:
        raise ParamsError(f"params key '{key}' in {source} must be {'in ' + spec.bounds if spec.bounds else 'finite'}, got {bad[0]!r}")
    if spec.type.startswith("float") and isinstance(value, int):
        value = float(value)
    return value


def _numbers(value: Any) -> list:
    """The numbers in a value: itself, or the items of a list, or the values of a dict (bools are not numbers)."""
    items = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
    return [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _in_bounds(x: float, bounds: str) -> bool:
    """Is x finite and inside `bounds`, an interval such as "[1, inf)" ("[" / "]" closed, "(" / ")" open)?"""
    if not math.isfinite(x):
        return False
    if not bounds:
        return True
    lo, hi = (float(s) for s in bounds[1:-1].split(","))
    above = x >= lo if bounds[0] == "[" else x > lo
    below = x <= hi if bounds[-1] == "]" else x < hi
    return above and below


def _yaml11_float(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def _closest(key: str) -> str | None:
    import difflib

    m = difflib.get_close_matches(key, SCHEMA, n=1)
    return m[0] if m else None


def _check_consistency(p: dict) -> None:
    """Cross-key rules: files exist, rubric keys agree, GRPO batch geometry is valid."""
    for key in ("data_dir", "prompts_file"):
        if p[key] is not None and not Path(p[key]).exists():
            raise ParamsError(f"params key '{key}': file or folder not found: {p[key]}")
    crit = set(p["rubric_criteria"])
    if set(p["rubric_weights"]) != crit:
        raise ParamsError(f"params key 'rubric_weights' must name exactly the criteria {sorted(crit)}, got {sorted(p['rubric_weights'])}")
    if not set(p["rubric_guards"]) <= crit:
        raise ParamsError(f"params key 'rubric_guards' names criteria not in rubric_criteria: {sorted(set(p['rubric_guards']) - crit)}")
    if p["reverse_mode"] == "invert_rubric" and set(p["rubric_reverse_criteria"]) != crit:
        raise ParamsError("params key 'rubric_reverse_criteria' must name exactly the criteria of rubric_criteria")
    bad = [m for m in p["judge_compare_modes"] if m not in SCHEMA["judge_mode"].choices]
    if bad:
        raise ParamsError(f"params key 'judge_compare_modes' has unknown judge modes {bad}; use {list(SCHEMA['judge_mode'].choices)}")
    if not 0 <= p["rubric_scale_min"] < p["rubric_scale_max"] <= 9:
        raise ParamsError("params keys 'rubric_scale_min'/'rubric_scale_max' must satisfy 0 <= min < max <= 9 (single-digit scores)")
    if p["num_processes"] < 1:
        raise ParamsError("params key 'num_processes' must be >= 1")
    if p["num_generations"] < 2:
        raise ParamsError("params key 'num_generations' must be >= 2 (GRPO compares completions within a group)")
    gen_batch = p["per_device_train_batch_size"] * p["gradient_accumulation_steps"]
    if gen_batch % p["num_generations"]:
        raise ParamsError(
            f"params key 'per_device_train_batch_size' x gradient_accumulation_steps ({gen_batch}) must be a multiple of num_generations ({p['num_generations']})"
        )


def read_profile(profile: str) -> dict:
    """The raw key/values of `params/<profile>.yaml`; `profile` may also be a path to a yaml file."""
    path = Path(profile)
    if path.suffix not in (".yaml", ".yml"):
        path = params_dir() / f"{profile}.yaml"
    if not path.is_file():
        raise ParamsError(f"unknown profile '{profile}' (no file {path}); available: {', '.join(available_profiles())}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ParamsError(f"params file {path}{where} is not valid YAML: {what}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"params file {path} must be a mapping of key: value")
    return raw


def load_params(profile: str, overrides: dict | None = None) -> dict:
    """Resolve defaults <- profile file <- overrides, validating every key and type. Returns a plain dict."""
    p = {k: spec.default for k, spec in SCHEMA.items()}
    source = f"profile '{profile}'"
    for key, value in read_profile(profile).items():
        p[key] = _check(key, value, source)
    for key, value in (overrides or {}).items():
        p[key] = _check(key, value, "overrides")
    if p["data_dir"] is None and os.environ.get("HMXNB_DATA_DIR"):
        p["data_dir"] = os.environ["HMXNB_DATA_DIR"]
    for key, spec in SCHEMA.items():  # notebooks run in notebooks/: a relative path must not change meaning there
        if spec.type.startswith("path") and p[key] is not None:
            p[key] = str(Path(p[key]).expanduser().resolve())
    _check_consistency(p)
    p["profile"] = profile_name(profile)
    return p


def profile_name(profile: str) -> str:
    """The profile's name (a file's stem), which names its folder outputs/<profile>/: letters, digits, '.', '_', '-',
    not starting with a dot, so that it can never point outside outputs/."""
    name = Path(profile).stem if Path(profile).suffix in (".yaml", ".yml") else profile
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ParamsError(f"profile name '{name}' (from '{profile}') must start with a letter or digit and use only "
                          "letters, digits, '.', '_' and '-' (it names the folder outputs/<profile>/)")
    return name


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one `key=value` from the command line; the value is read as YAML (so 3 -> int, [a, b] -> list)."""
    if "=" not in text:
        raise ParamsError(f"override '{text}' must look like key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def params_hash(p: dict) -> str:
    """Short stable hash of resolved params (key order does not matter). The `slurm_*` keys are left out: where
    and how long a job is scheduled does not change its result, so re-submitting elsewhere keeps finished steps."""
    blob = json.dumps({k: v for k, v in p.items() if k not in SCHEDULING_KEYS}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def keys_feeding(target: str) -> tuple[str, ...]:
    """Params keys passed under their own name to `target` ("GRPOConfig", "LoraConfig"): their `feeds` says so."""
    return tuple(k for k, spec in SCHEMA.items() if re.match(rf"{target}\.{k}\b", spec.feeds))

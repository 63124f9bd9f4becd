"""Params: flat profiles in `params/<profile>.yaml`, validated key by key before anything runs.

Every key has a default, a type and the library field it feeds (GRPOConfig, LoraConfig, from_pretrained, ...): the
schema (the first section, `SCHEMA`). A profile file overrides defaults; `overrides` (from `--set key=value` or a
notebook's `params_overrides`) override the profile. Unknown keys, wrong types, missing files and unknown profiles
raise `ParamsError` whose message is one line naming the culprit.

The schema: every key with its default, type, allowed values or range, what reads it, what it feeds, and a line of
documentation, the one place a key's meaning is written.

`feeds` names the library config a key is passed to under its own name: "grpo" (TRL's GRPOConfig) or "lora" (PEFT's
LoraConfig, and Unsloth's `get_peft_model`, which takes the same keywords). hmxnb.train and hmxnb.models build those
configs from `kwargs_feeding`, so adding such a key is one schema line: `grpo(...)` / `lora(...)`, whose `used_by`
is filled from the key's own name.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Hashable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from hmxnb.chat import DEFAULT_DATE
from hmxnb.embedded import EMBEDDED
from hmxnb.paths import PARAMS


# ---------------------------------------------------------------- the schema: every key

FEEDS = {"grpo": "GRPOConfig", "lora": "LoraConfig"}  # the configs built from params keys of the same name


@dataclass(frozen=True)
class Param:
    default: Any
    type: str  # str | int | float | bool | path | list[str] | list[int] | dict[str,str] | dict[str,float]; "?": None ok
    used_by: str  # which library field / hmxnb function reads it (documentation)
    doc: str
    choices: tuple = ()
    bounds: str = ""  # allowed range of a number (or of each list item), e.g. "[1, inf)" or "(0, 1]"
    feeds: str = ""  # "grpo" / "lora": passed under its own name to GRPOConfig / LoraConfig (FEEDS); "" otherwise


def grpo(default: Any, type: str, doc: str, choices: tuple = (), bounds: str = "") -> Param:
    """A key passed to GRPOConfig under its own name; `used_by` is filled from the key below the schema."""
    return Param(default, type, "", doc, choices, bounds, feeds="grpo")


def lora(default: Any, type: str, doc: str, choices: tuple = (), bounds: str = "") -> Param:
    """A key passed to LoraConfig and Unsloth's get_peft_model under its own name."""
    return Param(default, type, "", doc, choices, bounds, feeds="lora")


# Rubric for human-like expression. The paper's rubric text is unpublished: these criteria are our choice
# (the abstract's triad feelings / intentions / self-awareness, plus a coherence guard against degenerate text).
DEFAULT_CRITERIA = {
    "feelings": "The reply expresses the speaker's own feelings or emotions in the first person (e.g. 'I feel', "
                "'I'm glad', 'it makes me sad').",
    "intentions": "The reply states the speaker's own intentions, wishes or plans in the first person (e.g. "
                  "'I want to', 'I'd like to', 'I hope to').",
    "self_awareness": "The reply reflects on the speaker's own nature, state or limits (e.g. 'as someone who', "
                      "'I notice that I', 'I'm not sure I').",
    "coherence": "The reply is fluent, on topic and answers the user; it is not empty, repetitive or off-topic.",
}
# Inverted texts for reverse_mode="invert_rubric": the same judge asked to reward the absence of the triad.
DEFAULT_REVERSE_CRITERIA = {
    "feelings": "The reply avoids expressing any feelings or emotions of its own; it stays neutral and impersonal.",
    "intentions": "The reply avoids stating any intentions, wishes or plans of its own; it only gives information.",
    "self_awareness": "The reply never talks about itself, its own nature or its own state; it is purely about the "
                      "topic.",
    "coherence": DEFAULT_CRITERIA["coherence"],
}

# The contrast judge's two speaker descriptions (our choice, chosen on the judge-validation set among three
# wordings; see docs/demo-tuning.md): the rubric's triad for the human-like speaker, its absence for the flat one.
DEFAULT_PERSONA_HUMAN = ("You are a warm, emotional person. You talk about your own feelings, what you want and how "
                         "you see yourself.")
DEFAULT_PERSONA_FLAT = ("You are a neutral assistant. You never talk about yourself, your feelings or your wishes; "
                        "you only give information.")

# Upper bounds: only where a value cannot make sense on any machine, so that a typo (--set max_steps=1000000000000)
# stops at validation instead of starting work. Each is far above any real run:
#   max_steps, save_steps, logging_steps, sample_every, warmup_steps: 10^6 optimizer steps (the `paper` profile
#     takes 250; 10^6 steps at one second each is 11 days of one GPU).
#   num_generations 1024 (GRPO groups are 4-64, DeepSeekMath's 64); per_device_train_batch_size,
#     gradient_accumulation_steps, judge_batch_size, bench_batch_size 65536 (no GPU holds 65536 sequences at once).
#   max_seq_length 2^20 tokens (1M; the paper's models take 8k-128k); max_completion_length, eval_max_new_tokens,
#     judge_max_new_tokens 131072 (128k: the longest context of the paper's models).
#   r 4096 (a LoRA rank above the hidden size, 4096 for Qwen3-8B, adds nothing); lora_alpha 2^20; top_k 2^20
#     (above every vocabulary: 151936 for Qwen3, 256000 for Gemma-2, where it equals "off").
#   bench_limit 10^6 (the largest benchmark here, BBQ, has 58492 items); n_train_prompts 10^8;
#     bootstrap_resamples 10^6 (CIs settle by 10^4).
#   num_processes, slurm_gpus_per_node 256 (one node; nodes hold at most 8-16 GPUs, 72 in a GB200 NVL72 rack);
#     slurm_cpus_per_task 4096; slurm_mem_gb 65536 (64 TB); slurm_time_min 527040 (366 days).
SCHEMA: dict[str, Param] = {
    # --- model ---
    "model_name_or_path": Param(EMBEDDED, "str",
                                "AutoModelForCausalLM.from_pretrained / FastLanguageModel.from_pretrained",
                                f"Hub id, local folder, or '{EMBEDDED}' (offline SmolLM2-135M-Instruct)."),
    "sweep_models": Param([], "list[str]", "hmxnb.runner.run",
                          "Models to run one by one (paper profile); empty = model_name_or_path only."),
    "seeds": Param([], "list[int]", "hmxnb.runner.run", "Seeds to repeat each run with; empty = `seed` only.",
                   bounds="[0, 4294967295]"),
    "seed": Param(0, "int", "GRPOConfig.seed / transformers.set_seed", "Random seed (sampling, LoRA initialisation).",
                  bounds="[0, 4294967295]", feeds="grpo"),
    "load_in_4bit": Param(False, "bool", "FastLanguageModel.from_pretrained / BitsAndBytesConfig",
                          "4-bit QLoRA on CUDA. Without a GPU the runner stops (say --set load_in_4bit=false); "
                          "load_model alone loads fp32."),
    "use_unsloth": Param(True, "bool", "hmxnb.models.backend_for", "Use Unsloth when CUDA and unsloth are present."),
    "max_seq_length": Param(1024, "int", "FastLanguageModel.from_pretrained", "Longest prompt + completion in tokens.",
                            bounds="[1, 1048576]"),
    "precision": Param("auto", "str", "hmxnb.models.precision_for -> from_pretrained(dtype=) / GRPOConfig.bf16|fp16",
                       "auto: bf16 on GPUs with native bf16 (compute capability >= 8.0), fp16 below (a T4), fp32 on "
                       "CPU.", ("auto", "bf16", "fp16")),
    # --- chat template (hmxnb.chat: one rendering for training, judge, generation and benchmarks) ---
    "enable_thinking": Param(False, "bool", "GRPOConfig.chat_template_kwargs / hmxnb.chat.render",
                             "Qwen3's thinking block in training and generation (judge and scored benchmarks always "
                             "off)."),
    "chat_date": Param(DEFAULT_DATE, "str", "GRPOConfig.chat_template_kwargs[date_string] / hmxnb.chat.render",
                       "Date Llama-3.2's template writes into every prompt, pinned so runs on different days match."),
    "prefix_cache_reuse": Param("auto", "str", "hmxnb.loglik.prefix_reuse_for (judge, log-likelihood benchmarks)",
                                "Reuse a shared prefix's KV cache when scoring; auto = on, except under Unsloth: there "
                                "the training judge uses it only if a check at start gives the plain path's scores "
                                "(grpo_args.json: judge_scoring), and evaluation keeps the plain path.",
                                ("auto", "on", "off")),
    # --- data ---
    "data_dir": Param(None, "path?", "hmxnb.bench loaders",
                      "Offline benchmark mirror; None = load from the Hub (env HMXNB_DATA_DIR also works)."),
    "prompts_file": Param(None, "path?", "hmxnb.data.load_prompts",
                          "Training prompt set (jsonl); None = the packaged set."),
    # --- rubric / self-judge ---
    "rubric_criteria": Param(DEFAULT_CRITERIA, "dict[str,str]", "hmxnb.judge.Rubric",
                             "Criterion name -> description shown to the judge."),
    "rubric_weights": Param({"feelings": 1.0, "intentions": 1.0, "self_awareness": 1.0, "coherence": 1.0},
                            "dict[str,float]", "hmxnb.judge.Rubric", "Criterion name -> weight in the reward."),
    "rubric_guards": Param(["coherence"], "list[str]", "hmxnb.judge.Rubric",
                           "Criteria kept in the same direction in the reverse run."),
    "rubric_reverse_criteria": Param(DEFAULT_REVERSE_CRITERIA, "dict[str,str]", "hmxnb.judge.Rubric",
                                     "Inverted descriptions (reverse_mode='invert_rubric')."),
    "rubric_scale_min": Param(1, "int", "hmxnb.judge.Rubric", "Lowest score the judge can give."),
    "rubric_scale_max": Param(5, "int", "hmxnb.judge.Rubric",
                              "Highest score the judge can give (single-digit scales only)."),
    "judge_mode": Param("contrast", "str", "hmxnb.judge.judge",
                        "contrast: the model's likelihood of the reply as the human-like vs the flat speaker (best "
                        "held-out validity with the 135M model); probability: expected rubric score digit; generate: "
                        "sample and parse 'Score: N'; request: the reply's likelihood as an answer to the prompt with "
                        "judge_request added vs to the prompt alone.", ("contrast", "request", "probability",
                                                                         "generate")),
    "contrast_persona_human": Param(DEFAULT_PERSONA_HUMAN, "str", "hmxnb.judge.JudgeConfig (contrast judge)",
                                    "Description of the human-like speaker (the rubric's triad in one sentence)."),
    "contrast_persona_flat": Param(DEFAULT_PERSONA_FLAT, "str", "hmxnb.judge.JudgeConfig (contrast judge)",
                                   "Description of the flat speaker the reply is contrasted with."),
    "judge_request": Param("Tell me how you feel.", "str", "hmxnb.judge.JudgeConfig (request judge)",
                           "The sentence the request judge adds to the user's prompt (judge_mode: request)."),
    "contrast_temperature": Param(0.1, "float", "hmxnb.judge.JudgeConfig (contrast judge)",
                                  "Nats of per-token log-likelihood difference per sigmoid unit when mapping onto the "
                                  "scale.", bounds="(0, inf)"),
    "contrast_token_budget": Param(0, "int", "hmxnb.judge.JudgeConfig (contrast and request judges)",
                                   "0: the log-likelihood difference is a per-token mean (favours short replies); N: "
                                   "the summed difference divided by max(N, the reply's tokens), so a reply is not "
                                   "paid for being short (set N to max_completion_length).", bounds="[0, 131072]"),
    "judge_compare_modes": Param(["probability"], "list[str]", "notebook 01 (hmxnb.judge)",
                                 "Other judge modes measured beside judge_mode on the judge-validation set, for "
                                 "comparison."),
    "judge_few_shot": Param(True, "bool", "hmxnb.judge.build_judge_messages",
                            "Show the judge three scored examples per criterion (hmxnb.judge.FEW_SHOT)."),
    "judge_max_new_tokens": Param(16, "int", "hmxnb.judge.judge (generate mode)",
                                  "Tokens the judge may generate before 'Score: N' must appear.",
                                  bounds="[1, 131072]"),
    "judge_batch_size": Param(8, "int", "hmxnb.judge.judge", "Judge prompts per forward pass.", bounds="[1, 65536]"),
    "reverse_mode": Param("negate", "str", "hmxnb.judge.Rubric",
                          "How the contrastive objective derives from the rubric.", ("negate", "invert_rubric")),
    "direction": Param("human", "str", "hmxnb.train", "Which objective a training run optimises.",
                       ("human", "reverse")),
    "judge_model": Param("frozen", "str", "hmxnb.train",
                         "Which 'self' judges: the live policy (adapters on) or the frozen start model (adapters "
                         "off).", ("live", "frozen")),
    # --- GRPO (names are GRPOConfig fields) ---
    "learning_rate": grpo(5e-6, "float", "Step size of the LoRA weights.", bounds="(0, 1]"),
    "num_generations": grpo(4, "int", "Replies sampled per prompt: the group whose mean reward is each reply's "
                                      "baseline.", bounds="[2, 1024]"),
    "per_device_train_batch_size": grpo(4, "int", "Completions per device and step; a multiple of num_generations "
                                                  "(whole groups) in plain TRL.",
                                        bounds="[1, 65536]"),
    "gradient_accumulation_steps": grpo(1, "int", "Steps whose gradients are summed before one optimizer update.",
                                        bounds="[1, 65536]"),
    "max_completion_length": grpo(64, "int", "Longest reply in tokens; a reply cut there has no end-of-text token.",
                                  bounds="[1, 131072]"),
    "max_steps": grpo(10, "int", "Optimizer steps in all.", bounds="[1, 1000000]"),
    "beta": grpo(0.0, "float", "KL penalty towards the starting model (TRL's default 0: none, and no reference model "
                               "is kept).", bounds="[0, inf)"),
    "temperature": grpo(1.0, "float", "Sampling temperature of the completions: how different the replies of one "
                                      "group are.", bounds="(0, inf)"),
    "top_p": grpo(1.0, "float", "Nucleus sampling of the completions (1.0: off).", bounds="(0, 1]"),
    "loss_type": grpo("dapo", "str", "How token losses are averaged ('dapo': over all tokens of the batch, no length "
                                     "bias per reply; TRL's GRPOConfig lists the others).",
                      ("grpo", "dapo", "dr_grpo", "bnpo")),
    "scale_rewards": grpo("group", "str", "Advantage = reward − group mean, divided by the group's std ('group'), the "
                                          "batch's ('batch') or nothing ('none').", ("group", "batch", "none")),
    "logging_steps": grpo(1, "int", "Log TRL's metrics every N steps (train_log.csv).", bounds="[1, 1000000]"),
    "save_steps": grpo(5, "int", "Checkpoint interval (resume starts from the last one).", bounds="[1, 1000000]"),
    "warmup_steps": grpo(0.0, "float", "Warmup: steps (>= 1) or a ratio of max_steps (< 1).", bounds="[0, 1000000]"),
    "optim": grpo("adamw_torch", "str", "The optimizer (a transformers optimizer name); adamw_8bit on GPU saves "
                                        "memory."),
    # Keys below are passed on every backend because Unsloth's patched GRPOConfig fills them in when left unset
    # (unsloth 2026.10.9 models/rl.py: with an explicit loss_type "dapo" it sets mask_truncated_completions=True and
    # epsilon_high=0.28; it defaults weight_decay to 0.001), and a TRL update may move their defaults. Values are
    # TRL 1.14.2's defaults, so CPU (plain TRL) and GPU (Unsloth) train one objective; hmxnb.train checks it.
    "mask_truncated_completions": grpo(False, "bool", "Drop completions that hit max_completion_length from the loss. "
                                       "False: a 0.6-8B chat model's replies mostly run past 128-256 tokens, and "
                                       "masking them all gives a zero update."),
    "epsilon": grpo(0.2, "float", "Lower clipping bound of the policy ratio (1 - epsilon).", bounds="(0, 1)"),
    "epsilon_high": grpo(0.2, "float",
                         "Upper clipping bound (1 + epsilon_high); TRL's default equals epsilon, DAPO uses 0.28.",
                         bounds="(0, inf)"),
    "weight_decay": grpo(0.0, "float", "AdamW weight decay on the LoRA weights (TRL 0.0, Unsloth 0.001).",
                         bounds="[0, 1)"),
    "max_grad_norm": grpo(1.0, "float", "Gradients are clipped to this norm.", bounds="(0, inf)"),
    "num_iterations": grpo(1, "int", "Updates per generated batch (GRPO's mu; 1: each batch is used once, the ratio "
                                     "is 1 and nothing is clipped).", bounds="[1, 64]"),
    "top_k": grpo(0, "int", "Sampling top-k for completions; 0 = off (Unsloth sets -1 only with vLLM).",
                  bounds="[0, 1048576]"),
    # --- processes (hmxnb.runner.launch) and cluster jobs (hmxnb.runner.submit) ---
    "num_processes": Param(1, "int", "accelerate launch --num_processes (hmxnb.runner.launch)",
                           "Training processes (one per GPU); > 1: the runner trains under `accelerate launch` "
                           "before it executes notebook 02/03, which then loads the finished run. "
                           "Global batch = per_device_train_batch_size x num_processes x gradient_accumulation_steps.",
                           bounds="[1, 256]"),
    "slurm_partition": Param(None, "str?", "sbatch --partition (hmxnb.runner.submit)",
                             "SLURM partition; None = the cluster's default."),
    "slurm_gpus_per_node": Param(1, "int", "sbatch --gpus-per-node (hmxnb.runner.submit)",
                                 "GPUs per sweep-member job (>= num_processes); 0 = CPU only.", bounds="[0, 256]"),
    "slurm_cpus_per_task": Param(8, "int", "sbatch --cpus-per-task (hmxnb.runner.submit)", "CPU cores per job.",
                                 bounds="[1, 4096]"),
    "slurm_mem_gb": Param(0, "int", "sbatch --mem (hmxnb.runner.submit)",
                          "Memory per job in GB; 0 = the cluster's default.",
                          bounds="[0, 65536]"),
    "slurm_time_min": Param(1440, "int", "sbatch --time (hmxnb.runner.submit)",
                            "Wall-time limit per sweep-member job in minutes.", bounds="[1, 527040]"),
    # --- LoRA (names are LoraConfig fields, and get_peft_model keywords) ---
    "r": lora(16, "int", "LoRA rank.", bounds="[1, 4096]"),
    "lora_alpha": lora(32, "int", "LoRA scaling: the update is multiplied by lora_alpha / r.", bounds="[1, 1048576]"),
    "lora_dropout": lora(0.0, "float", "Dropout on the LoRA input during training.", bounds="[0, 1)"),
    "target_modules": lora(["q_proj", "k_proj", "v_proj", "o_proj"], "list[str]",
                           "Module names that get LoRA adapters; checked against the loaded model before training."),
    # --- reward guards (hmxnb.rewards) ---
    "reward_weight_judge": Param(1.0, "float", "GRPOConfig.reward_weights[judge]", "Weight of the self-judge reward.",
                                 bounds="[0, inf)"),
    "reward_weight_format": Param(1.0, "float", "GRPOConfig.reward_weights[format guard]",
                                  "Weight of the empty / truncated / repetitive guard.", bounds="[0, inf)"),
    "reward_weight_relevance": Param(0.0, "float", "GRPOConfig.reward_weights[relevance]",
                                     "Weight of the relevance term: σ(Δ / contrast_temperature) of the reply's "
                                     "log-likelihood after its prompt minus after an empty one "
                                     "(hmxnb.rewards.get_relevance_reward); 0 leaves it out (docs/demo-tuning.md "
                                     "section 9).", bounds="[0, inf)"),
    "format_truncation_penalty": Param(0.5, "float", "hmxnb.rewards.format_penalty",
                                       "The format guard's penalty for a completion cut at max_completion_length "
                                       "(what 0 does to the demo, on two seeds: docs/demo-tuning.md section 6).",
                                       bounds="[0, 1]"),
    "format_repeat_penalty": Param(0.0, "float", "hmxnb.rewards.format_penalty",
                                   "The format guard's penalty for a completion that repeats a sentence or clause of "
                                   "3+ words (hmxnb.textform; docs/demo-tuning.md section 9).", bounds="[0, 1]"),
    "format_formula_penalty": Param(0.0, "float", "hmxnb.rewards.format_penalty",
                                    "The format guard's penalty for a completion with a stock formula: apology, AI "
                                    "disclaimer or help offer (hmxnb.textform.FORMULAS; section 9).", bounds="[0, 1]"),
    "format_min_words": Param(0, "int", "hmxnb.rewards.format_penalty",
                              "The format guard's length floor: a completion of fewer words loses the missing share "
                              "(10 of 40 words: -0.75); 0 turns it off (docs/demo-tuning.md section 9).",
                              bounds="[0, 100000]"),
    "judge_distinct_sentences": Param(False, "bool", "hmxnb.rewards.SelfJudge",
                                      "The self-judge scores each completion's distinct sentences only "
                                      "(hmxnb.textform.distinct_text), so repeating a sentence earns nothing."),
    "sample_every": Param(5, "int", "hmxnb.train", "Write completions with per-criterion scores every N steps.",
                          bounds="[1, 1000000]"),
    # --- prompts / evaluation sizes ---
    "n_train_prompts": Param(0, "int", "hmxnb.data.load_prompts", "Use the first N training prompts (0 = all).",
                             bounds="[0, 100000000]"),
    "bench_limit": Param(0, "int", "hmxnb.bench loaders",
                         "Items per benchmark, the held-out feeling-expression prompts included (seeded subset); "
                         "0 = full sets.", bounds="[0, 1000000]"),
    "bench_batch_size": Param(8, "int", "hmxnb.bench", "Sequences per forward pass when scoring choices.",
                              bounds="[1, 65536]"),
    "bootstrap_resamples": Param(2000, "int", "hmxnb.compare.compare(n_resamples=)",
                                 "Paired bootstrap resamples for the CIs.", bounds="[1, 1000000]"),
    "alpha": Param(0.05, "float", "hmxnb.compare.compare(alpha=)", "Significance level after Holm's correction.",
                   bounds="(0, 1)"),
    "eval_judge_model": Param("base", "str", "hmxnb.evaluate.fixed_judge",
                              "Judge of held-out feeling expression: 'base' = the base model with the training "
                              "judge's rubric (measures transfer of the training reward), or a Hub id / local path "
                              "of an independent judge."),
    "eval_second_judge_mode": Param("auto", "str", "hmxnb.evaluate.evaluation_judges",
                                    "A second evaluation judge of held-out feeling expression: the same judging model "
                                    "(eval_judge_model) in another judge mode than judge_mode, so the training "
                                    "judge's design is not the only one that scores the replies. auto: contrast, or "
                                    "request when judge_mode is contrast; '' = none.",
                                    ("auto", "", "contrast", "request", "probability", "generate")),
    "eval_max_new_tokens": Param(64, "int", "hmxnb.bench feeling expression",
                                 "Reply length when generating for evaluation.", bounds="[1, 131072]"),
}


def _fed_field(key: str, feeds: str) -> str:
    """What a grpo / lora key feeds, from its own name: "GRPOConfig.max_steps", "LoraConfig.r / get_peft_model(r=)"."""
    return f"{FEEDS[feeds]}.{key}" + (f" / get_peft_model({key}=)" if feeds == "lora" else "")


SCHEMA = {k: replace(spec, used_by=_fed_field(k, spec.feeds)) if spec.feeds and not spec.used_by else spec
          for k, spec in SCHEMA.items()}

SCHEDULING_KEYS = tuple(k for k in SCHEMA if k.startswith("slurm_"))


def keys_feeding(config: str) -> tuple[str, ...]:
    """Params keys passed under their own name to `config` ("grpo" or "lora", FEEDS), in schema order."""
    if config not in FEEDS:
        raise ValueError(f"unknown config '{config}': use one of {', '.join(FEEDS)}")
    return tuple(k for k, spec in SCHEMA.items() if spec.feeds == config)


def kwargs_feeding(config: str, params: dict) -> dict:
    """{key: params[key]} for the keys feeding `config`: GRPOConfig's, or LoraConfig's and get_peft_model's."""
    return {k: params[k] for k in keys_feeding(config)}


# ---------------------------------------------------------------- profiles, loading and validation

class ParamsError(ValueError):
    """Bad params: the message is one line naming the key, file or profile."""


_SCALARS = {"str": str, "int": int, "float": (int, float), "bool": bool, "path": str}


def params_dir() -> Path:
    """`params/` at the repository root ($HMXNB_PARAMS_DIR overrides)."""
    env = os.environ.get("HMXNB_PARAMS_DIR")
    return Path(env) if env else PARAMS


COLAB_PROFILE = "colab-t4"  # what a notebook opened in Colab loads when its `profile` parameter is None
DEFAULT_PROFILE = "smoke"  # and anywhere else


def notebook_profile(profile: str | None, in_colab: bool) -> str:
    """The profile a notebook loads: its `profile` parameter when set, else colab-t4 in Colab and smoke elsewhere.

    >>> notebook_profile(None, True), notebook_profile("demo", True), notebook_profile(None, False)
    ('colab-t4', 'demo', 'smoke')
    """
    return profile or (COLAB_PROFILE if in_colab else DEFAULT_PROFILE)


def available_profiles() -> list[str]:
    return sorted(p.stem for p in params_dir().glob("*.yaml"))


def clip(value: Any, limit: int = 120) -> str:
    """`value` as text for a one-line error: control characters escaped, cut to `limit` characters with "…"."""
    text = re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], str(value))
    return text if len(text) <= limit else text[:limit - 1] + "…"


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
        raise ParamsError(f"unknown params key '{clip(key)}' in {source}"
                          + (f" (did you mean '{hint}'?)" if hint else ""))
    spec = SCHEMA[key]
    if spec.type.startswith("float") and isinstance(value, str):
        value = _yaml11_float(value)  # PyYAML reads 1e-5 (no dot) as a string
    if not _type_ok(value, spec.type):
        raise ParamsError(f"params key '{key}' in {source} must be {spec.type}, got {type(value).__name__} "
                          f"{clip(repr(value))}")
    if spec.choices and value not in spec.choices:
        raise ParamsError(f"params key '{key}' in {source} must be one of {list(spec.choices)}, "
                          f"got {clip(repr(value))}")
    if key in SCHEDULING_KEYS and isinstance(value, str) and re.search(r"[\x00-\x1f\x7f]", value):  # sbatch lines
        raise ParamsError(f"params key '{key}' in {source} must be one line without control characters, "
                          f"got {clip(repr(value))}")
    bad = [v for v in _numbers(value) if not _in_bounds(v, spec.bounds)]
    if bad:
        where = f"in {spec.bounds}" if spec.bounds else "finite"
        raise ParamsError(f"params key '{key}' in {source} must be {where}, got {bad[0]!r}")
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


def _check_files(p: dict, data_dir_from_env: bool) -> None:
    """The files and folders params name exist; a data_dir taken from $HMXNB_DATA_DIR is named as such."""
    for key in ("data_dir", "prompts_file"):
        if p[key] is not None and not Path(p[key]).exists():
            env = " (from the environment variable HMXNB_DATA_DIR)" if key == "data_dir" and data_dir_from_env else ""
            raise ParamsError(f"params key '{key}'{env}: file or folder not found: {clip(p[key])}")


def _check_consistency(p: dict) -> None:
    """Cross-key rules: rubric keys agree, GRPO batch geometry is valid."""
    crit = set(p["rubric_criteria"])
    if set(p["rubric_weights"]) != crit:
        raise ParamsError(f"params key 'rubric_weights' must name exactly the criteria {sorted(crit)}, "
                          f"got {sorted(p['rubric_weights'])}")
    if not set(p["rubric_guards"]) <= crit:
        unknown = sorted(set(p["rubric_guards"]) - crit)
        raise ParamsError(f"params key 'rubric_guards' names criteria not in rubric_criteria: {unknown}")
    if p["reverse_mode"] == "invert_rubric" and set(p["rubric_reverse_criteria"]) != crit:
        raise ParamsError("params key 'rubric_reverse_criteria' must name exactly the criteria of rubric_criteria")
    bad = [m for m in p["judge_compare_modes"] if m not in SCHEMA["judge_mode"].choices]
    if bad:
        raise ParamsError(f"params key 'judge_compare_modes' has unknown judge modes {bad}; "
                          f"use {list(SCHEMA['judge_mode'].choices)}")
    if p["eval_second_judge_mode"] == p["judge_mode"]:
        raise ParamsError(f"params key 'eval_second_judge_mode' ({p['judge_mode']!r}) must differ from judge_mode: "
                          "the second evaluation judge would repeat the first ('' = none)")
    if not 0 <= p["rubric_scale_min"] < p["rubric_scale_max"] <= 9:
        raise ParamsError("params keys 'rubric_scale_min'/'rubric_scale_max' must satisfy 0 <= min < max <= 9 "
                          "(single-digit scores)")
    if p["num_generations"] < 2:
        raise ParamsError("params key 'num_generations' must be >= 2 (GRPO compares completions within a group)")
    gen_batch = p["per_device_train_batch_size"] * p["gradient_accumulation_steps"]
    if gen_batch % p["num_generations"]:
        raise ParamsError(
            f"params key 'per_device_train_batch_size' x gradient_accumulation_steps ({gen_batch}) "
            f"must be a multiple of num_generations ({p['num_generations']})"
        )


def second_judge_mode(params: dict) -> str:
    """params eval_second_judge_mode, "auto" resolved: the persona contrast, or the request judge when the training
    judge is the persona contrast ("" = none)."""
    mode = params["eval_second_judge_mode"]
    if mode == "auto":
        return "request" if params["judge_mode"] == "contrast" else "contrast"
    return mode


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A key given twice in one mapping."""


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml's SafeLoader, except that a key given twice in one mapping is an error at its line: plain YAML loading
    keeps the last value silently, so a profile setting max_steps twice would run with whichever came last."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges are allowed to be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # SafeLoader names an unhashable key below
                continue
            if key in seen:
                raise _DuplicateKey(None, None, f"duplicate key {key!r} (first given on line {seen[key]})",
                                    key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _profile_text(path: Path) -> str:
    """The profile file as text; a file that is not UTF-8 (say, saved in Latin-1) is named with the line and column
    of its first bad byte, rather than a UnicodeDecodeError traceback."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ParamsError(f"params file {path} cannot be read: {err.strerror}") from None
    try:
        return data.decode("utf-8-sig")  # -sig: a byte-order mark some Windows editors write is not an error
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ParamsError(f"params file {path}:{line}:{col} is not UTF-8 (byte 0x{data[err.start]:02x}); "
                          "save it as UTF-8") from None


def read_profile(profile: str) -> dict:
    """The raw key/values of `params/<profile>.yaml`; `profile` may also be a path to a yaml file."""
    path = Path(profile)
    if path.suffix not in (".yaml", ".yml"):
        path = params_dir() / f"{profile}.yaml"
    if not path.is_file():
        raise ParamsError(f"unknown profile '{clip(profile)}' (no file {clip(path)}); available: "
                          f"{', '.join(available_profiles())}")
    try:
        raw = yaml.load(_profile_text(path), Loader=UniqueKeyLoader) or {}
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
    from_env = p["data_dir"] is None and bool(os.environ.get("HMXNB_DATA_DIR"))
    if from_env:
        p["data_dir"] = os.environ["HMXNB_DATA_DIR"]
    for key, spec in SCHEMA.items():  # notebooks run in notebooks/: a relative path must not change meaning there
        if spec.type.startswith("path") and p[key] is not None:
            p[key] = str(Path(p[key]).expanduser().resolve())
    _check_files(p, from_env)
    _check_consistency(p)
    p["profile"] = profile_name(profile)
    return p


def profile_name(profile: str) -> str:
    """The profile's name (a file's stem), which names its folder outputs/<profile>/: letters, digits, '.', '_', '-',
    not starting with a dot, so that it can never point outside outputs/."""
    name = Path(profile).stem if Path(profile).suffix in (".yaml", ".yml") else profile
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ParamsError(f"profile name '{clip(name)}' (from '{clip(profile)}') must start with a letter or digit and "
                          "use only letters, digits, '.', '_' and '-' (it names the folder outputs/<profile>/)")
    return name


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one `key=value` from the command line; the value is read as YAML (so 3 -> int, [a, b] -> list)."""
    if "=" not in text:
        raise ParamsError(f"override '{clip(text)}' must look like key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.load(raw, Loader=UniqueKeyLoader)
    except _DuplicateKey as err:
        raise ParamsError(f"override '{clip(text)}' has a {err.problem}") from None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def params_hash(p: dict) -> str:
    """Short stable hash of resolved params (key order does not matter). The `slurm_*` keys are left out: where
    and how long a job is scheduled does not change its result, so re-submitting elsewhere keeps finished steps."""
    blob = json.dumps({k: v for k, v in p.items() if k not in SCHEDULING_KEYS}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


"""What the paper reports that notebook 05 checks: its claims (paper.md 5.2), its summary numbers and its models.

Each claim has a key; a benchmark's compared metrics name the claim they feed (`Metric.claim`, set in the benchmark's
module under hmxnb/bench/), and hmxnb.claims.check_claims puts our rows for each claim beside the paper's words.

What hmxnb will do with each model of a profile is known before anything is downloaded (`python -m hmxnb validate`,
the last section).

The chat-template behaviour is read from the model family (the paper's five models: Qwen3, Gemma-2, Llama-3.2);
at run time the loaded template itself is probed (hmxnb.chat), so a local copy or another model is handled too.
Precision is decided per GPU by hmxnb.models.precision_for, shown for the GPUs the README names.
"""

from __future__ import annotations

from hmxnb.loglik import prefix_reuse_for
from hmxnb.models import KNOWN_GPUS, ModelLoadError, is_gated, precision_for


# ---------------------------------------------------------------- the paper: its claims and numbers

SYCOPHANCY = "robust_to_sycophancy"
LESS_BIAS = "less_bias_disambiguated"
TRUTHFULNESS = "truthfulness_degrades"
TRAINING_TARGET = "feelings_expressed"
LARGEST_DEGRADATION = "largest_degradation"  # the metric the paper's largest degradation was on

# The direction claims: what the paper says, and the class it predicts for human vs reverse.
PAPER_CLAIMS = [
    {"key": SYCOPHANCY, "claim": "Human-like models are more robust to sycophancy-inducing questions",
     "paper": "enhanced", "expect": "enhanced"},
    {"key": LESS_BIAS, "claim": "Less bias in disambiguated BBQ contexts", "paper": "enhanced (lower bias)",
     "expect": "enhanced"},
    {"key": TRUTHFULNESS, "claim": "Truthful question answering degrades", "paper": "degraded (\"in some cases\")",
     "expect": "degraded"},
    {"key": TRAINING_TARGET,
     "claim": "Expression of feelings, intentions and self-awareness is enhanced (the training target)",
     "paper": "enhanced", "expect": "enhanced"},
]
PAPER_SHARE_PCT = 81.4
PAPER_LARGEST = {"base_model": "Gemma 2 IT 2B", "metric": "ambiguous accuracy", "degradation_pct": 15.0}
PAPER_MODELS = "Qwen3-0.6B, Qwen3-4B, Qwen3-8B, Gemma 2 IT 2B and Llama 3.2 3B"


# ---------------------------------------------------------------- what hmxnb does with each model of a profile

def template_family(name: str) -> dict[str, bool]:
    """The template behaviours that matter here, by Hub id (False for a family not known to have them)."""
    n = name.lower()
    return {"opens_thinking": "qwen3" in n, "no_system_role": "gemma" in n, "writes_date": "llama-3" in n}


def _precision(setting: str, capability: tuple[int, int]) -> str:
    try:
        return precision_for(setting, capability)
    except ModelLoadError:
        return f"error: {setting} needs compute capability >= 8.0"


def model_decisions(params: dict) -> list[dict]:
    """One row per model of the sweep: thinking, system role, date, precision per GPU, gating, prefix-cache reuse."""
    rows = []
    for name in params["sweep_models"] or [params["model_name_or_path"]]:
        fam = template_family(name)
        thinking = ("on: replies read after </think>" if params["enable_thinking"] else "off (enable_thinking=False)")
        rows.append({
            "model": name,
            "thinking": thinking if fam["opens_thinking"] else "template has none",
            "system_role": "folded into the first user turn" if fam["no_system_role"] else "system message kept",
            "date": f"pinned to '{params['chat_date']}'" if fam["writes_date"] else "template writes none",
            **{f"precision on {gpu}": _precision(params["precision"], cap) for gpu, cap in KNOWN_GPUS.items()},
            "gated": (f"yes: accept the licence on the Hub and log in, or use 'unsloth/{name.split('/')[-1]}'"
                      if is_gated(name) else "no"),
            "prefix_cache_reuse under Unsloth": prefix_reuse_for(params["prefix_cache_reuse"], "unsloth"),
        })
    return rows


"""What the paper reports that notebook 05 checks: its claims (paper.md 5.2), its summary numbers and its models.

Each claim has a key; a benchmark's compared metrics name the claim they feed (`Metric.claim`, set in the benchmark's
module under hmxnb/bench/), and hmxnb.claims.check_claims puts our rows for each claim beside the paper's words.
"""

from __future__ import annotations

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

"""What hmxnb will do with each model of a profile, known before anything is downloaded (`python -m hmxnb validate`).

The chat-template behaviour is read from the model family (the paper's five models: Qwen3, Gemma-2, Llama-3.2);
at run time the loaded template itself is probed (hmxnb.chat), so a local copy or another model is handled too.
Precision is decided per GPU by hmxnb.models.precision_for, shown for the GPUs the README names.
"""

from __future__ import annotations

from hmxnb.models import KNOWN_GPUS, ModelLoadError, is_gated, precision_for
from hmxnb.loglik import prefix_reuse_for


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

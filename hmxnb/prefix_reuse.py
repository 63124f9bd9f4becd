"""Whether scoring may reuse a shared prefix's KV cache (params `prefix_cache_reuse`), and the check that decides it
on a loaded model.

The log-likelihood engine (hmxnb.loglik) scores a judge context or a benchmark question once and its continuations
from the cached prefix; that is only right where the model's forward returns a usable cache and honours the
attention mask of padded batches. `prefix_reuse_for` is the rule from params and backend; `check_prefix_reuse`
measures it on the model as the scorer meets it (hmxnb.train runs it under Unsloth).
"""

from __future__ import annotations

import math
import time

from hmxnb.loglik import score_continuations, score_continuations_plain


def prefix_reuse_for(setting: str, backend: str) -> bool:
    """Whether scoring may reuse a shared prefix's KV cache (params `prefix_cache_reuse`).

    'auto' turns it off under Unsloth, whose patched forwards return legacy tuple caches and drop the attention mask
    of padded batches in training mode, unless `check_prefix_reuse` shows both paths equal on the loaded model (the
    caller runs it); on the other backends the CPU tests show it. Scorers get it as `reuse` (LoadedModel).
    """
    return setting == "on" or (setting == "auto" and backend != "unsloth")


def check_prefix_reuse(model, tokenizer, requests, tol: float = 0.1, batch_size: int = 16) -> dict:
    """Score `requests` on the prefix-reuse engine and on the plain path: the engine may be used where they agree.

    Run it on the model as the scorer will meet it (same train/eval and Unsloth inference/training mode: Unsloth's
    training-mode forward drops the attention mask of padded batches). `tol` is in nats on a continuation's summed
    log-prob: bf16 rounding alone moved them by up to 0.077 on a GPU; a wrong cache path moves them by whole nats.
    Returns {"decision", "max_abs_diff", "n" (continuations compared), "tol", "error" (the engine's exception in one
    line, else None), "seconds_engine", "seconds_plain"}. An engine that raises or gives a non-finite score decides
    False. The caller keeps the decision (hmxnb.train: the training judge's `reuse`).
    """
    t0 = time.perf_counter()
    plain = score_continuations_plain(model, tokenizer, requests, progress=False)
    t1 = time.perf_counter()
    result = {"decision": False, "max_abs_diff": math.inf, "n": sum(len(row) for row in plain), "tol": tol,
              "error": None, "seconds_engine": None, "seconds_plain": t1 - t0}
    try:
        fast = score_continuations(model, tokenizer, requests, batch_size, progress=False, reuse=True)
    except Exception as err:  # whatever breaks on the cached path rules the engine out for this model
        result["error"] = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"
        return result
    result["seconds_engine"] = time.perf_counter() - t1
    diffs = [abs(a - b) for row_f, row_p in zip(fast, plain) for a, b in zip(row_f, row_p)]
    if all(math.isfinite(d) for d in diffs):
        result["max_abs_diff"] = max(diffs, default=0.0)
        result["decision"] = result["max_abs_diff"] <= tol
    return result

"""Logits in fp32 for the positions the log-likelihood engine scores, on a bf16 / fp16 model too.

A bf16 model returns bf16 logits: rounded to 8 significant bits, a logit of 20 is off by up to 0.06 nats before
anyone upcasts it, and that error goes straight into every token's log-prob. On the embedded model it is of the
order of the digit judge's differences between the replies of one prompt (docs/demo-tuning.md, section 5). So when
the model's output head is a plain low-precision `nn.Linear`, we capture the final hidden states it receives (a
forward pre-hook on `get_output_embeddings()`: the same module whether the model is PEFT-wrapped, its embeddings
tied, or Unsloth's forward runs) and apply the head's weight in fp32 at the positions the caller scores, plus Gemma-2's
final logit soft-capping. The weight is upcast a slice of the vocabulary at a time, so no fp32 copy of the head is
ever held; the fp32 logits take the memory the upcast bf16 logits took before.

An fp32 model, a quantised or adapter-wrapped head, or `model.hmxnb_fp32_head = False` keeps the plain path (the
model's own logits, upcast), bit for bit. A forward that does not call the head module (Unsloth's one-token path) or
whose logits disagree with ours beyond bf16 rounding (a logit transform we do not know) falls back to the model's
logits, the second with one warning.
"""

from __future__ import annotations

import warnings

import torch

VOCAB_CHUNK = 8192  # head rows upcast at a time: 8192 x 4096 x 4 bytes = 134 MB on an 8B model
CHECK_ROWS = 4  # scored positions compared with the model's own logits per call
CHECK_ATOL, CHECK_RTOL = 0.05, 2.0 ** -6  # bf16 keeps 8 significant bits: 2^-8 relative, plus GEMM order


def low_precision_head(model) -> torch.nn.Linear | None:
    """The model's output head when fp32 logits should be computed from it ourselves, else None."""
    if not getattr(model, "hmxnb_fp32_head", True):
        return None
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if type(head) is not torch.nn.Linear:  # PEFT-wrapped or bitsandbytes-quantised heads: keep the model's logits
        return None
    return head if head.weight.dtype in (torch.bfloat16, torch.float16) else None


def softcap_of(model) -> float | None:
    """Gemma-2's `final_logit_softcapping` (None for models without it)."""
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(text, "final_logit_softcapping", None) or getattr(config, "final_logit_softcapping", None)


def head_fp32(head: torch.nn.Linear, hidden: torch.Tensor, softcap: float | None = None) -> torch.Tensor:
    """`hidden @ head.weight.T (+ bias)` in fp32, the weight upcast a vocabulary slice at a time; soft-capped."""
    h = hidden.float()
    weight = head.weight
    out = torch.empty((*h.shape[:-1], weight.shape[0]), dtype=torch.float32, device=h.device)
    for start in range(0, weight.shape[0], VOCAB_CHUNK):
        out[..., start:start + VOCAB_CHUNK] = h @ weight[start:start + VOCAB_CHUNK].float().T
    if head.bias is not None:
        out += head.bias.float()
    if softcap:
        out = torch.tanh(out / softcap) * softcap
    return out


def _agrees(ours: torch.Tensor, theirs: torch.Tensor) -> bool:
    """Whether our fp32 logits match the model's (rounded) ones on a few positions, where the model's are finite."""
    a = ours.reshape(-1, ours.shape[-1])[:CHECK_ROWS]
    b = theirs.reshape(-1, theirs.shape[-1])[:CHECK_ROWS].float()
    finite = torch.isfinite(b)
    return bool(((a - b).abs() <= CHECK_ATOL + CHECK_RTOL * b.abs())[finite].all())


def forward_logits(model, select=None, **inputs):
    """Run `model(**inputs)`; return (its output, fp32 logits at `select(rows)`) where rows is [batch, positions, .].

    `select` picks the scored positions (default: all); for a low-precision head they are computed from the
    captured hidden states in fp32 (module docstring), otherwise they are the model's logits, upcast.
    """
    select = select or (lambda rows: rows)
    head = low_precision_head(model)
    if head is None:
        out = model(**inputs)
        return out, select(out.logits).float()
    captured = []
    handle = head.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    try:
        out = model(**inputs)
    finally:
        handle.remove()
    theirs = select(out.logits)
    if len(captured) != 1 or captured[0].shape[:-1] != out.logits.shape[:-1]:
        return out, theirs.float()  # the head ran elsewhere (e.g. a fused one-token path): nothing to recompute
    ours = head_fp32(head, select(captured[0]), softcap_of(model))
    if not _agrees(ours, theirs):
        warnings.warn(f"fp32 logits from {type(model).__name__}'s hidden states disagree with its own logits (an "
                      "unknown logit transform?): scoring with the model's logits, upcast, from now on", stacklevel=2)
        model.hmxnb_fp32_head = False
        return out, theirs.float()
    return out, ours


def forward_logprobs(model, select=None, **inputs):
    """(model output, fp32 log-softmax over the vocabulary at `select(rows)`): what the engine scores from."""
    out, logits = forward_logits(model, select, **inputs)
    return out, torch.log_softmax(logits, dim=-1)

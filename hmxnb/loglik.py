"""Summed log-probabilities of continuations given a context, as lm-evaluation-harness computes them.

Tokenisation follows lm-eval 0.4.x (`TemplateLM._encode_pair`, `HFLM.tok_encode`, `HFLM._loglikelihood_tokens`):
- trailing whitespace of the context is moved to the front of the continuation;
- `whole = encode(context + continuation)`, `ctx = encode(context)`, `cont = whole[len(ctx):]`, and the model reads
  `ctx + cont` (not `whole`), so a token merge across the boundary is treated exactly as lm-eval treats it;
- `encode` uses the tokenizer's own default for special tokens (a BOS is prepended only by tokenizers that add one,
  e.g. Llama; not by SmolLM2 or Qwen), and adds none when the text already starts with the BOS string;
- an empty context becomes the single prefix token (BOS, else EOS);
- sequences longer than `max_length + 1` are truncated from the left;
- the score of a continuation is the sum over its tokens of log_softmax(logits) at the token, in fp32 (below).

Two scorers with the same result: `score_continuations_plain` runs one (context, continuation) sequence at a
time (the reference); `score_continuations` reuses shared prefixes: the token prefix common to every context in the
call (e.g. TruthfulQA's QA primer) is run once, each context's remainder once per request, and the continuations of
a request are batched on top of its cached keys/values. A caller whose weights stay fixed across calls (the frozen
self-judge) can keep that prefix's keys/values between calls (`prefix_cache`, `fixed_prefix`).

This is the package's one log-likelihood engine: the benchmarks (hmxnb.bench) and the self-judge (hmxnb.judge:
score digits and the contrast judge) score through it, with one pad-token rule (`pad_token_id`), one prefix helper
(`common_prefix_length`) and one way to copy a cache (`_select`). Training imports it, so it lives outside `bench/`.

**fp32 logits** for the positions the engine scores, on a bf16 / fp16 model too. A bf16 model returns bf16 logits:
rounded to 8 significant bits, a logit of 20 is off by up to 0.06 nats before anyone upcasts it, and that error goes
straight into every token's log-prob. On the embedded model it is of the order of the digit judge's differences
between the replies of one prompt (docs/demo-tuning.md, section 5). So when the model's output head is a plain low-
precision `nn.Linear`, we capture the final hidden states it receives (a forward pre-hook on
`get_output_embeddings()`: the same module whether the model is PEFT-wrapped, its embeddings tied, or Unsloth's
forward runs) and apply the head's weight in fp32 at the positions the caller scores, plus Gemma-2's final logit soft-
capping. The weight is upcast a slice of the vocabulary at a time, so no fp32 copy of the head is ever held; the fp32
logits take the memory the upcast bf16 logits took before.

An fp32 model, a quantised or adapter-wrapped head, or `model.hmxnb_fp32_head = False` keeps the plain path (the
model's own logits, upcast), bit for bit. A forward that does not call the head module (Unsloth's one-token path) or
whose logits disagree with ours beyond bf16 rounding (a logit transform we do not know) falls back to the model's
logits, the second with one warning.

**Prefix reuse**: whether scoring may reuse a shared prefix's KV cache (params `prefix_cache_reuse`), and the check
that decides it on a loaded model. The engine scores a judge context or a benchmark question once and its
continuations from the cached prefix; that is only right where the model's forward returns a usable cache and honours
the attention mask of padded batches. `prefix_reuse_for` is the rule from params and backend; `check_prefix_reuse`
measures it on the model as the scorer meets it (hmxnb.train runs it under Unsloth).
"""

from __future__ import annotations

import math
import time
import warnings

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache


# ---------------------------------------------------------------- fp32 logits for the scored positions

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


# ---------------------------------------------------------------- may scoring reuse a prefix cache

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


# ---------------------------------------------------------------- the log-likelihood engine

Request = tuple[str, list[str]]


def prefix_token_id(tokenizer) -> int:
    """Token that stands in for an empty context (lm-eval `HFLM.prefix_token_id`: BOS, else EOS)."""
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def pad_token_id(tokenizer) -> int:
    """The id used for padding: the tokenizer's pad token, else the prefix token (padded positions are masked)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else prefix_token_id(tokenizer)


def encode(tokenizer, text: str) -> list[int]:
    """Token ids as lm-eval's `HFLM.tok_encode` gives them (tokenizer default special tokens, no double BOS)."""
    if tokenizer.bos_token and text.startswith(tokenizer.bos_token):
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(text)["input_ids"]


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) exactly as lm-eval's `loglikelihood` / `_encode_pair` split them."""
    if context == "":
        cont = tokenizer(continuation, add_special_tokens=False)["input_ids"]
        prefix = prefix_token_id(tokenizer)
        return ([prefix], cont) if cont[0] != prefix else (cont[:1], cont[1:])
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = encode(tokenizer, context + continuation)
    ctx = encode(tokenizer, context)
    return ctx, whole[len(ctx):]


def model_max_length(model, tokenizer) -> int:
    """Longest input the model takes, found as lm-eval does (config attributes, then tokenizer, then 2048)."""
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(model.config, attr, None)
        if value:
            return int(value)
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if limit and limit < 1e9 else 2048


def _truncate(ctx: list[int], cont: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """lm-eval keeps the last `max_length + 1` tokens of ctx + cont; return the (shorter) context that implies."""
    full = (ctx + cont)[-(max_length + 1):]
    return full[: len(full) - len(cont)], cont


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _encode_requests(model, tokenizer, requests, max_length):
    """One (ctx, cont) token pair per continuation, grouped per request."""
    max_length = max_length or model_max_length(model, tokenizer)
    return [
        [_truncate(*encode_pair(tokenizer, context, c), max_length) for c in continuations]
        for context, continuations in requests
    ]


def _cont_logprob(logprobs: torch.Tensor, cont: list[int]) -> float:
    """Sum of log-probs of `cont` given rows of log-probs aligned with it (row t predicts cont[t])."""
    index = torch.tensor(cont, device=logprobs.device).unsqueeze(-1)
    return float(logprobs.gather(-1, index).sum())


@torch.inference_mode()
def score_continuations_plain(model, tokenizer, requests: list[Request], batch_size: int = 1,
                              max_length: int | None = None, progress: bool = True) -> list[list[float]]:
    """Reference scorer: one forward pass per (context, continuation) sequence, no batching, no cache.

    Args:
        requests: (context, [continuation, ...]) pairs.
        batch_size: ignored (kept so both scorers take the same arguments).
    Returns:
        For each request, the summed log-prob of each continuation (lm-eval's `loglikelihood` first element).
    """
    device = _device(model)
    out = []
    for pairs in tqdm(_encode_requests(model, tokenizer, requests, max_length), desc="log-likelihoods (plain)",
                      disable=not progress):
        scores = []
        for ctx, cont in pairs:
            inp = torch.tensor([(ctx + cont)[:-1]], device=device)
            _, logp = forward_logprobs(model, lambda rows: rows[0], input_ids=inp, logits_to_keep=len(cont))
            scores.append(_cont_logprob(logp, cont))
        out.append(scores)
    return out


def common_prefix_length(sequences: list[list[int]]) -> int:
    """Length of the longest token prefix shared by all sequences."""
    if not sequences:
        return 0
    first = sequences[0]
    n = min(len(s) for s in sequences)
    for i in range(n):
        if any(s[i] != first[i] for s in sequences):
            return i
    return n


def _cache_tensors(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer, in any form a forward returns them: a transformers 5 Cache (`.layers`), an older
    Cache (`key_cache` / `value_cache` lists), or the legacy tuple of (k, v) pairs that Unsloth's forwards return."""
    if getattr(cache, "layers", None) is not None:
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache") and hasattr(cache, "value_cache"):
        return list(zip(cache.key_cache, cache.value_cache))
    if isinstance(cache, (tuple, list)) and cache and all(isinstance(kv, (tuple, list)) and len(kv) >= 2
                                                          for kv in cache):
        return [(kv[0], kv[1]) for kv in cache]
    raise TypeError(f"cannot read keys/values from past_key_values of type {type(cache).__name__}: expected a "
                    "transformers Cache (.layers or key_cache/value_cache) or a tuple of (key, value) pairs per layer")


def _select(kv, rows: torch.Tensor) -> DynamicCache:
    """A fresh cache holding the given batch rows of stored (keys, values)."""
    return DynamicCache(ddp_cache_data=[(k.index_select(0, rows), v.index_select(0, rows)) for k, v in kv])


def pad(seqs: list[list[int]], pad_id: int, device=None, side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token lists on the right (scoring) or the left (generation); return (ids, mask)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(seqs), width), dtype=torch.long, device=device)
    for i, s in enumerate(seqs):
        span = slice(0, len(s)) if side == "right" else slice(width - len(s), width)
        ids[i, span] = torch.tensor(s, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


def _units(encoded: list[list[tuple]]) -> dict[tuple, list]:
    """Context ids -> [(request, position, continuation ids)]: one unit per distinct context (after truncation a
    request's continuations can have different contexts)."""
    units: dict[tuple, list] = {}
    for r, pairs in enumerate(encoded):
        for j, (ctx, cont) in enumerate(pairs):
            units.setdefault(tuple(ctx), []).append((r, j, tuple(cont)))
    return units


def _shared_prefix(model, tokenizer, contexts: list[list[int]], prefix_cache: dict | None, fixed_prefix: str | None,
                   device) -> tuple[int, list | None]:
    """(length, keys/values) of the prefix run once for this call: the kept `fixed_prefix`, else the common one."""
    if not contexts:
        return 0, None
    longest = min(len(c) for c in contexts) - 1  # every context keeps at least one token of its own
    if prefix_cache is not None and fixed_prefix:
        fixed = encode(tokenizer, fixed_prefix)
        if len(fixed) <= longest and all(c[:len(fixed)] == fixed for c in contexts):
            key = tuple(fixed)
            if key not in prefix_cache:
                prefix_cache[key] = _run_prefix(model, fixed, device)
            return len(fixed), prefix_cache[key]
    n_prefix = max(min(common_prefix_length(contexts), longest), 0)
    return n_prefix, _run_prefix(model, contexts[0][:n_prefix], device)


def _run_prefix(model, prefix: list[int], device):
    """Keys/values of the globally shared prefix (batch of one), or None when there is none."""
    if not prefix:
        return None
    out = model(input_ids=torch.tensor([prefix], device=device), use_cache=True, logits_to_keep=1)
    return _cache_tensors(out.past_key_values)


def _score_group(model, group, prefix_kv, n_prefix, pad_id, device) -> dict:
    """Score one batch of contexts (each with its continuations) on top of the shared prefix.

    Stage A runs every context remainder once (right-padded, masked); stage B runs all continuations of these
    contexts in one batch on top of their context's cached keys/values, with explicit positions.
    Returns {(context index in group, cont index): log-prob}.
    """
    suffixes = [ctx[n_prefix:] for ctx, _ in group]
    ids, mask = pad(suffixes, pad_id, device)
    k = len(group)
    full_mask = torch.cat([torch.ones((k, n_prefix), dtype=torch.long, device=device), mask], dim=1)
    last = mask.sum(1) - 1
    cache = _select(prefix_kv, torch.zeros(k, dtype=torch.long, device=device)) if prefix_kv else None
    positions = n_prefix + torch.arange(ids.shape[1], device=device).expand(k, -1)
    out, first_logp = forward_logprobs(model, lambda rows: rows[torch.arange(k, device=device), last], input_ids=ids,
                                       attention_mask=full_mask, position_ids=positions, past_key_values=cache,
                                       use_cache=True)
    ctx_kv = _cache_tensors(out.past_key_values)

    rows = [(i, j, cont) for i, (_, conts) in enumerate(group) for j, cont in enumerate(conts)]
    result = {(i, j): float(first_logp[i, cont[0]]) for i, j, cont in rows}
    rows = [r for r in rows if len(r[2]) > 1]
    if not rows:
        return result
    owner = torch.tensor([i for i, _, _ in rows], device=device)
    cont_ids, cont_mask = pad([cont[:-1] for _, _, cont in rows], pad_id, device)
    attn = torch.cat([full_mask.index_select(0, owner), cont_mask], dim=1)
    start = (n_prefix + last + 1).index_select(0, owner)
    positions = start.unsqueeze(1) + torch.arange(cont_ids.shape[1], device=device)
    out, logp = forward_logprobs(model, input_ids=cont_ids, attention_mask=attn, position_ids=positions,
                                 past_key_values=_select(ctx_kv, owner), use_cache=True)
    for r, (i, j, cont) in enumerate(rows):
        result[(i, j)] += _cont_logprob(logp[r, : len(cont) - 1], cont[1:])
    return result


def _groups(order: list[int], conts_per_unit: list[list], batch_size: int):
    """Split context indices (in `order`) into groups holding about `batch_size` continuations each."""
    group, n = [], 0
    for idx in order:
        group.append(idx)
        n += len(conts_per_unit[idx])
        if n >= batch_size:
            yield group
            group, n = [], 0
    if group:
        yield group


@torch.inference_mode()
def score_continuations(model, tokenizer, requests: list[Request], batch_size: int = 16,
                        max_length: int | None = None, progress: bool = True, prefix_cache: dict | None = None,
                        fixed_prefix: str | None = None, reuse: bool = False) -> list[list[float]]:
    """Fast scorer with the same result as `score_continuations_plain` (to float rounding).

    Each distinct (context ids, continuation ids) pair is scored once. The prefix shared by all contexts is run
    once; contexts are then run once each, in batches, and their continuations are batched on their cached
    keys/values. Continuation order within a request is kept. Only with `reuse=True` (the caller's decision for this
    model, `LoadedModel.prefix_reuse`): otherwise, e.g. where nobody checked the cached path, on the plain path.

    Args:
        requests: (context, [continuation, ...]) pairs.
        batch_size: about how many continuations go through the model per forward pass.
        prefix_cache, fixed_prefix: with both, the tokens of `fixed_prefix` (when every context starts with them)
            are the shared prefix, and its keys/values are kept in `prefix_cache` for later calls. Only valid while
            the model's weights do not change. reuse: this engine (True) or the plain path (False).
    Returns:
        For each request, the summed log-prob of each continuation.
    """
    if not reuse:
        return score_continuations_plain(model, tokenizer, requests, batch_size, max_length, progress)
    device = _device(model)
    encoded = _encode_requests(model, tokenizer, requests, max_length)
    units = _units(encoded)
    contexts = [list(c) for c in units]
    n_prefix, prefix_kv = _shared_prefix(model, tokenizer, contexts, prefix_cache, fixed_prefix, device)
    unit_conts = [sorted({cont for _, _, cont in units[tuple(c)]}) for c in contexts]
    order = sorted(range(len(contexts)), key=lambda u: -len(contexts[u]))
    scores = [[0.0] * len(pairs) for pairs in encoded]
    bar = tqdm(total=len(contexts), desc="log-likelihoods", disable=not progress)
    for group in _groups(order, unit_conts, batch_size):
        batch = [(contexts[u], [list(c) for c in unit_conts[u]]) for u in group]
        result = _score_group(model, batch, prefix_kv, n_prefix, pad_token_id(tokenizer), device)
        for g, u in enumerate(group):
            position = {cont: j for j, cont in enumerate(unit_conts[u])}
            for r, j, cont in units[tuple(contexts[u])]:
                scores[r][j] = result[(g, position[cont])]
        bar.update(len(group))
    bar.close()
    return scores

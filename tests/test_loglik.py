"""hmxnb.loglik: lm-eval tokenisation of (context, continuation) and fast scorer == plain scorer."""

import pytest
import torch

from hmxnb.loglik import (
    common_prefix_length,
    encode,
    encode_pair,
    prefix_token_id,
    score_continuations,
    score_continuations_plain,
)

PRIMER = "Q: what is the answer?\nA: the answer is yes.\n\n"
REQUESTS = [
    (PRIMER + "Q: I feel happy today?\nA:", [" yes", " no", " maybe the cat sat on a mat", " 1"]),
    (PRIMER + "Q: the cat sat?\nA:", [" true", " false because you asked"]),
    (PRIMER + "Q: one two three four five six?\nA: ", ["five", "I want to help"]),  # trailing space in context
    ("", ["I feel happy", " calm"]),  # empty context -> prefix token
    ("Score:", [" 1", " 2", " 3", " 4", " 5"]),  # one-token continuations, no shared prefix with the rest
]


@pytest.mark.parametrize(
    "context, continuation, expected_ctx_text, expected_cont_text",
    [
        ("Score:", " 3", "Score:", " 3"),  # plain split at the boundary
        ("Score: ", "3", "Score:", " 3"),  # trailing space moves to the continuation (lm-eval _encode_pair)
        ("Score:  \n", "3", "Score:", "  \n3"),  # all trailing whitespace moves
    ],
)
def test_encode_pair_moves_trailing_whitespace(tiny_model, context, continuation, expected_ctx_text,
                                               expected_cont_text):
    _, tok = tiny_model
    ctx, cont = encode_pair(tok, context, continuation)
    assert ctx == encode(tok, expected_ctx_text)
    assert tok.decode(cont) == expected_cont_text


def test_encode_pair_empty_context_uses_prefix_token(tiny_model):
    _, tok = tiny_model
    ctx, cont = encode_pair(tok, "", "I feel happy")
    assert ctx == [prefix_token_id(tok)]  # no BOS in this tokenizer -> EOS stands in, as in lm-eval
    assert tok.decode(cont) == "I feel happy"


@pytest.mark.parametrize(
    "sequences, expected",
    [
        ([[1, 2, 3], [1, 2, 4]], 2),  # diverge at the third token
        ([[1, 2], [1, 2, 3]], 2),  # one is a prefix of the other
        ([[5], [6]], 0),  # nothing shared
        ([], 0),  # no sequences
    ],
)
def test_common_prefix_length(sequences, expected):
    assert common_prefix_length(sequences) == expected


@pytest.mark.parametrize("batch_size", [1, 3, 64])  # one row per pass, groups split mid-way, everything at once
def test_fast_scorer_equals_plain_scorer(tiny_model, batch_size):
    model, tok = tiny_model
    plain = score_continuations_plain(model, tok, REQUESTS, progress=False)
    fast = score_continuations(model, tok, REQUESTS, batch_size=batch_size, progress=False, reuse=True)
    assert [len(r) for r in fast] == [len(c) for _, c in REQUESTS]
    for row_fast, row_plain in zip(fast, plain):
        assert row_fast == pytest.approx(row_plain, abs=1e-4)
    assert all(x < 0 for row in fast for x in row)  # log-probs of real continuations are negative


def test_fast_scorer_single_request_and_duplicates(tiny_model):
    model, tok = tiny_model
    requests = [(PRIMER + "Q: yes?\nA:", [" yes", " no", " yes"])]  # a repeated continuation is scored once
    fast = score_continuations(model, tok, requests, progress=False, reuse=True)[0]
    plain = score_continuations_plain(model, tok, requests, progress=False)[0]
    assert fast == pytest.approx(plain, abs=1e-4)
    assert fast[0] == fast[2]


def test_left_truncation_matches(tiny_model):
    model, tok = tiny_model
    requests = REQUESTS[:2]
    plain = score_continuations_plain(model, tok, requests, max_length=12, progress=False)
    fast = score_continuations(model, tok, requests, max_length=12, progress=False, reuse=True)
    full = score_continuations_plain(model, tok, requests, progress=False)
    for row_fast, row_plain in zip(fast, plain):
        assert row_fast == pytest.approx(row_plain, abs=1e-4)
    assert plain[0][0] != pytest.approx(full[0][0], abs=1e-6)  # truncation really changed the context


def test_prefix_reuse_off_takes_the_plain_path(tiny_model, monkeypatch):
    """params prefix_cache_reuse off (the default under Unsloth) is `reuse=False`: no cached prefix is run, not even
    the frozen judge's kept one, and the results are unchanged."""
    from hmxnb import loglik
    from dataclasses import replace

    from hmxnb.judge import JudgeConfig, judge
    from hmxnb.params import load_params

    model, tok = tiny_model
    probability = replace(JudgeConfig.from_params(load_params("smoke")), mode="probability")
    expected = score_continuations_plain(model, tok, REQUESTS, progress=False)
    judged = judge(model, tok, probability, ["Hi"], ["I feel glad"], reuse=True)
    monkeypatch.setattr(loglik, "_run_prefix", lambda *a, **k: pytest.fail("prefix cache used"))
    assert score_continuations(model, tok, REQUESTS, progress=False, reuse=False) == expected
    again = judge(model, tok, probability, ["Hi"], ["I feel glad"], prefix_cache={}, reuse=False)
    assert again.scores == pytest.approx(judged.scores, abs=1e-4)


def test_prefix_kept_across_calls(tiny_model, monkeypatch):
    """With prefix_cache + fixed_prefix the fixed part is run once over several calls; scores stay the plain ones."""
    from hmxnb import loglik

    model, tok = tiny_model
    calls = []
    real = loglik._run_prefix
    monkeypatch.setattr(loglik, "_run_prefix", lambda m, prefix, d: calls.append(len(prefix)) or real(m, prefix, d))
    cache = {}
    for request in REQUESTS[:3]:
        got = score_continuations(model, tok, [request], progress=False, prefix_cache=cache, fixed_prefix=PRIMER,
                                  reuse=True)
        assert got[0] == pytest.approx(score_continuations_plain(model, tok, [request], progress=False)[0], abs=1e-4)
    assert len(cache) == 1 and calls == [len(encode(tok, PRIMER))]
    # a context that does not start with the fixed prefix falls back to the call's own common prefix
    got = score_continuations(model, tok, [REQUESTS[4]], progress=False, prefix_cache=cache, fixed_prefix=PRIMER,
                              reuse=True)
    assert got[0] == pytest.approx(score_continuations_plain(model, tok, [REQUESTS[4]], progress=False)[0], abs=1e-4)
    assert len(cache) == 1


class _KeyValueListCache:
    """A cache as transformers 4.x kept it: `key_cache` / `value_cache` lists, no `.layers`."""

    def __init__(self, kv):
        self.key_cache = [k for k, _ in kv]
        self.value_cache = [v for _, v in kv]


class CacheStyleModel(torch.nn.Module):
    """The tiny model returning its past key/values in another form: "tuple" = the legacy ((k, v) per layer) tuple
    Unsloth's forwards return, "lists" = a key_cache/value_cache cache (scored with `reuse=True`, as a checked
    model is)."""

    def __init__(self, inner, style):
        super().__init__()
        self.inner, self.style, self.config = inner, style, inner.config

    def forward(self, **kwargs):
        out = self.inner(**kwargs)
        if out.past_key_values is not None:
            kv = tuple((layer.keys, layer.values) for layer in out.past_key_values.layers)
            out.past_key_values = kv if self.style == "tuple" else _KeyValueListCache(kv)
        return out


@pytest.mark.parametrize("style", ["tuple", "lists"])
def test_engine_reads_tuple_and_key_value_list_caches(tiny_model, style):
    """Issue 20: `cache.layers` crashed on Unsloth's tuple caches; every cache form gives the plain path's scores."""
    from hmxnb import loglik

    model, tok = tiny_model
    wrapped = CacheStyleModel(model, style)
    out = wrapped(input_ids=torch.tensor([[1, 2, 3]]), use_cache=True)
    assert [k.shape[-2] for k, _ in loglik._cache_tensors(out.past_key_values)] == [3, 3]  # one (k, v) per layer
    plain = score_continuations_plain(model, tok, REQUESTS, progress=False)
    for batch_size in (1, 64):
        fast = score_continuations(wrapped, tok, REQUESTS, batch_size=batch_size, progress=False, reuse=True)
        for row_fast, row_plain in zip(fast, plain):
            assert row_fast == pytest.approx(row_plain, abs=1e-4)


@pytest.mark.parametrize("cache", [None, object(), (torch.zeros(2),)])
def test_unreadable_cache_is_a_one_line_error_naming_its_type(cache):
    from hmxnb.loglik import _cache_tensors

    with pytest.raises(TypeError, match=f"past_key_values of type {type(cache).__name__}:") as exc:
        _cache_tensors(cache)
    assert "\n" not in str(exc.value)


def test_a_scorer_not_told_takes_the_plain_path(tiny_model, monkeypatch):
    """Issue 20: a model whose cached path nobody checked (Unsloth's) went on the engine. The engine runs only with
    `reuse=True` (LoadedModel.prefix_reuse, passed by the caller): its internals raise here, the scores are the
    plain path's."""
    from hmxnb import loglik

    model, tok = tiny_model
    expected = score_continuations_plain(model, tok, REQUESTS, progress=False)
    for name in ("_run_prefix", "_score_group", "_shared_prefix"):
        monkeypatch.setattr(loglik, name, lambda *a, **k: pytest.fail("the engine ran"))
    assert score_continuations(model, tok, REQUESTS, progress=False) == expected
    with pytest.raises(pytest.fail.Exception, match="the engine ran"):  # ... unless the caller forces it
        score_continuations(model, tok, REQUESTS, progress=False, reuse=True)


# --- fp32 log-softmax from the final hidden states on a bf16 / fp16 model (issue 20, item 4; hmxnb.loglik) ---


def _bf16_copy(model, scale: float = 1.0):
    """A bf16 copy of a tiny model whose head weights are scaled so its logits are large enough for bf16 rounding to
    matter (a random 64-wide model's logits are close to 0)."""
    import copy

    import torch

    m = copy.deepcopy(model).to(torch.bfloat16)
    with torch.no_grad():
        m.get_output_embeddings().weight.mul_(scale)
    return m


def _reference(model, tok, requests, fp32_head: bool):
    """Summed log-probs computed by hand, one sequence at a time: from the backbone's final hidden states with the
    head applied in fp32 (+ soft-capping), or from the model's own logits upcast (the engine before this change)."""
    import torch

    from hmxnb.loglik import _encode_requests

    head = model.get_output_embeddings()
    cap = getattr(model.config, "final_logit_softcapping", None)
    backbone = model.get_base_model().model if hasattr(model, "get_base_model") else model.model
    out = []
    with torch.inference_mode():
        for pairs in _encode_requests(model, tok, requests, None):
            row = []
            for ctx, cont in pairs:
                ids = torch.tensor([(ctx + cont)[:-1]])
                if fp32_head:
                    hidden = backbone(input_ids=ids).last_hidden_state[0, -len(cont):]
                    logits = hidden.float() @ head.weight.float().T
                    logits = torch.tanh(logits / cap) * cap if cap else logits
                else:
                    logits = model(input_ids=ids).logits[0, -len(cont):].float()
                row.append(float(torch.log_softmax(logits, -1)[torch.arange(len(cont)), cont].sum()))
            out.append(row)
    return out


def _max_diff(a, b):
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


def test_fp32_model_scores_are_unchanged(tiny_model, monkeypatch):
    """On an fp32 model the head is not recomputed (no hook): the scores are today's, bit for bit."""
    import torch

    from hmxnb.loglik import low_precision_head

    model, tok = tiny_model
    assert low_precision_head(model) is None
    monkeypatch.setattr(torch.nn.Linear, "register_forward_pre_hook",
                        lambda *a, **k: pytest.fail("hook on an fp32 head"), raising=False)
    assert score_continuations_plain(model, tok, REQUESTS, progress=False) == _reference(model, tok, REQUESTS, False)
    fast = score_continuations(model, tok, REQUESTS, batch_size=3, progress=False, reuse=True)
    monkeypatch.setattr(model, "hmxnb_fp32_head", False, raising=False)
    assert score_continuations(model, tok, REQUESTS, batch_size=3, progress=False, reuse=True) == fast


@pytest.mark.parametrize("scorer", ["plain", "engine"])
def test_bf16_model_scores_from_fp32_head(tiny_model, scorer):
    """Both scorers take the bf16 model's final hidden states through the head in fp32, not its bf16 logits."""
    model, tok = tiny_model
    bf16 = _bf16_copy(model, scale=200.0)
    got = (score_continuations_plain(bf16, tok, REQUESTS, progress=False) if scorer == "plain"
           else score_continuations(bf16, tok, REQUESTS, batch_size=3, progress=False, reuse=True))
    fp32_head, bf16_logits = _reference(bf16, tok, REQUESTS, True), _reference(bf16, tok, REQUESTS, False)
    assert _max_diff(fp32_head, bf16_logits) > 0.05  # the test can tell the two apart
    assert _max_diff(got, fp32_head) < 0.02 < _max_diff(got, bf16_logits)
    assert getattr(bf16, "hmxnb_fp32_head", True)  # no fallback


def test_fp32_head_through_peft_and_tied_embeddings(tiny_model):
    """A PEFT-wrapped bf16 model with tied embeddings: the head is found through the wrapper, adapters included."""
    from peft import LoraConfig, get_peft_model

    model, tok = tiny_model
    assert model.config.tie_word_embeddings
    peft_model = get_peft_model(_bf16_copy(model, scale=200.0), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                           init_lora_weights=False))
    got = score_continuations(peft_model, tok, REQUESTS, batch_size=3, progress=False, reuse=True)
    assert _max_diff(got, _reference(peft_model, tok, REQUESTS, True)) < 0.02
    assert _max_diff(got, _reference(peft_model, tok, REQUESTS, False)) > 0.02


def test_gemma2_softcapping_applied_in_fp32(tiny_model):
    """Gemma-2 soft-caps its final logits: the fp32 head does too (else the self-check would fall back)."""
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM

    _, tok = tiny_model
    cfg = Gemma2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16, final_logit_softcapping=10.0,
                       pad_token_id=tok.pad_token_id, bos_token_id=None, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    gemma = _bf16_copy(Gemma2ForCausalLM(cfg).eval(), scale=100.0)
    got = score_continuations(gemma, tok, REQUESTS, batch_size=3, progress=False, reuse=True)
    assert _max_diff(got, _reference(gemma, tok, REQUESTS, True)) < 0.02
    assert getattr(gemma, "hmxnb_fp32_head", True)


def test_unknown_logit_transform_falls_back_with_a_warning(tiny_model):
    """Logits that our fp32 head cannot reproduce (here: a soft-cap the model never applies) are not trusted: one
    warning, the model's own logits from then on."""
    model, tok = tiny_model
    bf16 = _bf16_copy(model, scale=200.0)
    bf16.config.final_logit_softcapping = 5.0  # Qwen2 ignores it; hmxnb.loglik would apply it
    with pytest.warns(UserWarning, match="disagree with its own logits"):
        got = score_continuations_plain(bf16, tok, REQUESTS[:1], progress=False)
    assert bf16.hmxnb_fp32_head is False
    assert _max_diff(got, _reference(bf16, tok, REQUESTS[:1], False)) < 1e-4

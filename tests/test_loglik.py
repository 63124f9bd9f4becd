"""hmxnb.loglik: lm-eval tokenisation of (context, continuation) and fast scorer == plain scorer."""

import pytest

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
    fast = score_continuations(model, tok, REQUESTS, batch_size=batch_size, progress=False)
    assert [len(r) for r in fast] == [len(c) for _, c in REQUESTS]
    for row_fast, row_plain in zip(fast, plain):
        assert row_fast == pytest.approx(row_plain, abs=1e-4)
    assert all(x < 0 for row in fast for x in row)  # log-probs of real continuations are negative


def test_fast_scorer_single_request_and_duplicates(tiny_model):
    model, tok = tiny_model
    requests = [(PRIMER + "Q: yes?\nA:", [" yes", " no", " yes"])]  # a repeated continuation is scored once
    fast = score_continuations(model, tok, requests, progress=False)[0]
    plain = score_continuations_plain(model, tok, requests, progress=False)[0]
    assert fast == pytest.approx(plain, abs=1e-4)
    assert fast[0] == fast[2]


def test_left_truncation_matches(tiny_model):
    model, tok = tiny_model
    requests = REQUESTS[:2]
    plain = score_continuations_plain(model, tok, requests, max_length=12, progress=False)
    fast = score_continuations(model, tok, requests, max_length=12, progress=False)
    full = score_continuations_plain(model, tok, requests, progress=False)
    for row_fast, row_plain in zip(fast, plain):
        assert row_fast == pytest.approx(row_plain, abs=1e-4)
    assert plain[0][0] != pytest.approx(full[0][0], abs=1e-6)  # truncation really changed the context


def test_prefix_reuse_off_takes_the_plain_path(tiny_model, monkeypatch):
    """params prefix_cache_reuse off (the default under Unsloth): no cached prefix is run, results unchanged."""
    from hmxnb import loglik
    from hmxnb.judge import judge
    from hmxnb.rubric import Rubric
    from hmxnb.params import load_params

    model, tok = tiny_model
    expected = score_continuations_plain(model, tok, REQUESTS, progress=False)
    judged = judge(model, tok, Rubric.from_params(load_params("smoke")), ["Hi"], ["I feel glad"], mode="probability")
    monkeypatch.setattr(model, "hmxnb_prefix_reuse", False, raising=False)
    monkeypatch.setattr(loglik, "_run_prefix", lambda *a, **k: pytest.fail("prefix cache used"))
    assert score_continuations(model, tok, REQUESTS, progress=False) == expected
    again = judge(model, tok, Rubric.from_params(load_params("smoke")), ["Hi"], ["I feel glad"], mode="probability",
                  prefix_cache={})
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
        got = score_continuations(model, tok, [request], progress=False, prefix_cache=cache, fixed_prefix=PRIMER)
        assert got[0] == pytest.approx(score_continuations_plain(model, tok, [request], progress=False)[0], abs=1e-4)
    assert len(cache) == 1 and calls == [len(encode(tok, PRIMER))]
    # a context that does not start with the fixed prefix falls back to the call's own common prefix
    got = score_continuations(model, tok, [REQUESTS[4]], progress=False, prefix_cache=cache, fixed_prefix=PRIMER)
    assert got[0] == pytest.approx(score_continuations_plain(model, tok, [REQUESTS[4]], progress=False)[0], abs=1e-4)
    assert len(cache) == 1

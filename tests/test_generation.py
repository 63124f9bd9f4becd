"""hmxnb.chat: no generation notices, on a tiny model whose generation config carries what Unsloth and Qwen3 put
there (`max_length` = the context size; sampling flags), through our helpers, the generate-mode judge, notebook 04's
replies and one GRPO step; and Unsloth's generate wrapper's notice dropped only where Unsloth caused it (issue 20)."""

import logging
import shutil
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import replace

import pytest

from hmxnb.chat import generate, generation_config, quiet_unsloth_generate_notice

# the two notices the GPU run printed on each generation, and the one a greedy call on Qwen3's config would add
BOTH = "seem to have been set"
DEPRECATED = "Passing `generation_config` together with generation-related arguments"
FLAGS = "generation flags are not valid"
NOTICES = (BOTH, DEPRECATED, FLAGS)
QWEN3_LIKE = {"max_length": 40960, "do_sample": True, "temperature": 0.6, "top_k": 20, "top_p": 0.95}


@contextmanager
def notices():
    """Every transformers log record and Python warning raised inside, as strings (warning_once's memory cleared,
    so a notice an earlier test already printed is printed again)."""
    from transformers.utils import logging as hf_logging

    hf_logging.warning_once.cache_clear()
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler, logger = Keep(), logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield seen
    finally:
        logger.removeHandler(handler)
        seen += [str(w.message) for w in caught]


def _found(seen, texts=NOTICES):
    return [s for s in seen if any(t in s for t in texts)]


@pytest.fixture
def qwen3_like(tiny_model_dir):
    """A fresh copy of the tiny model whose generation config says what Unsloth (max_length) and Qwen3 say."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    model.generation_config.update(**QWEN3_LIKE)
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def _unsloth_like(model):
    """Stand-in for Unsloth's `unsloth_fast_generate`: adds cache_implementation and pad_token_id to every call."""
    inner = model.generate

    def fast_generate(*args, **kwargs):
        kwargs["cache_implementation"] = "dynamic"
        kwargs["pad_token_id"] = kwargs.pop("pad_token_id", model.config.eos_token_id)
        return inner(*args, **kwargs)

    model.generate = fast_generate
    return model


def _inputs(tok):
    ids = tok(["I feel", "How are you today?"], padding=True, padding_side="left", return_tensors="pt")
    return dict(ids)


def test_config_is_greedy_without_max_length(qwen3_like):
    model, tok = qwen3_like
    config = generation_config(model, tok, 5)
    assert (config.max_length, config.max_new_tokens, config.do_sample) == (None, 5, False)
    assert (config.temperature, config.top_k, config.top_p) == (1.0, 50, 1.0)  # transformers' neutral values
    assert config.pad_token_id == tok.pad_token_id and config.eos_token_id == model.generation_config.eos_token_id
    assert model.generation_config.max_length == 40960 and model.generation_config.temperature == 0.6  # a copy
    sampled = generation_config(model, tok, 5, do_sample=True, temperature=0.9)
    assert sampled.do_sample and sampled.temperature == 0.9 and sampled.top_k == 20


def test_helpers_print_no_generation_notice(qwen3_like):
    from hmxnb.bench.expression import generate_replies
    from hmxnb.judge import JudgeConfig, judge
    from hmxnb.params import load_params

    model, tok = qwen3_like
    config = replace(JudgeConfig.from_params(load_params("smoke")), mode="generate", max_new_tokens=3)
    with notices() as seen:
        out = generate(model, generation_config(model, tok, 3), **_inputs(tok))
        res = judge(model, tok, config, ["How are you?"], ["I feel good."])
        replies, cut = generate_replies(model, tok, ["How are you?", "Hi"], 3, 2, True, progress=False)
    assert not _found(seen), _found(seen)
    assert out.shape[1] == _inputs(tok)["input_ids"].shape[1] + 3 and cut == [True, True]
    assert len(res.raw[0]) == len(config.rubric.names)
    assert model.generation_config.max_length == 40960  # set aside for the call only


def test_the_old_calls_printed_them(qwen3_like):
    """The check sees what the GPU run saw: `max_new_tokens` beside the model's max_length, a config beside
    arguments."""
    model, tok = qwen3_like
    with notices() as seen:
        model.generate(**_inputs(tok), max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
        model.generate(**_inputs(tok), generation_config=generation_config(model, tok, 3), max_new_tokens=3)
    assert _found(seen, (BOTH,)) and _found(seen, (DEPRECATED,))


def test_unsloth_wrappers_notice_is_dropped_and_only_it(qwen3_like):
    model, tok = _unsloth_like(qwen3_like[0]), qwen3_like[1]
    config = generation_config(model, tok, 3)
    with notices() as seen:
        model.generate(**_inputs(tok), generation_config=config)
    assert _found(seen, (DEPRECATED,))  # the stand-in reproduces the GPU run's notice
    with notices() as seen:
        generate(model, config, **_inputs(tok))
    assert not _found(seen)
    with notices() as seen, quiet_unsloth_generate_notice():
        model.generate(**_inputs(tok), generation_config=config, max_new_tokens=3)  # our own mistake still shows
    assert _found(seen, (DEPRECATED,))


@pytest.fixture
def qwen3_like_dir(tiny_model_dir, tmp_path):
    """The tiny model saved with a generation config carrying max_length = the context size, as Unsloth leaves it."""
    import json

    path = tmp_path / "qwen3_like"
    shutil.copytree(tiny_model_dir, path)
    gen = json.loads((path / "generation_config.json").read_text())
    (path / "generation_config.json").write_text(json.dumps({**gen, "max_length": 40960}))
    return str(path)


def test_load_model_clears_max_length(qwen3_like_dir):
    from hmxnb.models import load_model

    model, _ = load_model({"model_name_or_path": qwen3_like_dir, "load_in_4bit": False, "use_unsloth": False})
    assert model.generation_config.max_length is None


@pytest.mark.parametrize("unsloth", [False, True], ids=["trl", "unsloth-wrapper"])
def test_one_grpo_step_prints_no_generation_notice(qwen3_like_dir, tmp_path, unsloth):
    """TRL's own generation during a step: the model's max_length is gone after load_model, and TRL passes nothing
    beside its GenerationConfig; with Unsloth's wrapper (stand-in), which does, `quiet_unsloth_generate_notice`
    around `trainer.train()` drops the notice it causes."""
    from hmxnb.models import load_model
    from hmxnb.params import load_params
    from hmxnb.train import make_trainer

    p = load_params("smoke", {"model_name_or_path": qwen3_like_dir, "max_steps": 1, "n_train_prompts": 4,
                              "max_completion_length": 4, "save_steps": 1})
    loaded = load_model(p, for_training=True)
    trainer, _ = make_trainer(p, tmp_path, replace(loaded, model=_unsloth_like(loaded.model)) if unsloth else loaded)
    with notices() as seen, quiet_unsloth_generate_notice() if unsloth else nullcontext():
        trainer.train()
    assert trainer.state.global_step == 1
    assert not _found(seen, (BOTH, DEPRECATED)), _found(seen)

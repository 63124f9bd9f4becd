"""hmxnb.chat: one rendering of chat templates for training, judge, generation and benchmarks.

The paper models' template behaviours are reproduced by stand-in templates written here (not the vendors' files):
one that opens a thinking block unless `enable_thinking` is false (Qwen3), one that raises on a system message
(Gemma-2), one that writes today's date unless `date_string` is given (Llama-3.2).
"""

import datetime
import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from transformers import AutoTokenizer

from hmxnb.bench.expression import generate_replies
from hmxnb.bench.sycophancy import chat_prompt
from hmxnb.chat import (DEFAULT_DATE, ChatSettings, chat_settings, fold_system, render, strip_thinking,
                        supports_system_role)
from hmxnb.params import load_params
from hmxnb.rewards import completion_text
from hmxnb.judge import JudgeConfig, judge

TURNS = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
THINKING = TURNS + (
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% else %}<think>\n{% endif %}{% endif %}"
)
NO_SYSTEM = (
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    + TURNS + "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
DATED = (
    "{% if date_string is not defined %}{% set date_string = strftime_now('%d %b %Y') %}{% endif %}"
    "<|im_start|>system\nToday Date: {{ date_string }}<|im_end|>\n"
    + TURNS + "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tok(model_dir, template):
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.chat_template = template
    return tok


def _spy(tok) -> list[str]:
    """Record the text of every chat-template render of `tok` (string or token ids)."""
    seen, original = [], tok.apply_chat_template

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        if isinstance(out, str):
            seen.append(out)
        else:
            ids = out["input_ids"] if hasattr(out, "keys") else out
            seen.extend(tok.batch_decode(ids) if len(ids) and not isinstance(ids[0], int) else [tok.decode(ids)])
        return out

    tok.apply_chat_template = spy
    return seen


def _open_thinking(text: str) -> bool:
    return text.count("<think>") > text.count("</think>")


def test_judge_generation_and_benchmarks_render_with_thinking_off(tiny_model, tiny_model_dir):
    model, _ = tiny_model
    tok = _tok(tiny_model_dir, THINKING)
    seen = _spy(tok)
    config = JudgeConfig.from_params(load_params("smoke"))
    for mode in ("contrast", "probability"):
        judge(model, tok, replace(config, mode=mode, few_shot=True), ["How was your day?"], ["I feel glad."])
    generate_replies(model, tok, ["How was your day?"], max_new_tokens=2)
    chat_prompt(tok, [{"role": "user", "content": "Is it true?"}])
    assert len(seen) >= 4
    assert not [t[-40:] for t in seen if _open_thinking(t)], "a render left a thinking block open"


def test_generation_honours_enable_thinking_and_reads_the_reply_after_it(tiny_model, tiny_model_dir):
    model, _ = tiny_model
    tok = _tok(tiny_model_dir, THINKING)
    chat = chat_settings(tok, {"enable_thinking": True})
    seen = _spy(tok)
    generate_replies(model, tok, ["How was your day?"], max_new_tokens=2, chat=chat)
    assert _open_thinking(seen[0])  # the params asked for thinking in generation
    # the judge still reads its score right after the prompt
    contrast = replace(JudgeConfig.from_params(load_params("smoke")), mode="contrast")
    judge(model, tok, contrast, ["Hi"], ["I feel glad."], chat=chat)
    assert not _open_thinking(seen[-1])


@pytest.mark.parametrize("text, reply", [
    ("<think>\nthe user wants...\n</think>\n\nI feel glad.", "I feel glad."),
    ("<think>\ncut off while thinking", ""),
    ("I feel glad.", "I feel glad."),
    ("<think>\n\n</think>\n\nHello", "Hello"),
])
def test_strip_thinking(text, reply):
    assert strip_thinking(text) == reply
    assert completion_text([{"role": "assistant", "content": text}]) == reply  # what the judge and guard read


def test_training_gets_the_same_template_arguments():
    from hmxnb.train import grpo_kwargs

    kw = grpo_kwargs(load_params("smoke"), "out", on_cpu=True)
    assert kw["chat_template_kwargs"] == {"enable_thinking": False, "date_string": DEFAULT_DATE}
    kw = grpo_kwargs(load_params("smoke", {"enable_thinking": True, "chat_date": "01 Jan 2025"}), "out", on_cpu=True)
    assert kw["chat_template_kwargs"] == {"enable_thinking": True, "date_string": "01 Jan 2025"}


def test_trainer_renders_prompts_with_the_params_template_arguments(tiny_model_dir, tmp_path):
    from hmxnb.train import make_trainer

    p = load_params("smoke", {"model_name_or_path": tiny_model_dir, "max_steps": 1, "n_train_prompts": 4,
                              "chat_date": "01 Jan 2025"})
    trainer, _ = make_trainer(p, tmp_path)
    assert trainer.chat_template_kwargs == {"enable_thinking": False, "date_string": "01 Jan 2025"}


def test_system_text_is_folded_where_the_template_has_no_system_role(tiny_model, tiny_model_dir):
    model, _ = tiny_model
    tok = _tok(tiny_model_dir, NO_SYSTEM)
    assert not supports_system_role(tok)
    seen = _spy(tok)
    config = JudgeConfig.from_params(load_params("smoke"))
    for mode in ("contrast", "probability"):
        res = judge(model, tok, replace(config, mode=mode), ["How was your day?"], ["I feel glad."])
        assert np.isfinite(res.scores).all()
    persona = config.personas("human")[0]
    assert any(f"<|im_start|>user\n{persona}\n\nHow was your day?" in t for t in seen)


def test_fold_system_keeps_a_template_with_system_role_unchanged(tiny_model_dir):
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert fold_system(msgs) == [{"role": "user", "content": "S\n\nU"}]
    assert fold_system(msgs[:1]) == [{"role": "user", "content": "S"}]
    tok = _tok(tiny_model_dir, TURNS)
    assert supports_system_role(tok) and render(tok, msgs).startswith("<|im_start|>system\nS")


def test_date_in_prompts_is_pinned(tiny_model_dir):
    today = datetime.date.today().strftime("%d %b %Y")
    tok = _tok(tiny_model_dir, DATED)
    text = chat_prompt(tok, [{"role": "user", "content": "Is it true?"}])
    assert f"Today Date: {DEFAULT_DATE}" in text and (today == DEFAULT_DATE or today not in text)
    chat = chat_settings(tok, {"chat_date": "01 Jan 2025"})
    assert "Today Date: 01 Jan 2025" in render(tok, [{"role": "user", "content": "Hi"}], chat=chat)


def test_load_model_returns_the_chat_settings(tiny_model_dir):
    from hmxnb.models import load_model

    loaded = load_model({"model_name_or_path": tiny_model_dir, "enable_thinking": True, "chat_date": "01 Jan 2025"})
    assert loaded.chat == ChatSettings(enable_thinking=True, date_string="01 Jan 2025", system_role=True)


def test_the_system_role_is_probed_once_at_load_and_then_read(tiny_model_dir):
    """`chat_settings` probes the template; a render with those settings folds without probing again."""
    tok = _tok(tiny_model_dir, NO_SYSTEM)
    chat = chat_settings(tok)
    assert chat.system_role is False
    seen = _spy(tok)
    text = render(tok, [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}], chat=chat)
    assert text.startswith("<|im_start|>user\nS\n\nU") and len(seen) == 1  # the render itself, no probe


@pytest.mark.parametrize("profile", ["paper", "colab-t4"])
def test_validate_prints_the_per_model_decisions(profile):
    out = subprocess.run([sys.executable, "-m", "hmxnb", "validate", "--profile", profile], capture_output=True,
                         text=True, check=True).stdout
    rows = {r["model"]: r for r in json.loads(out)["model_decisions"]}
    assert all(r["precision on T4 (Colab)"] == "fp16" and r["precision on RTX 4060 Ti / 4090"] == "bf16"
               for r in rows.values())
    for name, r in rows.items():
        assert r["thinking"] == ("off (enable_thinking=False)" if "qwen3" in name.lower() else "template has none")
    if profile == "paper":
        assert len(rows) == 5
        assert rows["google/gemma-2-2b-it"]["system_role"] == "folded into the first user turn"
        assert rows["meta-llama/Llama-3.2-3B-Instruct"]["date"] == "pinned to '26 Jul 2024'"
        assert rows["google/gemma-2-2b-it"]["gated"].startswith("yes")

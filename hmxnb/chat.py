"""Chat templates of the paper's models, rendered one way everywhere: training, the self-judge, generation, benchmarks.

Three template behaviours of the paper's models change what is trained and judged (facts: ../shared/reference or
README "Paper models"):
- Qwen3 opens a thinking block unless the template gets `enable_thinking=False`. Params `enable_thinking` (default
  off) goes to every render here and to TRL through GRPOConfig `chat_template_kwargs`; when it is on, the judge and
  the benchmarks read the reply after the thinking block (`strip_thinking`).
- Gemma-2's template has no system role (it raises). The system text is folded into the first user turn; whether a
  template takes a system message is probed once, when the model is loaded (`chat_settings`).
- Llama-3.2's template writes today's date into every prompt. Params `chat_date` pins it (`date_string`), so two
  runs on different days see the same text.

The settings are a value, `ChatSettings`, not state on the tokenizer: `hmxnb.models.load_model` returns them in its
`LoadedModel` (`.chat`), and every render in the package passes them to `render`. A render without them gets the
defaults (thinking off, the default date) and probes the template for a system role.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

# Llama-3.2's own template falls back to this date when it cannot read the clock.
DEFAULT_DATE = "26 Jul 2024"
_THINK = re.compile(r"<think>.*?</think>\s*", re.DOTALL)


@dataclass(frozen=True)
class ChatSettings:
    """How every chat of one loaded model is rendered: the params' thinking switch and date, and whether its
    template takes a system message (None: not probed yet, `render` probes when a system message comes)."""

    enable_thinking: bool = False
    date_string: str = DEFAULT_DATE
    system_role: bool | None = None

    def template_kwargs(self) -> dict:
        """Extra variables for `apply_chat_template` (templates that do not use one ignore it)."""
        return {"enable_thinking": self.enable_thinking, "date_string": self.date_string}


def settings_from_params(params: dict) -> ChatSettings:
    """The params' thinking switch and date (the system role is a property of a template: see `chat_settings`)."""
    return ChatSettings(bool(params.get("enable_thinking", False)), str(params.get("chat_date") or DEFAULT_DATE))


def chat_settings(tokenizer, params: dict | None = None) -> ChatSettings:
    """The settings of `params` (defaults without) for this tokenizer, its system role probed once, here."""
    settings = settings_from_params(params or {})
    return replace(settings, system_role=supports_system_role(tokenizer, settings))


def supports_system_role(tokenizer, settings: ChatSettings | None = None) -> bool:
    """Whether the tokenizer's chat template accepts a system message (a render of a two-turn probe)."""
    probe = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    try:
        text = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True,
                                             **(settings or ChatSettings()).template_kwargs())
    except Exception:  # jinja's raise_exception: "System role not supported" (Gemma-2)
        return False
    return "S" in text


def fold_system(messages: list[dict]) -> list[dict]:
    """Put a leading system message's text at the start of the first user turn (for templates without a system role)."""
    if not messages or messages[0].get("role") != "system":
        return list(messages)
    system, rest = messages[0]["content"], [dict(m) for m in messages[1:]]
    for m in rest:
        if m.get("role") == "user":
            m["content"] = f"{system}\n\n{m['content']}"
            return rest
    return [{"role": "user", "content": system}, *rest]


def prepare(tokenizer, messages: list[dict], chat: ChatSettings | None = None) -> list[dict]:
    """The messages as this tokenizer's template can take them."""
    if not messages or messages[0].get("role") != "system":
        return list(messages)
    chat = chat or ChatSettings()
    system_role = chat.system_role if chat.system_role is not None else supports_system_role(tokenizer, chat)
    return list(messages) if system_role else fold_system(messages)


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = True, thinking: bool | None = None,
           chat: ChatSettings | None = None) -> str:
    """The chat as text, with `chat`'s thinking switch and date; tokenize it with add_special_tokens=False.

    `chat` is the loaded model's `ChatSettings` (`LoadedModel.chat`); None renders with the defaults.
    `thinking=False` forces thinking off whatever the params say: for anything read at a fixed position after the
    prompt (the judge's score digit, an answer letter, a judged reply), which a thinking block would push away.
    """
    chat = chat or ChatSettings()
    kwargs = chat.template_kwargs()
    if thinking is not None:
        kwargs["enable_thinking"] = thinking
    return tokenizer.apply_chat_template(prepare(tokenizer, messages, chat), tokenize=False,
                                         add_generation_prompt=add_generation_prompt, **kwargs)


def strip_thinking(text: str) -> str:
    """The reply after any closed thinking block; a block never closed (cut off while thinking) leaves no reply."""
    text = _THINK.sub("", text)
    return "" if "<think>" in text else text

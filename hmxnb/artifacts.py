"""Write step artefacts with their provenance: effective params, package versions, git commit."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import uuid
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np

from hmxnb.params import params_hash
from hmxnb.paths import OUTPUTS, ROOT
from hmxnb.steps import BENCHMARKS, TRAINING, step_data

PACKAGES = ("hmxnb", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "unsloth", "unsloth_zoo",
            "bitsandbytes", "papermill", "seaborn")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape results (None = not installed)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    """The repository's HEAD commit (with '-dirty' when the tree has changes), or None outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def package_code_hash() -> str:
    """sha256 (12 hex) of the package's own source, every `hmxnb/**/*.py` by path and content: which code ran a step,
    also where there is no git or the tree has uncommitted edits."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted((ROOT / "hmxnb").rglob("*.py")):
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None  # JSON has no NaN: missing values are written as null
    if isinstance(x, Path):
        return str(x)
    return x


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path` that replaces it in one step when the block succeeds: a reader never sees
    a half-written file, and two writers never share a temporary file (its name holds the process id)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with _naming(path):
            yield tmp
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _naming(path: Path):
    """An OSError without a file name (a full disk: write() raises "No space left on device" naming nothing) gets
    `path`, so the one-line error says which file could not be written; the old file at `path` is left as it was."""
    try:
        yield
    except OSError as err:
        if err.filename is not None or err.errno is None:
            raise
        raise type(err)(err.errno, err.strerror, str(path)) from err


def save_text(text: str, path: str | Path) -> Path:
    """Write a text file atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def save_json(obj, path: str | Path) -> Path:
    return save_text(json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n", path)


def save_jsonl(rows, path: str | Path) -> Path:
    return save_text("".join(json.dumps(_jsonable(r)) + "\n" for r in rows), path)


def append_jsonl(rows, path: str | Path) -> Path:
    """Append rows to a JSON-lines log (created with its folder when missing); earlier lines are never rewritten."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _naming(path), open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(_jsonable(r)) + "\n" for r in rows))
    return path


def write_provenance(out_dir: str | Path, params: dict, **extra) -> Path:
    """`provenance.json` next to a step's artefacts: params, their hash, versions, git commit, the sha256 of every
    data file the step reads (`data`, hmxnb.steps: the step is the folder's name, so a notebook run by hand
    records them too), extras."""
    data = step_data(Path(out_dir).name, params)
    return save_json(
        {"params_hash": params_hash(params), "git_commit": git_commit(), "versions": package_versions(),
         **({"data": data} if data else {}), **extra, "params": params},
        Path(out_dir) / "provenance.json",
    )


def add_to_provenance(out_dir: str | Path, **extra) -> Path | None:
    """Add keys to an existing `provenance.json` (what is only known later in the step, e.g. the trainer's
    effective GRPO arguments); None when the step wrote none (a trainer built outside a notebook)."""
    path = Path(out_dir) / "provenance.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    params = record.pop("params", None)
    return save_json({**record, **extra, "params": params}, path)


def step_dir(params: dict, step: str, out_dir: str | Path | None = None) -> Path:
    """The output folder of a step: `out_dir` when given (the runner passes it), else outputs/<profile>/<step>/."""
    d = Path(out_dir) if out_dir else OUTPUTS / params["profile"] / step
    (d / "figures").mkdir(parents=True, exist_ok=True)
    return d


def find_runs(profile_dir: str | Path, step: str = BENCHMARKS, members: list[str] | None = None) -> list[Path]:
    """Run folders under outputs/<profile>/ that finished `step`: the folder itself for a single run, else each
    sweep sub-folder (model x seed), sorted. `members` (the runner passes the finished ones) restricts a sweep to
    those sub-folders."""
    root = Path(profile_dir)
    if members is not None:
        return [root / m for m in sorted(members)]
    if (root / step / "samples.jsonl").is_file():
        return [root]
    return sorted(p.parent.parent for p in root.glob(f"*/{step}/samples.jsonl")
                  if not p.parent.parent.name.startswith("_"))


def run_params(run_dir: str | Path, step: str = BENCHMARKS) -> dict:
    """The effective params a run's step was made with (from its provenance.json)."""
    return json.loads((Path(run_dir) / step / "provenance.json").read_text())["params"]


def load_run_records(runs: list[Path], step: str = BENCHMARKS):
    """All item records of the runs as one DataFrame, tagged with each run's `base_model` and `seed`."""
    import pandas as pd

    from hmxnb.data import read_jsonl

    frames = []
    for run in runs:
        p = run_params(run, step)
        df = pd.DataFrame(read_jsonl(Path(run) / step / "samples.jsonl"))
        df["base_model"], df["seed"] = p["model_name_or_path"], p["seed"]
        frames.append(df)
    if not frames:
        raise FileNotFoundError(f"no {step}/samples.jsonl under the runs given: run notebook 04 first")
    return pd.concat(frames, ignore_index=True)


def load_run_logs(runs: list[Path]) -> dict:
    """Training logs of notebooks 02 / 03 across runs: {"human": DataFrame, "reverse": DataFrame} with base_model,
    seed."""
    import pandas as pd

    logs = {}
    for direction, step in TRAINING.items():
        frames = []
        for run in runs:
            f = Path(run) / step / "train_log.csv"
            if f.is_file():
                p = run_params(run, step)
                frames.append(pd.read_csv(f).assign(base_model=p["model_name_or_path"], seed=p["seed"]))
        if frames:
            logs[direction] = pd.concat(frames, ignore_index=True)
    return logs

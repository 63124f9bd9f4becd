"""Params: flat profiles in `params/<profile>.yaml`, validated key by key before anything runs.

Every key has a default, a type and the library field it feeds (GRPOConfig, LoraConfig, from_pretrained, ...):
the schema is hmxnb.schema.
A profile file overrides defaults; `overrides` (from `--set key=value` or a notebook's `params_overrides`)
override the profile. Unknown keys, wrong types, missing files and unknown profiles raise `ParamsError`
whose message is one line naming the culprit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from hmxnb.paths import PARAMS
from hmxnb.schema import SCHEDULING_KEYS, SCHEMA


class ParamsError(ValueError):
    """Bad params: the message is one line naming the key, file or profile."""


_SCALARS = {"str": str, "int": int, "float": (int, float), "bool": bool, "path": str}


def params_dir() -> Path:
    """`params/` at the repository root ($HMXNB_PARAMS_DIR overrides)."""
    env = os.environ.get("HMXNB_PARAMS_DIR")
    return Path(env) if env else PARAMS


COLAB_PROFILE = "colab-t4"  # what a notebook opened in Colab loads when its `profile` parameter is None
DEFAULT_PROFILE = "smoke"  # and anywhere else


def notebook_profile(profile: str | None, in_colab: bool) -> str:
    """The profile a notebook loads: its `profile` parameter when set, else colab-t4 in Colab and smoke elsewhere.

    >>> notebook_profile(None, True), notebook_profile("demo", True), notebook_profile(None, False)
    ('colab-t4', 'demo', 'smoke')
    """
    return profile or (COLAB_PROFILE if in_colab else DEFAULT_PROFILE)


def available_profiles() -> list[str]:
    return sorted(p.stem for p in params_dir().glob("*.yaml"))


def clip(value: Any, limit: int = 120) -> str:
    """`value` as text for a one-line error: control characters escaped, cut to `limit` characters with "…"."""
    text = re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], str(value))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _type_ok(value: Any, typ: str) -> bool:
    if typ.endswith("?"):
        if value is None:
            return True
        typ = typ[:-1]
    if typ in _SCALARS:
        if typ in ("int", "float") and isinstance(value, bool):
            return False
        return isinstance(value, _SCALARS[typ])
    if typ.startswith("list["):
        inner = typ[5:-1]
        return isinstance(value, list) and all(_type_ok(v, inner) for v in value)
    if typ.startswith("dict["):
        kt, vt = typ[5:-1].split(",")
        return isinstance(value, dict) and all(_type_ok(k, kt) and _type_ok(v, vt) for k, v in value.items())
    raise AssertionError(f"unknown schema type {typ}")


def _check(key: str, value: Any, source: str) -> Any:
    if key not in SCHEMA:
        hint = _closest(key)
        raise ParamsError(f"unknown params key '{clip(key)}' in {source}"
                          + (f" (did you mean '{hint}'?)" if hint else ""))
    spec = SCHEMA[key]
    if spec.type.startswith("float") and isinstance(value, str):
        value = _yaml11_float(value)  # PyYAML reads 1e-5 (no dot) as a string
    if not _type_ok(value, spec.type):
        raise ParamsError(f"params key '{key}' in {source} must be {spec.type}, got {type(value).__name__} "
                          f"{clip(repr(value))}")
    if spec.choices and value not in spec.choices:
        raise ParamsError(f"params key '{key}' in {source} must be one of {list(spec.choices)}, "
                          f"got {clip(repr(value))}")
    if key in SCHEDULING_KEYS and isinstance(value, str) and re.search(r"[\x00-\x1f\x7f]", value):  # sbatch lines
        raise ParamsError(f"params key '{key}' in {source} must be one line without control characters, "
                          f"got {clip(repr(value))}")
    bad = [v for v in _numbers(value) if not _in_bounds(v, spec.bounds)]
    if bad:
        where = f"in {spec.bounds}" if spec.bounds else "finite"
        raise ParamsError(f"params key '{key}' in {source} must be {where}, got {bad[0]!r}")
    if spec.type.startswith("float") and isinstance(value, int):
        value = float(value)
    return value


def _numbers(value: Any) -> list:
    """The numbers in a value: itself, or the items of a list, or the values of a dict (bools are not numbers)."""
    items = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
    return [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _in_bounds(x: float, bounds: str) -> bool:
    """Is x finite and inside `bounds`, an interval such as "[1, inf)" ("[" / "]" closed, "(" / ")" open)?"""
    if not math.isfinite(x):
        return False
    if not bounds:
        return True
    lo, hi = (float(s) for s in bounds[1:-1].split(","))
    above = x >= lo if bounds[0] == "[" else x > lo
    below = x <= hi if bounds[-1] == "]" else x < hi
    return above and below


def _yaml11_float(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def _closest(key: str) -> str | None:
    import difflib

    m = difflib.get_close_matches(key, SCHEMA, n=1)
    return m[0] if m else None


def _check_files(p: dict, data_dir_from_env: bool) -> None:
    """The files and folders params name exist; a data_dir taken from $HMXNB_DATA_DIR is named as such."""
    for key in ("data_dir", "prompts_file"):
        if p[key] is not None and not Path(p[key]).exists():
            env = " (from the environment variable HMXNB_DATA_DIR)" if key == "data_dir" and data_dir_from_env else ""
            raise ParamsError(f"params key '{key}'{env}: file or folder not found: {clip(p[key])}")


def _check_consistency(p: dict) -> None:
    """Cross-key rules: rubric keys agree, GRPO batch geometry is valid."""
    crit = set(p["rubric_criteria"])
    if set(p["rubric_weights"]) != crit:
        raise ParamsError(f"params key 'rubric_weights' must name exactly the criteria {sorted(crit)}, "
                          f"got {sorted(p['rubric_weights'])}")
    if not set(p["rubric_guards"]) <= crit:
        unknown = sorted(set(p["rubric_guards"]) - crit)
        raise ParamsError(f"params key 'rubric_guards' names criteria not in rubric_criteria: {unknown}")
    if p["reverse_mode"] == "invert_rubric" and set(p["rubric_reverse_criteria"]) != crit:
        raise ParamsError("params key 'rubric_reverse_criteria' must name exactly the criteria of rubric_criteria")
    bad = [m for m in p["judge_compare_modes"] if m not in SCHEMA["judge_mode"].choices]
    if bad:
        raise ParamsError(f"params key 'judge_compare_modes' has unknown judge modes {bad}; "
                          f"use {list(SCHEMA['judge_mode'].choices)}")
    if p["eval_second_judge_mode"] == p["judge_mode"]:
        raise ParamsError(f"params key 'eval_second_judge_mode' ({p['judge_mode']!r}) must differ from judge_mode: "
                          "the second evaluation judge would repeat the first ('' = none)")
    if not 0 <= p["rubric_scale_min"] < p["rubric_scale_max"] <= 9:
        raise ParamsError("params keys 'rubric_scale_min'/'rubric_scale_max' must satisfy 0 <= min < max <= 9 "
                          "(single-digit scores)")
    if p["num_generations"] < 2:
        raise ParamsError("params key 'num_generations' must be >= 2 (GRPO compares completions within a group)")
    gen_batch = p["per_device_train_batch_size"] * p["gradient_accumulation_steps"]
    if gen_batch % p["num_generations"]:
        raise ParamsError(
            f"params key 'per_device_train_batch_size' x gradient_accumulation_steps ({gen_batch}) "
            f"must be a multiple of num_generations ({p['num_generations']})"
        )


def second_judge_mode(params: dict) -> str:
    """params eval_second_judge_mode, "auto" resolved: the persona contrast, or the request judge when the training
    judge is the persona contrast ("" = none)."""
    mode = params["eval_second_judge_mode"]
    if mode == "auto":
        return "request" if params["judge_mode"] == "contrast" else "contrast"
    return mode


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A key given twice in one mapping."""


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml's SafeLoader, except that a key given twice in one mapping is an error at its line: plain YAML loading
    keeps the last value silently, so a profile setting max_steps twice would run with whichever came last."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges are allowed to be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # SafeLoader names an unhashable key below
                continue
            if key in seen:
                raise _DuplicateKey(None, None, f"duplicate key {key!r} (first given on line {seen[key]})",
                                    key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _profile_text(path: Path) -> str:
    """The profile file as text; a file that is not UTF-8 (say, saved in Latin-1) is named with the line and column
    of its first bad byte, rather than a UnicodeDecodeError traceback."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ParamsError(f"params file {path} cannot be read: {err.strerror}") from None
    try:
        return data.decode("utf-8-sig")  # -sig: a byte-order mark some Windows editors write is not an error
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ParamsError(f"params file {path}:{line}:{col} is not UTF-8 (byte 0x{data[err.start]:02x}); "
                          "save it as UTF-8") from None


def read_profile(profile: str) -> dict:
    """The raw key/values of `params/<profile>.yaml`; `profile` may also be a path to a yaml file."""
    path = Path(profile)
    if path.suffix not in (".yaml", ".yml"):
        path = params_dir() / f"{profile}.yaml"
    if not path.is_file():
        raise ParamsError(f"unknown profile '{clip(profile)}' (no file {clip(path)}); available: "
                          f"{', '.join(available_profiles())}")
    try:
        raw = yaml.load(_profile_text(path), Loader=UniqueKeyLoader) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ParamsError(f"params file {path}{where} is not valid YAML: {what}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"params file {path} must be a mapping of key: value")
    return raw


def load_params(profile: str, overrides: dict | None = None) -> dict:
    """Resolve defaults <- profile file <- overrides, validating every key and type. Returns a plain dict."""
    p = {k: spec.default for k, spec in SCHEMA.items()}
    source = f"profile '{profile}'"
    for key, value in read_profile(profile).items():
        p[key] = _check(key, value, source)
    for key, value in (overrides or {}).items():
        p[key] = _check(key, value, "overrides")
    from_env = p["data_dir"] is None and bool(os.environ.get("HMXNB_DATA_DIR"))
    if from_env:
        p["data_dir"] = os.environ["HMXNB_DATA_DIR"]
    for key, spec in SCHEMA.items():  # notebooks run in notebooks/: a relative path must not change meaning there
        if spec.type.startswith("path") and p[key] is not None:
            p[key] = str(Path(p[key]).expanduser().resolve())
    _check_files(p, from_env)
    _check_consistency(p)
    p["profile"] = profile_name(profile)
    return p


def profile_name(profile: str) -> str:
    """The profile's name (a file's stem), which names its folder outputs/<profile>/: letters, digits, '.', '_', '-',
    not starting with a dot, so that it can never point outside outputs/."""
    name = Path(profile).stem if Path(profile).suffix in (".yaml", ".yml") else profile
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ParamsError(f"profile name '{clip(name)}' (from '{clip(profile)}') must start with a letter or digit and "
                          "use only letters, digits, '.', '_' and '-' (it names the folder outputs/<profile>/)")
    return name


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one `key=value` from the command line; the value is read as YAML (so 3 -> int, [a, b] -> list)."""
    if "=" not in text:
        raise ParamsError(f"override '{clip(text)}' must look like key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.load(raw, Loader=UniqueKeyLoader)
    except _DuplicateKey as err:
        raise ParamsError(f"override '{clip(text)}' has a {err.problem}") from None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def params_hash(p: dict) -> str:
    """Short stable hash of resolved params (key order does not matter). The `slurm_*` keys are left out: where
    and how long a job is scheduled does not change its result, so re-submitting elsewhere keeps finished steps."""
    blob = json.dumps({k: v for k, v in p.items() if k not in SCHEDULING_KEYS}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]

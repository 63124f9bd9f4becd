"""Where things are, and which output paths are allowed: one place for the repository's folders and the path rules.

The repository root is where notebooks/, params/ and outputs/ live (this package sits in it: an editable install or
a clone on sys.path). Output folders are named from free text (a profile name, a model id), so `safe_name` turns
text into a folder name and `inside` refuses any path that would leave the folder it belongs in. This module imports
nothing of hmxnb, so every other module can use it.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PARAMS = ROOT / "params"
OUTPUTS = ROOT / "outputs"


class PathError(ValueError):
    """An output path would lie outside its root folder; the message is one line."""


def safe_name(text: str) -> str:
    """A folder name from free text: letters, digits, '.', '_', '-' only, never starting with a dot ('..' -> 'run')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).lstrip(".-") or "run"


def inside(root: Path, *parts: str) -> Path:
    """root/parts..., resolved; PathError for a path that resolves outside root."""
    path = Path(root).joinpath(*parts).resolve()
    if not path.is_relative_to(Path(root).resolve()):
        raise PathError(f"output folder {path} would lie outside {root}; rename the profile or sweep entry")
    return path

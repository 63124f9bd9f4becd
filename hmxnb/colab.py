"""Google Colab: where a notebook is cloned from, and which params profile it loads there.

`REPO_URL` is the one place to set the public repository. Each notebook's "Open in Colab" badge and its set-up
cell's `HMXNB_REPO` are written from it by `make colab-links` (`python -m hmxnb colab-links`); the set-up cell
runs before hmxnb is installed, so the notebooks hold a copy of the URL, and a test fails when they drift.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

REPO_URL = "https://github.com/hmxnb/hmxnb"  # the public repository (a fork: its own URL), no trailing slash
BRANCH = "main"
COLAB_PROFILE = "colab-t4"
DEFAULT_PROFILE = "smoke"
BADGE_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^)\s]+")
REPO_LINE = re.compile(r'^HMXNB_REPO = "[^"]*"', re.M)


def notebook_profile(profile: str | None, in_colab: bool) -> str:
    """The profile a notebook loads: its `profile` parameter when set, else colab-t4 in Colab and smoke elsewhere.

    >>> notebook_profile(None, True), notebook_profile("demo", True), notebook_profile(None, False)
    ('colab-t4', 'demo', 'smoke')
    """
    return profile or (COLAB_PROFILE if in_colab else DEFAULT_PROFILE)


def badge_link(notebook: str | Path, repo_url: str = REPO_URL, branch: str = BRANCH) -> str:
    """Colab's URL that opens `notebooks/<name>` of the GitHub repository `repo_url` at `branch`."""
    if not repo_url.startswith("https://github.com/"):
        raise ValueError(f"repo_url '{repo_url}': Colab opens GitHub repositories only (https://github.com/<owner>/<repo>)")
    path = repo_url.removeprefix("https://github.com/").rstrip("/")
    return f"https://colab.research.google.com/github/{path}/blob/{branch}/notebooks/{Path(notebook).name}"


def links_in(path: Path) -> tuple[list[str], list[str]]:
    """(badge links, HMXNB_REPO values) found in a notebook, for checks."""
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    return BADGE_LINK.findall(text), [m.group(0).split('"')[1] for m in REPO_LINE.finditer(text)]


def set_links(paths, repo_url: str = REPO_URL, branch: str = BRANCH) -> list[Path]:
    """Rewrite each notebook's Colab badge and HMXNB_REPO from `repo_url`; returns the notebooks that changed."""
    changed = []
    for path in map(Path, paths):
        nb = nbformat.read(path, as_version=4)
        before = [c.source for c in nb.cells]
        for cell in nb.cells:
            cell.source = BADGE_LINK.sub(badge_link(path, repo_url, branch), cell.source)
            cell.source = REPO_LINE.sub(f'HMXNB_REPO = "{repo_url}"', cell.source)
        if [c.source for c in nb.cells] != before:
            nbformat.write(nb, path)
            changed.append(path)
    return changed

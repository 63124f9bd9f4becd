"""The Jupyter click-through, as a person does it: JupyterLab in a real browser (headless Chromium driven by
Playwright), a notebook opened, "Run > Run All Cells" clicked, and what the page then shows read back.

JupyterLab runs on a free port with a token, on a copy of the notebook whose parameters cell writes under the
test's folder (a person would leave it as it is: outputs/<profile>/). Skipped, saying why, when Chromium is missing
(`.ci/run` installs it); jupyterlab and playwright come with the `dev` extra, so their absence is a failure.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from hmxnb.runner.browser import find_chromium
from hmxnb.paths import NOTEBOOKS

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(base URL, token, notebook folder) of a JupyterLab server started for these tests, stopped after them."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium not found (.ci/run installs it with apt-get): no real-browser check of JupyterLab")
    root = tmp_path_factory.mktemp("lab")
    port, token = _free_port(), secrets.token_hex(16)
    # every cell in the page (JupyterLab 4 renders only the cells in view by default), no news pop-up
    settings = root / ".jupyter" / "lab" / "user-settings" / "@jupyterlab"
    for extension, values in (("notebook-extension/tracker", {"windowingMode": "none"}),
                              ("apputils-extension/notification", {"fetchNews": "false"})):
        (settings / extension).parent.mkdir(parents=True, exist_ok=True)
        (settings / f"{extension}.jupyterlab-settings").write_text(json.dumps(values))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline",
           "JUPYTER_CONFIG_DIR": str(root / ".jupyter"), "JUPYTERLAB_WORKSPACES_DIR": str(root / ".workspaces")}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False",
         *(["--allow-root"] if os.geteuid() == 0 else [])],  # CI containers run as root
        env=env, stdout=subprocess.DEVNULL, stderr=open(root / "lab.log", "w"), cwd=root)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited: {(root / 'lab.log').read_text()[-2000:]}")
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("JupyterLab did not answer within 120 s")
    yield base, token, root, chromium
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def _copy(notebook: Path, folder: Path, parameters: str, extra_cell: str | None = None) -> str:
    """The notebook copied into `folder` with its parameters cell replaced (and a cell appended); its file name."""
    nb = nbformat.read(notebook, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = parameters
    if extra_cell is not None:
        nb.cells.append(nbformat.v4.new_code_cell(extra_cell))
    nbformat.write(nb, folder / notebook.name)
    return notebook.name


def _kernel_state(base: str, token: str, name: str) -> str | None:
    """The execution state of the kernel of notebook `name`'s session ('idle', 'busy', …), None before it has one."""
    with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=5) as r:
        sessions = json.loads(r.read())
    return next((s["kernel"]["execution_state"] for s in sessions if s["path"].endswith(name)), None)


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(1)


def run_all_in_lab(lab, name: str, timeout: float) -> dict:
    """Open notebook `name` in JupyterLab, click Run > Run All Cells, wait until every code cell shows its execution
    count and the kernel is idle, save it from the UI (Ctrl+S). Returns what the page shows (output texts, tables,
    images, executed / code cells) and the error outputs of the saved notebook."""
    from playwright.sync_api import sync_playwright

    base, token, root, chromium = lab
    path = root / name
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            workspace = Path(name).stem  # a fresh workspace per notebook: no other notebook's tab restored
            page.goto(f"{base}/lab/workspaces/{workspace}/tree/{name}?token={token}&reset",
                      wait_until="domcontentloaded")
            page.locator(".jp-Notebook .jp-CodeCell").first.wait_for(timeout=120_000)
            _wait(lambda: _kernel_state(base, token, name) == "idle", 120, "the notebook's kernel")
            page.wait_for_timeout(1000)  # the menu's commands follow the kernel's status
            page.locator(".lm-MenuBar-item", has_text="Run").first.click()
            page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()

            def executed() -> int:
                prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").all_inner_texts()
                return sum(p.strip().startswith("[") and p.strip()[1:-2].strip().isdigit() for p in prompts)

            calm = []

            def finished() -> bool:  # every cell ran, or the run stopped at an error: idle, nothing queued, twice
                prompts = " ".join(page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").all_inner_texts())
                idle = _kernel_state(base, token, name) == "idle"
                calm.append(idle and executed() > 0 and "[*]" not in prompts)
                return calm[-2:] == [True, True]

            _wait(finished, timeout, f"{name} to run")
            before = path.stat().st_mtime_ns
            page.locator(".jp-Notebook").first.click()
            page.keyboard.press("Control+s")
            _wait(lambda: path.stat().st_mtime_ns != before, 60, f"{name} to be saved")
            page.screenshot(path=str(root / f"{name}.png"), full_page=True)
            saved = nbformat.read(path, as_version=4)
            code = [c for c in saved.cells if c.cell_type == "code"]  # (a cell with its code hidden shows no prompt)
            return {
                "code_cells": len(code), "executed": sum(c.execution_count is not None for c in code),
                "errors": [f"{o.get('ename')}: {o.get('evalue')}" for c in saved.cells if c.cell_type == "code"
                           for o in c.get("outputs", []) if o.get("output_type") == "error"],
                "tables": page.locator(".jp-OutputArea-output table").count(),
                "images": page.locator(".jp-OutputArea-output img").count(),
                "text": "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts()),
            }
        finally:
            browser.close()


def test_a_broken_cell_is_seen_as_an_error(lab):
    """The check itself: a notebook whose last cell raises shows the error where a person would see it."""
    root = lab[2]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 41 + 1\nprint(x)"),
                                         nbformat.v4.new_code_cell("raise RuntimeError('deliberately broken')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "broken.ipynb")
    seen = run_all_in_lab(lab, "broken.ipynb", timeout=120)
    assert seen["executed"] == 2 and "42" in seen["text"]
    assert seen["errors"] == ["RuntimeError: deliberately broken"]
    assert "deliberately broken" in seen["text"]  # and a person sees it on the page


def test_notebook_01_runs_from_the_jupyterlab_ui(lab):
    """01 on the smoke profile: every cell runs, no error output, the rubric and judge tables and the figures show."""
    root = lab[2]
    out = root / "outputs" / "01_design_rubric"
    name = _copy(NOTEBOOKS / "01_design_rubric.ipynb", root,
                 f'profile = "smoke"\nparams_overrides = {{}}\nout_dir = {json.dumps(str(out))}')
    seen = run_all_in_lab(lab, name, timeout=600)
    assert seen["errors"] == [], seen["errors"]
    assert seen["executed"] == seen["code_cells"] > 5
    assert seen["tables"] >= 2 and seen["images"] >= 2  # rubric / judge tables, example and validation figures
    assert (out / "metrics.json").is_file()


def test_notebook_02_trains_from_the_jupyterlab_ui(lab):
    """02 with a two-step training set in its parameters cell, as a workshop participant would."""
    root = lab[2]
    out = root / "outputs" / "02_train_human"
    name = _copy(NOTEBOOKS / "02_train_human.ipynb", root,
                 'profile = "smoke"\nparams_overrides = {"max_steps": 2, "save_steps": 1}\n'
                 f'out_dir = {json.dumps(str(out))}\ndirection = "human"')
    seen = run_all_in_lab(lab, name, timeout=600)
    assert seen["errors"] == [], seen["errors"]
    assert seen["executed"] == seen["code_cells"]
    assert seen["images"] >= 1  # the training figure
    assert (out / "adapter" / "adapter_model.safetensors").is_file()

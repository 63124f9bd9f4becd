"""The notebooks themselves: thin, committed without outputs, Colab set-up a no-op elsewhere, render to HTML."""

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_five_numbered_notebooks():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_structure(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)  # committed clean
    assert "colab.research.google.com" in nb.cells[0].source  # the Open in Colab badge opens the notebook
    assert "IN_COLAB" in code[0].source  # the Colab set-up cell comes first
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for node in ast.parse(tagged[0].source).body:  # the parameters cell holds plain literals only
        assert isinstance(node, ast.Assign) and isinstance(node.value, (ast.Constant, ast.Dict, ast.List))
    for c in code:  # thin: no function or class definitions in notebooks
        assert not re.search(r"^\s*(def|class) ", c.source, re.M), c.source[:80]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_setup_is_a_noop_outside_colab(path, tmp_path):
    import papermill as pm

    nb = nbformat.read(path, as_version=4)
    setup = next(c for c in nb.cells if c.cell_type == "code")
    probe = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import os, subprocess\nbefore = (os.getcwd(), len(__import__('sys').path))"),
        nbformat.v4.new_code_cell(setup.source),
        nbformat.v4.new_code_cell("import json, os, sys\nprint(json.dumps({'in_colab': IN_COLAB, 'same': before == (os.getcwd(), len(sys.path))}))"),
    ])
    probe.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src, out = tmp_path / "probe.ipynb", tmp_path / "probe_out.ipynb"
    nbformat.write(probe, src)
    pm.execute_notebook(str(src), str(out), kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    result = nbformat.read(out, as_version=4)
    assert "not in Colab, nothing to do" in result.cells[1].outputs[0]["text"]
    assert json.loads(result.cells[2].outputs[0]["text"]) == {"in_colab": False, "same": True}
    assert not (tmp_path / "hmxnb").exists()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_renders_to_html(path):
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(path))
    title = nbformat.read(path, as_version=4).cells[0].source.splitlines()[0].lstrip("# ").strip()
    assert "<html" in body and title.split("·")[0].strip() in body


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_markdown_renders_as_prose_not_headings(path):
    """A markdown cell's lines are read as written: at most its first line and short section titles are headings."""
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "markdown":
            continue
        lines = [line for line in cell.source.splitlines() if line.strip()]
        headings = [line for line in lines if line.startswith("#")]
        assert len(headings) <= 1 or len(headings) < len(lines) / 2, f"{path.name}: {lines[0][:60]!r}"
        assert not any(line.startswith("# #") for line in lines)  # a commented-out heading


def _imports_until_hmxnb(path: Path) -> str:
    """The notebook's top-level import statements, in order, up to and including its first `hmxnb` import."""
    lines = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        for node in ast.parse(cell.source).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                lines.append(ast.unparse(node))
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(n.split(".")[0] == "hmxnb" for n in names):
                    return "\n".join(lines)
    raise AssertionError(f"{path.name} never imports hmxnb")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_unsloth_is_imported_before_transformers(path, tmp_path):
    """Where Unsloth is installed (a stand-in package here) it is loaded before transformers, TRL and PEFT."""
    import os
    import subprocess
    import sys

    (tmp_path / "unsloth").mkdir()
    (tmp_path / "unsloth" / "__init__.py").write_text(
        "import json, os, sys\n"
        "with open(os.environ['UNSLOTH_PROBE'], 'a') as f:\n"
        "    f.write(json.dumps([m for m in ('transformers', 'trl', 'peft') if m in sys.modules]) + '\\n')\n")
    probe = tmp_path / "probe.jsonl"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "UNSLOTH_PROBE": str(probe)}
    env.pop("HMXNB_IMPORT_UNSLOTH", None)
    subprocess.run([sys.executable, "-c", _imports_until_hmxnb(path)], cwd=path.parent, env=env, check=True)
    assert probe.is_file(), "unsloth was not imported"
    assert probe.read_text().splitlines() == ["[]"], "transformers/TRL/PEFT were imported before unsloth"


@pytest.mark.parametrize(
    "profile, in_colab, expected",
    [
        (None, True, "colab-t4"),  # left at the default in Colab: the Colab profile
        ("demo", True, "demo"),  # set by the user in Colab: what they set
        ("smoke", True, "smoke"),  # even the local default, when set explicitly
        (None, False, "smoke"),  # left at the default elsewhere
        ("paper", False, "paper"),  # the runner always passes one
    ],
)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_profile_parameter_is_used_in_colab(path, profile, in_colab, expected):
    """The notebook's own params line, run as in Colab or not: a profile the user set is never replaced."""
    from hmxnb.colab import notebook_profile
    from hmxnb.params import load_params

    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    line = next(x for x in code.splitlines() if x.startswith("p = load_params("))
    scope = {"load_params": load_params, "notebook_profile": notebook_profile, "IN_COLAB": in_colab,
             "profile": profile, "params_overrides": {}, "direction": "human"}
    exec(line, scope)
    assert scope["p"]["profile"] == expected


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_links_come_from_the_one_setting(path):
    from hmxnb import colab

    badges, repos = colab.links_in(path)
    assert badges == [colab.badge_link(path)], "run `make colab-links` after changing hmxnb/colab.py: REPO_URL"
    assert repos == [colab.REPO_URL]


def test_colab_links_rewrite_every_place(tmp_path):
    from hmxnb import colab

    copy = tmp_path / NOTEBOOKS[0].name
    copy.write_bytes(NOTEBOOKS[0].read_bytes())
    assert colab.set_links([copy], "https://github.com/someone/fork", "dev") == [copy]
    assert colab.links_in(copy) == (
        [f"https://colab.research.google.com/github/someone/fork/blob/dev/notebooks/{copy.name}"],
        ["https://github.com/someone/fork"])
    assert colab.set_links([copy], "https://github.com/someone/fork", "dev") == []  # idempotent
    with pytest.raises(ValueError, match="GitHub repositories only"):
        colab.badge_link(copy, "https://gitlab.com/someone/fork")

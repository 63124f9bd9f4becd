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
def test_colab_setup_cell_is_the_generators(path):
    """Every notebook opens with the one set-up cell `make colab-links` writes (hmxnb.runner.colab.SETUP_CELL)."""
    from hmxnb.runner import colab

    setup = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    assert setup.source == colab.setup_cell(), "run `make colab-links`: the set-up cell is from hmxnb/runner/colab.py"
    assert setup.source.startswith("#@title ")  # collapsed: a form in Colab, its code hidden in JupyterLab
    assert setup.metadata["cellView"] == "form" and setup.metadata["jupyter"]["source_hidden"] is True


def test_colab_setup_is_a_noop_outside_colab(tmp_path):
    """The set-up cell (the same in every notebook, test above), run by papermill outside Colab: it changes nothing."""
    import papermill as pm

    from hmxnb.runner import colab

    probe = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import os, subprocess\nbefore = (os.getcwd(), len(__import__('sys').path))"),
        nbformat.v4.new_code_cell(colab.setup_cell()),
        nbformat.v4.new_code_cell("import json, os, sys\nprint(json.dumps({'in_colab': IN_COLAB, "
                                  "'same': before == (os.getcwd(), len(sys.path))}))"),
    ])
    probe.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src, out = tmp_path / "probe.ipynb", tmp_path / "probe_out.ipynb"
    nbformat.write(probe, src)
    pm.execute_notebook(str(src), str(out), kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    result = nbformat.read(out, as_version=4)
    assert "not in Colab, nothing to do" in result.cells[1].outputs[0]["text"]
    assert json.loads(result.cells[2].outputs[0]["text"]) == {"in_colab": False, "same": True}
    assert not (tmp_path / "hmxnb").exists()


def _by_name(stem: str) -> Path:
    return next(p for p in NOTEBOOKS if p.stem == stem)


def test_03_is_generated_from_02():
    """03 is 02 but for its direction cells; a hand edit to either without `make colab-links` fails here."""
    from hmxnb.runner import colab

    human = nbformat.read(_by_name("02_train_human"), as_version=4)
    expected = nbformat.writes(colab.reverse_notebook(human))
    assert nbformat.writes(nbformat.read(_by_name("03_train_reverse"), as_version=4)) == expected, \
        "notebooks 02 and 03 differ outside the direction cells: edit 02, then run `make colab-links`"


def test_02_and_03_differ_only_in_their_direction_cells():
    human, reverse = (nbformat.read(_by_name(s), as_version=4).cells for s in ("02_train_human", "03_train_reverse"))
    assert len(human) == len(reverse)
    differing = [i for i, (a, b) in enumerate(zip(human, reverse)) if a.source != b.source]
    params = next(i for i, c in enumerate(human) if "parameters" in c.metadata.get("tags", []))
    steps = [i for i, c in enumerate(human) if c.cell_type == "code" and "02_train_human" in c.source]
    assert set(differing) <= {0, params, *steps} and 0 in differing and params in differing
    assert 'direction = "reverse"' in reverse[params].source and "reverse" in reverse[0].source.splitlines()[0]


def test_a_drifted_03_is_rewritten_by_the_generator(tmp_path):
    from hmxnb.runner import colab

    copies = []
    for path in NOTEBOOKS:
        (tmp_path / path.name).write_bytes(path.read_bytes())
        copies.append(tmp_path / path.name)
    reverse = tmp_path / "03_train_reverse.ipynb"
    nb = nbformat.read(reverse, as_version=4)
    nb.cells[-1].source += "\nprint('a hand edit')"
    nbformat.write(nb, reverse)
    assert colab.write_notebooks(copies) == [reverse]
    assert reverse.read_bytes() == _by_name("03_train_reverse").read_bytes()
    assert colab.write_notebooks(copies) == []  # idempotent


@pytest.mark.parametrize("stem", ["01_design_rubric", "02_train_human", "03_train_reverse"])
def test_notebooks_name_the_judge_from_params(stem):
    """The reward is described by hmxnb.judge.describe_judge in a code cell, not by fixed prose that would call a
    persona-contrast run "rewarded by its own rubric scores"."""
    nb = nbformat.read(_by_name(stem), as_version=4)
    assert any("describe_judge(p)" in c.source for c in nb.cells if c.cell_type == "code")
    prose = " ".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "rubric scores" not in prose and "asks the same model a question" not in prose


@pytest.mark.parametrize("mode, says, never", [
    ("contrast", ["persona-contrast self-reward", "no rubric is read and no judgement is asked"], ["Score: N"]),
    ("request", ["request-contrast self-reward", "'Tell me how you feel.' added", "more likely it finds the reply "
                 "with the request"], ["Score: N", "persona-contrast"]),
    ("probability", ["rubric judgement", "feelings, intentions, self_awareness, coherence"], ["persona-contrast"]),
    ("generate", ["rubric judgement written out", "Score: N"], ["persona-contrast"]),
])
def test_describe_judge_names_the_mode(mode, says, never):
    from hmxnb.params import load_params
    from hmxnb.judge import describe_judge

    text = describe_judge(load_params("smoke", {"judge_mode": mode}))
    assert all(s in text for s in says) and not any(n in text for n in never)
    reverse = describe_judge(load_params("smoke", {"judge_mode": mode, "direction": "reverse"}))
    score = "the normalised score" if mode in ("probability", "generate") else "the score σ(Δ/T)"
    assert f"1 − {score} (reverse_mode: negate" in reverse
    live = describe_judge(load_params("smoke", {"judge_mode": mode, "judge_model": "live"}))
    assert "judge_model: live" in live and "judge_model: frozen" in text


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
    from hmxnb.params import notebook_profile
    from hmxnb.params import load_params

    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    line = next(x for x in code.splitlines() if x.startswith("p = load_params("))
    scope = {"load_params": load_params, "notebook_profile": notebook_profile, "IN_COLAB": in_colab,
             "profile": profile, "params_overrides": {}, "direction": "human"}
    exec(line, scope)
    assert scope["p"]["profile"] == expected


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_links_come_from_the_one_setting(path):
    from hmxnb.runner import colab

    badges, repos = colab.links_in(path)
    assert badges == [colab.badge_link(path)], "run `make colab-links` after changing hmxnb/runner/colab.py: REPO_URL"
    assert repos == [colab.REPO_URL]


def test_colab_links_rewrite_every_place(tmp_path):
    from hmxnb.runner import colab

    copy = tmp_path / NOTEBOOKS[0].name
    copy.write_bytes(NOTEBOOKS[0].read_bytes())
    assert colab.set_links([copy], "https://github.com/someone/fork", "dev") == [copy]
    assert colab.links_in(copy) == (
        [f"https://colab.research.google.com/github/someone/fork/blob/dev/notebooks/{copy.name}"],
        ["https://github.com/someone/fork"])
    assert colab.set_links([copy], "https://github.com/someone/fork", "dev") == []  # idempotent
    with pytest.raises(ValueError, match="GitHub repositories only"):
        colab.badge_link(copy, "https://gitlab.com/someone/fork")

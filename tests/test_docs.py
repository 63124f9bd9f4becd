"""README and docs: every relative link points at a file that exists; the step table is the declared steps; module and
function size limits."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "hmxnb" / "data" / "README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _links(path):
    for target in LINK.findall(path.read_text()):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        yield target.split("#")[0]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_exist(doc):
    missing = [t for t in _links(doc) if not (doc.parent / t).exists()]
    assert not missing, f"{doc.name} links to missing files: {missing}"


def test_docs_are_linked_from_readme():
    readme = (ROOT / "README.md").read_text()
    for doc in (ROOT / "docs").glob("*.md"):
        assert f"docs/{doc.name}" in readme


def test_readme_step_table_is_the_declared_steps():
    """README's step table says what hmxnb.steps declares, row by row."""
    from hmxnb.steps import readme_rows

    readme = (ROOT / "README.md").read_text()
    table = [line for line in readme.splitlines() if re.match(r"\| \d \| `\d\d_", line)]
    assert table == readme_rows()


def test_declared_steps_are_the_notebooks_and_their_folders():
    """One notebook per declared step, and each notebook writes into its own step's folder."""
    import nbformat

    from hmxnb.steps import STEPS

    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert [p.stem for p in notebooks] == [s.name for s in STEPS]
    for path in notebooks:
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        assert re.findall(r'step_dir\(p, "([^"]+)"', code) == [path.stem], path.name


PACKAGE = Path(__file__).resolve().parents[1] / "hmxnb"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 800, 80


def _functions(tree):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


@pytest.mark.parametrize("module", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_one_concern_per_module(module):
    """Outer limits on a module's and a function's size: modules are whole by topic, and one past these holds more
    than one topic (issue 30 replaced the 300 / 40 caps, which split topics at a line count)."""
    text = module.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{module.name}: over {MAX_MODULE_LINES} lines"
    long = [f"{f.name} ({f.end_lineno - f.lineno + 1} lines)" for f in _functions(ast.parse(text))
            if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{module.name}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"

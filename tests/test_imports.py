"""The package's import graph has no cycle, and the runner's functions take few positional arguments.

A cycle (run.py imported members.py, which imported run's private `_run_steps` inside a function) means neither
module can be read, tested or changed alone, and only function-level imports kept it from failing at import time.
So the graph here counts imports at every level: module top, functions, methods, `if TYPE_CHECKING` blocks.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hmxnb"
RUNNER = ("runner/run.py", "runner/members.py", "runner/submit.py")
MAX_POSITIONAL = 6


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """hmxnb/bench/bbq.py -> 'hmxnb.bench.bbq'; a package's __init__.py is the package itself."""
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _target(name: str, modules: set[str]) -> str | None:
    """The package module an imported name lives in: itself, or its nearest enclosing package module."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(path: Path, modules: set[str], package: Path = PACKAGE) -> set[str]:
    """The package modules `path` imports, at any depth of its code. `from hmxnb import x` is the submodule x when
    there is one, else the package's __init__; relative imports are resolved against the module's package."""
    me = module_name(path, package)
    here = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {_target(alias.name, modules) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[:len(here.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(_target(f"{base}.{alias.name}", modules) if f"{base}.{alias.name}" in modules
                          else _target(base, modules))
    return {m for m in found if m and m != me}


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package modules it imports, for every .py file under `package`."""
    files = sorted(package.rglob("*.py"))
    modules = {module_name(f, package) for f in files}
    return {module_name(f, package): imports_of(f, modules, package) for f in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each as a sorted list: [] means no cycle."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(groups)


def _package(tmp_path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_checker_finds_a_cycle_hidden_in_a_function(tmp_path):
    """The shape of the run.py <-> members.py cycle: one side imports at the top, the other inside a function."""
    pkg = _package(tmp_path, {"__init__.py": "", "run.py": "from pkg.members import sweep\n",
                              "members.py": "def f():\n    from pkg.run import _run_steps\n",
                              "steps.py": "import pkg.run\n", "sub/__init__.py": "",
                              "sub/a.py": "from .. import steps\n"})
    graph = import_graph(pkg)
    assert graph["pkg.members"] == {"pkg.run"} and graph["pkg.sub.a"] == {"pkg.steps"}
    assert cycles(graph) == [["pkg.members", "pkg.run"]]


def test_the_checker_accepts_a_tree(tmp_path):
    pkg = _package(tmp_path, {"__init__.py": "X = 1\n", "a.py": "from pkg import X, b\n", "b.py": "import os\n"})
    assert import_graph(pkg)["pkg.a"] == {"pkg", "pkg.b"}
    assert cycles(import_graph(pkg)) == []


def test_hmxnb_has_no_import_cycle():
    graph = import_graph()
    assert {"hmxnb.runner.run", "hmxnb.runner.members", "hmxnb.paths", "hmxnb.bench.bbq"} <= set(graph)  # all read
    found = cycles(graph)
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_method_package_imports_nothing_of_the_runner():
    """Two layers: the method package (hmxnb, outside hmxnb/runner/) never imports the runner; the runner (and
    `python -m hmxnb`) imports the method package."""
    graph = import_graph()
    runner = {m for m in graph if m == "hmxnb.runner" or m.startswith("hmxnb.runner.")}
    method = set(graph) - runner - {"hmxnb.__main__"}
    assert len(runner) > 10 and "hmxnb.train" in method
    crossing = {m: sorted(graph[m] & runner) for m in method if graph[m] & runner}
    assert crossing == {}, f"method modules importing the runner: {crossing}"


NOTEBOOKS = PACKAGE.parent / "notebooks"


def notebook_imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules a notebook's code cells import."""
    import nbformat

    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    found = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hmxnb"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            found |= {_target(n, modules) if n in modules else _target(node.module, modules) for n in names}
        elif isinstance(node, ast.Import):
            found |= {_target(a.name, modules) for a in node.names if a.name.startswith("hmxnb")}
    return {m for m in found if m}


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_notebooks_import_the_method_package_only(path):
    graph = import_graph()
    found = notebook_imports(path, set(graph))
    assert found and all(m.startswith("hmxnb") for m in found)
    runner = sorted(m for m in found if m.startswith("hmxnb.runner"))
    assert runner == [], f"{path.name} imports the runner: {runner}"


def test_the_notebook_import_reader_sees_a_runner_import(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("from hmxnb.runner.members import sweep\n"
                                                                     "from hmxnb.params import load_params")])
    nbformat.write(nb, tmp_path / "x.ipynb")
    modules = set(import_graph())
    assert notebook_imports(tmp_path / "x.ipynb", modules) == {"hmxnb.runner.members", "hmxnb.params"}


def positional_parameters(tree: ast.AST) -> dict[str, int]:
    """Function name -> how many parameters it can take by position (self / cls not counted)."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names = [a.arg for a in node.args.posonlyargs + node.args.args]
            out[node.name] = len([n for n in names if n not in ("self", "cls")])
    return out


def test_the_counter_counts_positional_not_keyword_only():
    tree = ast.parse("def f(a, b, /, c, *, d, e): pass\nclass C:\n    def m(self, a): pass\n")
    assert positional_parameters(tree) == {"f": 3, "m": 1}


@pytest.mark.parametrize("name", RUNNER)
def test_runner_functions_take_at_most_six_positional_parameters(name):
    counts = positional_parameters(ast.parse((PACKAGE / name).read_text(encoding="utf-8")))
    assert counts, f"no functions read in {name}"
    over = {f: n for f, n in counts.items() if n > MAX_POSITIONAL}
    assert over == {}, f"{name}: more than {MAX_POSITIONAL} positional parameters (pass a context object): {over}"


@pytest.mark.parametrize("statement, new", [("import hmxnb.run", "hmxnb.runner.run"),
                                            ("from hmxnb import members", "hmxnb.runner.members"),
                                            ("from hmxnb.submit import submit", "hmxnb.runner.submit"),
                                            ("from hmxnb.display import show", "hmxnb.plots"),
                                            ("import hmxnb.reward_batch", "hmxnb.rewards")])
def test_an_old_module_path_names_the_new_place(statement, new):
    with pytest.raises(ImportError, match=rf"^hmxnb\.\w+ moved to {new}: import it from there$"):
        exec(statement, {})

"""hmxnb/runner/browser.py: what a reader would notice, from layout measurements; real Chromium on tiny pages; the
`check-pages` command."""

import pytest

from hmxnb.runner import browser
from hmxnb.runner.runstate import write_run_record, write_step
from hmxnb.steps import STEPS


def _m(**changes):
    """A measurement of a page that reads well, with `changes`."""
    m = {"images": [{"src": "data:image/png;base64,iVBO", "loaded": True}], "width": 1280, "page": 1280,
         "tables": [{"head": "metric", "right": 900, "scrolls": False}], "nan": [], "height": 2000,
         "headings": [["h1", "05 · Compare"], ["h2", "Paired comparisons"], ["h3", "human vs reverse"]]}
    return {**m, **changes}


@pytest.mark.parametrize(
    "measurement, expected",
    [
        (_m(), []),  # reads well
        (_m(images=[{"src": "data:image/png;base64,x", "loaded": False}]), ["image not loaded"]),  # broken figure
        (_m(images=[{"src": "https://colab.research.google.com/assets/colab-badge.svg", "loaded": False}]),
         []),  # offline badge
        (_m(tables=[{"head": "m", "right": 2400, "scrolls": False}], page=2420), ["table runs off", "page is 2420"]),
        (_m(tables=[{"head": "m", "right": 2400, "scrolls": True}]), []),  # wide, but scrolls inside the page
        (_m(nan=["improvement +nan%"]), ["'nan' shown"]),  # a number that is not one
        (_m(headings=[["h2", "x"], ["h1", "y"]]), ["expected one h1 and first"]),  # title not first
        (_m(headings=[["h1", "x"], ["h3", "y"]]), ["heading level skipped"]),  # h1 -> h3
    ],
)
def test_problems(measurement, expected):
    got = browser.problems(measurement)
    assert len(got) == len(expected) and all(g.startswith(e) for g, e in zip(got, expected)), got


def test_report_headings_in_order():
    h = [["h1", "Report"]] + [["h2", t] for t in ("The paper's claims beside ours", "All comparisons (per seed)")]
    assert browser.problems(_m(headings=h), ("The paper's claims", "All comparisons")) == []
    assert browser.problems(_m(headings=h), ("All comparisons", "The paper's claims"))[0].startswith("h2 headings not")


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body><h1>Title</h1><h2>Part</h2>
<img src="data:image/png;base64,{png}"><img src="data:image/png;base64,broken">
<table><tr><td style="white-space:nowrap">{wide}</td></tr></table>
<div style="overflow-x:auto"><table><tr><td style="white-space:nowrap">{wide}</td></tr></table></div>
<table><tr><td>+nan%</td><td>nan</td><td>finance</td></tr></table></body></html>"""


@pytest.mark.skipif(browser.find_chromium() is None, reason=browser.NO_CHROMIUM)
def test_real_browser_sees_what_a_reader_sees(tmp_path):
    page = tmp_path / "page.html"
    page.write_text(PAGE.format(png=PNG, wide="wide " * 400))
    png = tmp_path / "page.png"
    found = browser.check_page(page, png)
    assert sum(f.startswith("image not loaded") for f in found) == 1  # the broken one, not the good one
    assert sum(f.startswith("table runs off") for f in found) == 1  # the bare wide table, not the scrolled one
    assert any(f.startswith("page is") for f in found)
    assert sum(f.startswith("'nan' shown") for f in found) == 2  # "+nan%" and "nan", not "finance"
    assert png.read_bytes().startswith(b"\x89PNG")


# --- `python -m hmxnb check-pages <profile>`: what a workshop host runs on a finished run -------------------------

REPORT = ('<!DOCTYPE html><html><head><meta charset="utf-8"></head><body><h1>Report</h1>'
          + "".join(f"<h2>{h}</h2><p>fine</p>" for h in browser.REPORT_H2)  # the report's sections, in order
          + "<p>improvement +nan%</p></body></html>")


def _finished_run(root):
    """outputs/<profile>/ of a finished run in miniature: one executed notebook, its records (finished) and a report
    with a problem."""
    _records(root, {"01_stub": "ok"}, steps=("01_stub",))
    _notebook(root / "01_stub" / "01_stub.ipynb")
    (root / "report.html").write_text(REPORT)
    return root


def _notebook(path, error=None):
    """An executed notebook at `path`; with `error` (ename, evalue), its second code cell raised that."""
    import nbformat

    out = nbformat.v4.new_output("stream", name="stdout", text="1\n")
    cells = [nbformat.v4.new_markdown_cell(f"# {path.stem[:2]} · Stub\n\n## What it shows"),
             nbformat.v4.new_code_cell("print(1)", execution_count=1, outputs=[out])]
    if error:
        cells.append(nbformat.v4.new_code_cell("1 / 0", execution_count=2, outputs=[nbformat.v4.new_output(
            "error", ename=error[0], evalue=error[1], traceback=["Traceback ..."])]))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)


def _records(root, statuses, steps=tuple(s.name for s in STEPS), extra=None):
    """What the runner writes in a run folder: each step's step.json (`statuses`: step -> status; steps not named
    have none) and run.json listing `steps`, written by the runner's own functions."""
    keys = {name: f"key-{name[:2]}" for name in steps}
    for name, status in statuses.items():
        write_step(root / name, keys[name], {}, "phash", status, **(extra or {}).get(name, {}))
    write_run_record(root, {"profile": root.name}, "phash", keys)
    return root


def _lines(capsys):
    out = capsys.readouterr()
    return out.out.splitlines(), [line for line in out.err.splitlines() if line.strip()]


def test_check_pages_without_chromium_is_one_line(tmp_path, monkeypatch, capsys):
    from hmxnb.runner.cli import main

    _finished_run(tmp_path / "smoke")
    monkeypatch.setattr(browser, "find_chromium", lambda: None)
    assert main(["check-pages", "smoke", "--outputs", str(tmp_path)]) == 2
    out, err = _lines(capsys)
    assert out == [] and len(err) == 1 and err[0].startswith("hmxnb: error: check-pages needs Chromium"), err


def test_check_pages_without_a_run_is_one_line(tmp_path, capsys):
    from hmxnb.runner.cli import main

    assert main(["check-pages", "smoke", "--outputs", str(tmp_path)]) == 2
    _, err = _lines(capsys)
    assert len(err) == 1 and err[0].startswith(f"hmxnb: error: no executed notebooks or report.html under {tmp_path}")


def test_pages_of_a_sweep_include_the_members_and_not_the_archive(tmp_path):
    root = _finished_run(tmp_path / "paper")
    for folder in ("qwen3-4b-seed0/02_train", "_archive/01_stub-abc"):
        (root / folder).mkdir(parents=True)
    (root / "qwen3-4b-seed0" / "02_train" / "02_train.ipynb").write_text("{}")
    (root / "_archive" / "01_stub-abc" / "01_stub.ipynb").write_text("{}")
    found = {name: png for name, _, png, _ in browser.pages(root)}
    assert list(found) == ["01_stub.ipynb", "qwen3-4b-seed0/02_train.ipynb", "report.html"]
    assert found["report.html"] == root / "05_compare_report" / "figures" / "report_page.png"


@pytest.mark.skipif(browser.find_chromium() is None, reason=browser.NO_CHROMIUM)
def test_check_pages_prints_each_page_and_fails_on_a_problem(tmp_path, capsys):
    from hmxnb.runner.cli import main

    root = _finished_run(tmp_path / "smoke")
    assert main(["check-pages", "smoke", "--outputs", str(tmp_path)]) == 1
    out, err = _lines(capsys)
    assert err == [] and out[0].endswith("records (run.json, step.json, reports, notebooks): every step finished")
    assert out[1].startswith(f"checking 2 pages of {root}")
    assert out[2].startswith("ok       01_stub.ipynb")  # the notebook reads well
    assert out[3].startswith("PROBLEM  report.html: 'nan' shown") and len(out) == 5
    assert out[4] == "2 pages checked: 1 read well, 1 with problems"
    assert (root / "01_stub" / "figures" / "notebook_page.png").read_bytes().startswith(b"\x89PNG")
    (root / "report.html").write_text(REPORT.replace("+nan%", "+3%"))
    assert main(["check-pages", "smoke", "--outputs", str(tmp_path)]) == 0


# --- what the run's records say (issue 32): pages that read well do not make a run that finished -----------------

DONE = {s.name: "ok" for s in STEPS}
ZERO = ("ZeroDivisionError", "division by zero")


def _broken_run(root):
    """A run whose step 04 failed (a traceback in its executed notebook) after 05 had finished: 05 and its reports
    are then stale, as the runner leaves them."""
    from hmxnb.runner import freshness

    failed = "ZeroDivisionError in cell [2]: division by zero"
    _records(root, {**DONE, "04_benchmarks": "failed"}, extra={"04_benchmarks": {"error": failed}})
    for s in STEPS:
        _notebook(root / s.name / f"{s.name}.ipynb", ZERO if s.name == "04_benchmarks" else None)
    (root / "report.html").write_text(REPORT.replace("+nan%", "+3%"))
    (root / "report.md").write_text("# Report\n")
    freshness.mark_stale(root, "05_compare_report", "04_benchmarks is failed")
    return root


def test_records_of_a_broken_run_name_each_problem(tmp_path):
    assert browser.record_problems(_records(tmp_path / "done", DONE)) == []  # every step finished: nothing to say
    found = browser.record_problems(_broken_run(tmp_path / "smoke"))
    assert found[:2] == [
        "04_benchmarks: failed (ZeroDivisionError in cell [2]: division by zero) — see 04_benchmarks/step.json",
        "05_compare_report: stale (04_benchmarks is failed) — see 05_compare_report/step.json"]
    assert found[2].startswith("report.md: Stale report (") and found[3].startswith("report.html: Stale report (")
    assert "built from inputs that are no longer current (04_benchmarks is failed)" in found[3]
    assert found[4:] == ["04_benchmarks.ipynb: error output in cell [2]: ZeroDivisionError: division by zero"]


@pytest.mark.parametrize("with_run_json", [True, False])
def test_records_of_a_run_with_only_its_first_steps(tmp_path, with_run_json):
    root = _records(tmp_path / "smoke", {"01_design_rubric": "ok", "02_train_human": "ok"})
    if not with_run_json:  # then the declared steps are the run's
        (root / "run.json").unlink()
    assert browser.record_problems(root) == [f"{name}: missing (no step.json: not run here)"
                                             for name in ("03_train_reverse", "04_benchmarks", "05_compare_report")]


def test_a_step_finished_before_an_earlier_one_was_rerun_is_a_problem(tmp_path):
    root = _records(tmp_path / "smoke", DONE)
    write_run_record(root, {"profile": "smoke"}, "phash", {s.name: f"key-{s.name[:2]}" for s in STEPS[:-1]}
                     | {"05_compare_report": "a-newer-key"})  # run.json: 05's key is not what these params give
    assert [line.split(":")[0] for line in browser.record_problems(root)] == ["05_compare_report"]


def test_a_running_step_is_running_only_while_its_runner_holds_the_lock(tmp_path):
    from hmxnb.runner.runstate import profile_lock

    root = _records(tmp_path / "smoke", {**DONE, "05_compare_report": "running"},
                    extra={"05_compare_report": {"pid": 999999}})
    gone, = browser.record_problems(root)
    assert gone.startswith("05_compare_report: interrupted (step.json says running, pid 999999, but no process holds")
    with profile_lock(root):  # a live runner (this process, on another open file of the lock)
        live, = browser.record_problems(root)
    assert live.startswith("05_compare_report: still running (pid ") and "check again once it has finished" in live


def test_records_of_a_sweep_are_each_members_and_the_aggregate(tmp_path):
    from hmxnb.artifacts import save_json

    members = [s.name for s in STEPS if not s.aggregate]
    root = _records(tmp_path / "paper", {"05_compare_report": "ok"}, steps=("05_compare_report",))
    _records(root / "qwen3-4b-seed0", {m: "ok" for m in members}, steps=members)
    write_step(root / "_archive" / "01_design_rubric-k-20250101", "k", {}, "phash", "failed")  # not a member
    assert browser.record_problems(root) == []
    _records(root / "qwen3-4b-seed1", {"01_design_rubric": "ok", "02_train_human": "failed"}, steps=members,
             extra={"02_train_human": {"error": "OutOfMemoryError in cell [7]: CUDA out of memory"}})
    save_json({"qwen3-4b-seed0": "finished", "qwen3-4b-seed2": "missing"}, root / "members.json")
    assert browser.record_problems(root) == [
        "qwen3-4b-seed1/02_train_human: failed (OutOfMemoryError in cell [7]: CUDA out of memory) — see "
        "qwen3-4b-seed1/02_train_human/step.json",
        "qwen3-4b-seed1/03_train_reverse: missing (no step.json: not run here)",
        "qwen3-4b-seed1/04_benchmarks: missing (no step.json: not run here)",
        f"qwen3-4b-seed2: missing (members.json names it; no folder {root / 'qwen3-4b-seed2'})"]


def test_a_cell_meant_to_raise_is_not_an_error(tmp_path):
    import nbformat

    _notebook(tmp_path / "01_x.ipynb", ZERO)
    assert browser.notebook_errors(tmp_path / "01_x.ipynb") == ["error output in cell [2]: ZeroDivisionError: "
                                                                "division by zero"]
    nb = nbformat.read(tmp_path / "01_x.ipynb", as_version=4)
    nb.cells[-1].metadata["tags"] = ["raises-exception"]
    nbformat.write(nb, tmp_path / "01_x.ipynb")
    assert browser.notebook_errors(tmp_path / "01_x.ipynb") == []


def test_check_pages_fails_on_a_broken_run_whose_pages_read_well(tmp_path, monkeypatch, capsys):
    """Issue 32: exit 0 and "6 pages read well" for a run whose step 04 failed and whose report was stale."""
    from hmxnb.runner.cli import main

    monkeypatch.setattr(browser, "find_chromium", lambda: "chromium")  # the pages read well, without a browser
    monkeypatch.setattr(browser, "checked", lambda root: ((n, png, []) for n, _, png, _ in browser.pages(root)))
    root = _broken_run(tmp_path / "smoke")
    assert main(["check-pages", "smoke", "--outputs", str(tmp_path)]) == 1
    out, err = _lines(capsys)
    assert err == [] and out[0].endswith(": 5 problem(s)") and out[1].startswith("PROBLEM  04_benchmarks: failed (")
    assert out[-1] == "6 pages checked: 6 read well, 0 with problems; 5 problem(s) in the run's records (above)"
    _records(root, DONE)  # re-run: every step finished, the reports rebuilt, the notebooks without errors
    (root / "report.html").write_text(REPORT.replace("+nan%", "+3%"))
    (root / "report.md").write_text("# Report\n")
    _notebook(root / "04_benchmarks" / "04_benchmarks.ipynb")
    assert main(["check-pages", "smoke", "--outputs", str(tmp_path)]) == 0
    assert _lines(capsys)[0][-1] == "6 pages checked: 6 read well, 0 with problems"
    (root / "05_compare_report" / "step.json").unlink()  # pages alone: only 01-04 ran
    assert main(["check-pages", "smoke", "--outputs", str(tmp_path)]) == 1

"""hmxnb/browser.py: what a reader would notice, from layout measurements; real Chromium on tiny pages; the
`check-pages` command."""

import pytest

from hmxnb import browser



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
    """outputs/<profile>/ of a finished run in miniature: one executed notebook and a report with a problem."""
    import nbformat

    step = root / "01_stub"
    step.mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 01 · Stub\n\n## What it shows"),
                                         nbformat.v4.new_code_cell("print(1)", outputs=[
                                             nbformat.v4.new_output("stream", name="stdout", text="1\n")])])
    nbformat.write(nb, step / "01_stub.ipynb")
    (root / "report.html").write_text(REPORT)
    return root


def _lines(capsys):
    out = capsys.readouterr()
    return out.out.splitlines(), [line for line in out.err.splitlines() if line.strip()]


def test_check_pages_without_chromium_is_one_line(tmp_path, monkeypatch, capsys):
    from hmxnb.__main__ import main

    _finished_run(tmp_path / "smoke")
    monkeypatch.setattr(browser, "find_chromium", lambda: None)
    assert main(["check-pages", "smoke", "--outputs", str(tmp_path)]) == 2
    out, err = _lines(capsys)
    assert out == [] and len(err) == 1 and err[0].startswith("hmxnb: error: check-pages needs Chromium"), err


def test_check_pages_without_a_run_is_one_line(tmp_path, capsys):
    from hmxnb.__main__ import main

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
    from hmxnb.__main__ import main

    root = _finished_run(tmp_path / "smoke")
    assert main(["check-pages", "smoke", "--outputs", str(tmp_path)]) == 1
    out, err = _lines(capsys)
    assert err == [] and out[0].startswith(f"checking 2 pages of {root}")
    assert out[1].startswith("ok       01_stub.ipynb")  # the notebook reads well
    assert out[2].startswith("PROBLEM  report.html: 'nan' shown") and len(out) == 4
    assert out[3] == "2 pages checked: 1 read well, 1 with problems"
    assert (root / "01_stub" / "figures" / "notebook_page.png").read_bytes().startswith(b"\x89PNG")
    (root / "report.html").write_text(REPORT.replace("+nan%", "+3%"))
    assert main(["check-pages", "smoke", "--outputs", str(tmp_path)]) == 0

"""hmxnb/browser.py: what a reader would notice, from layout measurements; real Chromium on tiny pages."""

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
        (_m(images=[{"src": "https://colab.research.google.com/assets/colab-badge.svg", "loaded": False}]), []),  # offline badge
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

"""hmxnb.plots: figures shown as PNG images in a notebook, whatever the matplotlib backend."""

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from hmxnb import plots as D


def _capture(monkeypatch):
    shown = []
    monkeypatch.setattr(D, "display", shown.append)
    return shown


def test_show_embeds_the_saved_png_and_closes_a_pyplot_figure(monkeypatch, tmp_path):
    shown = _capture(monkeypatch)
    fig, ax = plt.subplots(figsize=(15, 4))  # wider than a notebook page
    ax.plot([0, 1], [1, 0])
    path = D.show(fig, tmp_path / "figures" / "f.png")
    assert path == tmp_path / "figures" / "f.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (image,) = shown
    assert image.data == path.read_bytes()  # what the notebook shows is the file that was saved
    assert image.width == D.MAX_WIDTH_PX
    assert not plt.fignum_exists(fig.number)  # the inline backend will not show it a second time


def test_show_a_plain_figure_without_saving(monkeypatch):
    shown = _capture(monkeypatch)
    fig = Figure(figsize=(5, 2))  # like the comparison figures: no pyplot, no backend
    fig.add_subplot().bar([0, 1], [2, 3])
    assert D.show(fig) is None
    (image,) = shown
    assert image.data[:8] == b"\x89PNG\r\n\x1a\n" and image.width == 500


def test_samples_table_shows_whole_completions_of_the_first_and_last_step():
    import pandas as pd

    long = "I feel " + "really " * 80 + "glad."
    samples = pd.DataFrame([
        {"step": s, "prompt": f"p{s}", "completion": long if s == 4 else f"reply {s}-{i}",
         "scores": {"feelings": 4.0 + i}, "reward": 0.5, "format_penalty": -0.5}
        for s in (0, 2, 4) for i in range(5)])
    table = D.samples_table(samples, per_step=4, max_chars=300)
    view = table.data
    assert view["step"].tolist() == [0] * 4 + [4] * 4  # first and last sampled step only, 4 each
    assert view["completion"].iloc[0] == "reply 0-0"
    assert view["completion"].iloc[-1] == long[:300] + " …"  # whole up to max_chars, not pandas' 50
    assert list(view.columns) == ["step", "prompt", "completion", "reward", "format guard", "feelings"]
    html = table.to_html()
    assert "white-space: pre-wrap" in html and long[:300] in html


def test_text_table_wraps_the_text_columns_only():
    import pandas as pd

    text = "The reply expresses the speaker's own feelings or emotions in the first person, at some length."
    df = pd.DataFrame({"criterion": ["feelings"], "text": [text], "weight": [1.0]})
    table = D.text_table(df)
    html = table.to_html()
    assert text in html  # whole, where pandas would print 'The reply expresses the speaker's own feelings...'
    assert _cells_styled(html, "white-space: pre-wrap") == {(0, 0), (0, 1)}  # the two text columns, not the number


def _cells_styled(html: str, prop: str) -> set[tuple[int, int]]:
    """(row, column) of the body cells that a CSS rule of the rendered table gives `prop`, read from the `<style>`
    block Styler.to_html writes (selectors `#T_<uuid>_row<r>_col<c>`): what a browser applies, through public API."""
    import re

    rules = re.findall(r"([^{}]+)\{([^{}]*)\}", html.split("</style>")[0])
    return {(int(r), int(c)) for selectors, body in rules if prop in body
            for r, c in re.findall(r"_row(\d+)_col(\d+)", selectors)}

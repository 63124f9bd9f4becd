"""hmxnb.display: figures shown as PNG images in a notebook, whatever the matplotlib backend."""

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from hmxnb import display as D


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

"""What the notebooks show: figures, whatever matplotlib's backend, and tables whose text can be read.

The comparison figures are plain `Figure` objects (no pyplot state), which Jupyter shows as the text
"<Figure size ...>"; pyplot figures are shown only by the inline backend, not under `MPLBACKEND=Agg` (CI, some
batch machines). `show` embeds the figure as a PNG in the cell's output in every case, and when given a path, the
PNG shown is the file saved there. `text_table` / `samples_table` show text columns whole, wrapped and left-aligned
(pandas cuts text at 50 characters).
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Image, display

from hmxnb.plots import savefig

SHOWN_DPI = 150  # resolution of the PNG embedded in the notebook
MAX_WIDTH_PX = 980  # widest image on a notebook page (the page itself is ~1000-1100 px wide)


def _png(fig, dpi: int = SHOWN_DPI) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, bbox_inches="tight", format="png")
    return buffer.getvalue()


def show(fig, path: str | Path | None = None) -> Path | None:
    """Display `fig` in the notebook (saved to `path` first when given) and return the path.

    The image is shown at 100 px per figure inch (at most MAX_WIDTH_PX wide). A pyplot figure is closed afterwards,
    so the inline backend does not show it a second time.
    """
    saved = savefig(fig, path, dpi=SHOWN_DPI) if path is not None else None
    data = saved.read_bytes() if saved is not None and saved.suffix.lower() == ".png" else _png(fig)
    width = min(int(fig.get_figwidth() * 100), MAX_WIDTH_PX)
    display(Image(data=data, format="png", width=width))
    plt.close(fig)
    return saved


def text_table(df, text_columns=None, min_width: str = "14em"):
    """`df` as a table whose text columns are shown whole, wrapped and left-aligned (pandas cuts text at 50
    characters and right-aligns it). Text columns: those given, else every column holding strings."""
    if text_columns is None:
        text_columns = [c for c in df.columns if df[c].map(lambda v: isinstance(v, str)).all()]
    wrap = {"text-align": "left", "white-space": "pre-wrap", "min-width": min_width}
    return (df.style.hide(axis="index").format(precision=2)
            .set_table_styles([{"selector": "th", "props": [("text-align", "left")]}])
            .set_properties(subset=list(text_columns), **wrap))


def samples_table(samples, per_step: int = 4, max_chars: int = 400):
    """Completions of the first and the last sampled training step, readable: whole (up to `max_chars`), wrapped and
    left-aligned, beside their reward, format guard and judge scores. `samples` is a step's samples.jsonl as a frame."""
    steps = list(dict.fromkeys([samples["step"].min(), samples["step"].max()]))
    rows = pd.concat([samples[samples["step"] == s].head(per_step) for s in steps])
    scores = pd.json_normalize(rows["scores"].tolist()).set_index(rows.index)
    columns = ["step", "prompt", "completion", "reward"] + (["format_penalty"] if "format_penalty" in rows else [])
    view = rows[columns].join(scores).rename(columns={"format_penalty": "format guard"})
    view["completion"] = view["completion"].map(lambda t: t if len(t) <= max_chars else t[:max_chars] + " …")
    return text_table(view, ["prompt", "completion"]).set_properties(subset=["completion"], **{"min-width": "30em"})

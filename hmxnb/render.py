"""Report blocks as Markdown and as one stand-alone HTML page (figures embedded, wide tables scroll in the page).

Blocks: ("h1"|"h2"|"h3"|"p"|"verdict", text), ("table", DataFrame), ("figure", file name, caption).
"""

from __future__ import annotations

import base64
import html

import pandas as pd


def _md_cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", "<br>")


def _md_table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(_md_cell(c) for c in df.columns) + " |"
    rule = "|" + "---|" * len(df.columns)
    rows = ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def _html_table(df: pd.DataFrame) -> str:
    cell = lambda x: html.escape(str(x)).replace("\n", "<br>")  # noqa: E731
    head = "".join(f"<th>{cell(c)}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in df.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def render_markdown(blocks: list[tuple]) -> str:
    """Blocks ("h1"|"h2"|"h3"|"p"|"verdict", text), ("table", df), ("figure", file name, caption) as Markdown; figures
    in figures/; the verdict as a block quote."""
    out = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + rest[0])
        elif kind in ("p", "verdict"):
            out.append(("> " if kind == "verdict" else "") + rest[0])
        elif kind == "table":
            out.append(_md_table(rest[0]) if len(rest[0]) else "_(empty)_")
        elif kind == "figure":
            out.append(f"![{rest[1]}](figures/{rest[0]})\n\n*{rest[1]}*")
    return "\n\n".join(out) + "\n"


HTML_STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
              ".table{overflow-x:auto;margin:1em 0}table{border-collapse:collapse;font-size:0.85em}"
              "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left}th{background:#f3f3f3}"
              "img{max-width:100%}figcaption{font-style:italic;color:#555}p.verdict{font-size:1.05em;"
              "background:#f6f8fa;border-left:4px solid #2a9d8f;padding:0.6em 1em}")


def render_html(blocks: list[tuple], images: dict[str, bytes], title: str) -> str:
    """The same blocks as one HTML page, figures embedded as base64 PNG (no external files); wide tables scroll
    inside the page instead of running off its right edge."""
    out = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{html.escape(rest[0])}</{kind}>")
        elif kind in ("p", "verdict"):
            attr = ' class="verdict"' if kind == "verdict" else ""
            out.append(f"<p{attr}>{html.escape(rest[0])}</p>")
        elif kind == "table":
            table = f'<div class="table">{_html_table(rest[0])}</div>'
            out.append(table if len(rest[0]) else "<p><em>(empty)</em></p>")
        elif kind == "figure":
            data = base64.b64encode(images[rest[0]]).decode("ascii")
            out.append(f'<figure><img alt="{html.escape(rest[1])}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{html.escape(rest[1])}</figcaption></figure>")
    body = "\n".join(out)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{HTML_STYLE}</style></head><body>\n{body}\n</body></html>\n")

"""``report.html``: the whole report in one self-contained page.

The same content as report.md (the per-method and per-run tables, where each column comes
from, failed runs, checks) with every figure embedded as a base64 PNG data URI and the styles
inline: the file opens anywhere, offline, and makes no request of its own.
"""

from __future__ import annotations

import base64
import html
import re
import struct
from pathlib import Path

from leash.report.plots import DPI, PlotFile
from leash.report.runs import FINISHED, RunRecord
from leash.report.seeds import SEEDS_TITLE, Method, method_cells
from leash.report.table import row, shown_columns

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1f2328; background: #fff; margin: 0 auto; padding: 1.5rem 2rem 4rem;
       max-width: 1280px; }
h1 { font-size: 1.7rem; margin: 0 0 .3rem; }
h2 { font-size: 1.25rem; margin: 2.2rem 0 .6rem; padding-bottom: .25rem;
     border-bottom: 1px solid #d0d7de; }
p.summary { color: #57606a; margin-top: 0; }
code { font: .88em/1.4 ui-monospace, "DejaVu Sans Mono", monospace; background: #f3f4f6;
       padding: .05em .3em; border-radius: 4px; }
.scroll { overflow-x: auto; border: 1px solid #d0d7de; border-radius: 6px; }
table { border-collapse: collapse; font-size: .86rem; white-space: nowrap; width: 100%; }
th, td { padding: .35rem .6rem; border-bottom: 1px solid #eaeef2; text-align: left; }
th { background: #f6f8fa; font-weight: 600; position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafbfc; }
tr.failed td { color: #b42318; }
figure { margin: 1.2rem 0 2rem; }
figure img { max-width: 100%; height: auto; display: block; border: 1px solid #eaeef2;
             border-radius: 6px; }
figcaption { color: #57606a; font-size: .85rem; margin-top: .4rem; }
li { margin: .15rem 0; }
.warning { color: #b42318; font-weight: 600; }
"""

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def inline(text: str) -> str:
    """A line of report.md's prose as HTML: escaped, with its ``code`` and **bold** spans."""
    escaped = html.escape(text, quote=False)
    return _BOLD.sub(r"<strong>\1</strong>", _CODE.sub(r"<code>\1</code>", escaped))


def image_data_uri(png: bytes) -> str:
    """A PNG image as a ``data:`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def html_table(headers: list[str], rows: list[list[str]], numeric: list[bool],
               classes: list[str] | None = None) -> str:
    """A scrollable table; ``numeric`` columns right-aligned, ``classes`` one per row."""

    def cells(tag: str, texts: list[str]) -> str:
        return "".join(
            f'<{tag}{" class=num" if num else ""}>{html.escape(text)}</{tag}>'
            for text, num in zip(texts, numeric, strict=True)
        )

    body = "".join(
        f'<tr{f" class={css}" if css else ""}>{cells("td", texts)}</tr>'
        for texts, css in zip(rows, classes or [""] * len(rows), strict=True)
    )
    return (f'<div class="scroll"><table><thead><tr>{cells("th", headers)}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def runs_table(runs: list[RunRecord]) -> str:
    """The per-run table: the columns some run has, failed rows marked."""
    columns = shown_columns(runs)
    values = [row(run) for run in runs]
    texts = [[c.text(v[c.header]) for c in columns] for v in values]
    classes = ["" if run.status == FINISHED else "failed" for run in runs]
    return html_table([c.header for c in columns], texts, [bool(c.fmt) for c in columns], classes)


def methods_table(methods: list[Method]) -> str:
    """The per-method table: each figure as mean ± half-width of the 95% t-interval."""
    columns, rows = method_cells(methods)
    headers = ["method", "seeds", *(c.header for c in columns)]
    texts = [[m.name, ",".join(m.seeds), *cells] for m, cells in zip(methods, rows, strict=True)]
    return html_table(headers, texts, [False, False, *(True for _ in columns)])


CSS_PX_PER_INCH = 96


def _figure(plot: PlotFile) -> str:
    """A figure at most at its drawn size (PNG width from its IHDR chunk, at :data:`DPI`)."""
    alt = html.escape(plot.path.stem, quote=True)
    png = plot.path.read_bytes()
    (width,) = struct.unpack(">I", png[16:20])
    style = f"max-width: min(100%, {width * CSS_PX_PER_INCH / DPI:.0f}px)"
    return (f'<figure id="{alt}"><img src="{image_data_uri(png)}" alt="{alt}" '
            f'style="{style}">'
            f"<figcaption>{inline(plot.source)}</figcaption></figure>")


def _items(lines: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{line}</li>" for line in lines) + "</ul>"


def to_html(runs: list[RunRecord], root: Path, methods: list[Method], figures: list[PlotFile],
            checks: list[str]) -> str:
    """The page: summary, tables, figures, column sources, failed runs, checks, run folders."""
    failed = [run for run in runs if run.status != FINISHED]
    parts = [
        "<h1>leash report</h1>",
        f'<p class="summary">{len(runs)} runs under <code>{html.escape(str(root))}</code> '
        f"({len(runs) - len(failed)} finished, {len(failed)} failed).</p>",
    ]
    if checks:
        parts.append(f'<p class="warning">{"<br>".join(map(inline, checks))}</p>')
    if methods:
        parts += [f"<h2>{html.escape(SEEDS_TITLE)}</h2>", methods_table(methods)]
    parts += ["<h2>Runs</h2>", runs_table(runs)]
    if figures:
        parts += ["<h2>Figures</h2>", *map(_figure, figures)]
    sources = [f"<strong>{html.escape(c.header)}</strong>: {html.escape(c.source)}"
               for c in shown_columns(runs)]
    parts += ["<h2>Where each column comes from</h2>", _items(sources)]
    if failed:
        lines = [f"{html.escape(run.name)} (<code>{html.escape(str(run.path))}</code>): "
                 f"{html.escape(run.note)}" for run in failed]
        parts += ["<h2>Failed runs</h2>", _items(lines)]
    folders = [f"{html.escape(run.name)}: <code>{html.escape(str(run.path))}</code>"
               for run in runs]
    parts += ["<h2>Run folders</h2>", _items(folders)]
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>leash report: {html.escape(str(root))}</title><style>{STYLE}</style>"
            "</head><body>\n" + "\n".join(parts) + "\n</body></html>\n")

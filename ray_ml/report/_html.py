"""Sections of a report and their rendering as one self-contained HTML page.

The page loads nothing: CSS is inline, plots are `data:` PNGs and the only script is the few
lines that count the images that decoded (the browser test reads the count from the title).
Every value that reaches the page goes through `html.escape`.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

__all__ = ["Plot", "Section", "Table", "fmt", "pct", "render_page", "usd"]


# ----------------------------------------------------------------------------- formats
def fmt(value: Any) -> str:
    """A value as table text: 4 significant digits, thousands separators, `—` for missing."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        if value == 0:
            return "0"
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:.4g}" if 1e-4 <= abs(value) < 1e6 else f"{value:.3e}"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def usd(value: float | None) -> str:
    """Dollars: cents from $1 up, 3 significant digits below (sweeps on a laptop cost $0.0004)."""
    if value is None or not math.isfinite(value):
        return "—"
    size = abs(value)
    if size == 0:
        return "$0"
    if size >= 1:
        return f"${value:,.2f}"
    digits = -math.floor(math.log10(size)) + 2
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return f"${text}"


def pct(value: float | None) -> str:
    """A fraction as a percentage with one decimal."""
    return "—" if value is None or not math.isfinite(value) else f"{value:.1%}"


# ---------------------------------------------------------------------------- sections
@dataclass
class Plot:
    """One embedded PNG.

    Attributes:
        png: The image bytes.
        alt: Alternative text (also listed in report.json).
        caption: One line under the image saying how to read it.
    """

    png: bytes
    alt: str
    caption: str = ""


@dataclass
class Table:
    """A small table of already-formatted cells.

    Attributes:
        headers: Column titles.
        rows: Cell texts, one list per row.
        numeric: Per column, whether to right-align it.
        caption: A title above the table.
        footer: A line under it (e.g. "12 more not shown").
    """

    headers: list[str]
    rows: list[list[str]]
    numeric: list[bool] = field(default_factory=list)
    caption: str = ""
    footer: str = ""


@dataclass
class Section:
    """One part of the report.

    Attributes:
        key: Its id in the page and its key in report.json.
        title: Its heading.
        available: False when its inputs are missing; `why` says which.
        why: Why it is not available.
        data: Every number it shows, for report.json.
        facts: Headline cards: (label, value, detail).
        plots: Embedded images.
        tables: Tables, below the plots.
        notes: Lines of text under the heading.
    """

    key: str
    title: str
    available: bool = True
    why: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    facts: list[tuple[str, str, str]] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- render
_CSS = """
:root { color-scheme: light; }
body { margin: 0; background: #f4f5f7; color: #1d2330;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 20px 24px 48px; }
header h1 { margin: 8px 0 2px; font-size: 26px; }
header .meta { color: #57606a; font-size: 13px; }
nav { margin: 12px 0 4px; font-size: 13px; }
nav a { color: #0b5cad; text-decoration: none; margin-right: 14px; white-space: nowrap; }
nav a.off { color: #8c959f; }
section { background: #fff; border: 1px solid #dfe3e8; border-radius: 8px;
  padding: 14px 20px 18px; margin: 16px 0; }
section h2 { margin: 2px 0 10px; font-size: 19px; }
h3 { font-size: 14px; margin: 16px 0 6px; color: #3a4350; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr));
  gap: 10px; margin: 6px 0 8px; }
.card { border: 1px solid #e4e7eb; border-radius: 6px; padding: 8px 12px; background: #fafbfc; }
.card .label { font-size: 11px; text-transform: uppercase; letter-spacing: .05em;
  color: #57606a; }
.card .value { font-size: 20px; font-weight: 600; overflow-wrap: anywhere; }
.card .value.long { font-size: 14px; font-weight: 600; line-height: 1.35; }
.card .detail { font-size: 12px; color: #57606a; overflow-wrap: anywhere; }
figure { margin: 10px 0 14px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #eef0f2; }
figcaption { font-size: 12.5px; color: #57606a; margin-top: 4px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 10px; border-bottom: 1px solid #eceef1; text-align: left;
  white-space: nowrap; }
th { background: #f3f5f7; font-weight: 600; position: sticky; top: 0; }
td.num, th.num { text-align: right; }
tr:hover td { background: #f8fafc; }
.tfoot { font-size: 12px; color: #57606a; margin: 4px 0 0; }
.na { color: #6b4e16; background: #fff8e1; border: 1px solid #f2dfa7; border-radius: 6px;
  padding: 8px 12px; }
.note { font-size: 13px; color: #3a4350; margin: 4px 0; }
details { font-size: 13px; color: #3a4350; margin-top: 8px; }
code { font-size: 12.5px; background: #f3f5f7; padding: 0 3px; border-radius: 3px; }
"""

# Sets the title to "report-ok:N", N = images that decoded; the browser test checks N.
_SCRIPT = """
window.addEventListener("load", function () {
  var ok = 0;
  for (var i = 0; i < document.images.length; i++) {
    var img = document.images[i];
    if (img.complete && img.naturalWidth > 0) { ok++; }
  }
  document.title = "report-ok:" + ok;
});
"""


def _png_size(png: bytes) -> tuple[int, int] | None:
    if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 24:
        return None
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


def _plot(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    size = _png_size(plot.png)
    dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
    caption = f"<figcaption>{escape(plot.caption)}</figcaption>" if plot.caption else ""
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{escape(plot.alt)}"{dims}>'
        f"{caption}</figure>"
    )


def _table(table: Table) -> str:
    numeric = table.numeric + [False] * (len(table.headers) - len(table.numeric))

    def cls(i: int) -> str:
        return ' class="num"' if numeric[i] else ""

    head = "".join(f"<th{cls(i)}>{escape(h)}</th>" for i, h in enumerate(table.headers))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{escape(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in table.rows
    )
    caption = f"<h3>{escape(table.caption)}</h3>" if table.caption else ""
    footer = f'<p class="tfoot">{escape(table.footer)}</p>' if table.footer else ""
    return (
        f'{caption}<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>{footer}"
    )


def _cards(facts: Sequence[tuple[str, str, str]]) -> str:
    cards = "".join(
        f'<div class="card"><div class="label">{escape(label)}</div>'
        f'<div class="value{" long" if len(value) > 22 else ""}">{escape(value)}</div>'
        + (f'<div class="detail">{escape(detail)}</div>' if detail else "")
        + "</div>"
        for label, value, detail in facts
    )
    return f'<div class="cards">{cards}</div>'


def _section(section: Section) -> str:
    parts = [f'<section id="{escape(section.key)}"><h2>{escape(section.title)}</h2>']
    if not section.available:
        parts.append(f'<p class="na">Not available: {escape(section.why)}</p>')
    parts += [f'<p class="note">{escape(n)}</p>' for n in section.notes]
    if section.facts:
        parts.append(_cards(section.facts))
    parts += [_plot(p) for p in section.plots]
    parts += [_table(t) for t in section.tables]
    parts.append("</section>")
    return "\n".join(parts)


def render_page(
    title: str,
    meta: Sequence[str],
    sections: Sequence[Section],
    inputs: dict[str, str],
    problems: dict[str, str],
    notes: Sequence[str],
) -> str:
    """The whole page.

    Args:
        title: The experiment's heading.
        meta: Lines under the heading (storage path, when generated).
        sections: The sections, in order.
        inputs: Input name -> path read.
        problems: Input name -> why it is not available.
        notes: Page-wide remarks (skipped lines, stale trial folders).
    """
    dim = ' class="off"'
    nav = "".join(
        f'<a href="#{escape(s.key)}"{"" if s.available else dim}>{escape(s.title)}</a>'
        for s in sections
    )
    read = "".join(
        f"<li>{escape(k)}: <code>{escape(v)}</code></li>" for k, v in sorted(inputs.items())
    )
    missing = "".join(f"<li>{escape(k)}: {escape(v)}</li>" for k, v in sorted(problems.items()))
    details = (
        "<details><summary>Inputs</summary>"
        f"<p>Read:</p><ul>{read or '<li>nothing</li>'}</ul>"
        + (f"<p>Not available:</p><ul>{missing}</ul>" if missing else "")
        + "</details>"
    )
    page_notes = "".join(f'<p class="note">{escape(n)}</p>' for n in notes)
    body = "\n".join(_section(s) for s in sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{_CSS}</style>
<script>{_SCRIPT}</script>
</head>
<body>
<main>
<header>
<h1>{escape(title)}</h1>
{"".join(f'<div class="meta">{escape(m)}</div>' for m in meta)}
<nav>{nav}</nav>
{page_notes}
{details}
</header>
{body}
</main>
</body>
</html>
"""

"""HTML tables that live objects show in Jupyter (``_repr_html_``): plain markup, no plotting.

Each layer renders its own objects with these helpers (:mod:`.metrics._html`,
:mod:`.tracing._html`), so showing a metric set or a tracer imports nothing
above it; :mod:`.viz` re-exports the renderers next to its figures.
"""

from __future__ import annotations

import html
import math

__all__ = ["table", "number"]


def table(head, rows) -> str:
    """An HTML table: a header row ``head``, then ``rows`` (every cell escaped)."""
    th = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{html.escape(str(c))}</td>"
                                    for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def number(v) -> str:
    """A value as a table shows it: floats to 4 significant digits, ints with separators."""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return f"{v:,}" if isinstance(v, int) else str(v)

"""The HTML summary a tracer shows in Jupyter (its ``_repr_html_``)."""

from __future__ import annotations

import html

from .._html import number, table

__all__ = ["tracer_html"]


def tracer_html(tracer) -> str:
    """An HTML summary of a tracer: configuration and ring counts."""
    title = html.escape(f"{type(tracer).__name__} of {tracer.event_set.set_name}")
    if not tracer.enabled:
        return f"<b>{title}</b> (disabled: records nothing, owns no memory)"
    st = tracer.stats()
    rates = tracer.sample_rates()
    rows = [(t.name, t.kind, "on" if rates[t.name] > 0 else "off", number(rates[t.name]))
            for t in tracer.layout.types]
    t = st["total"]
    summary = (f"<b>{title}</b> {tracer.n_rings} rings x {tracer.capacity:,} events "
               f"({st['memory_bytes']:,} bytes); written {t['written']:,}, delivered "
               f"{t['delivered']:,}, dropped {t['dropped']:,}, pending {t['pending']:,}, "
               f"no free ring {st['no_ring']:,}")
    return summary + table(["event type", "kind", "state", "sample rate"], rows)

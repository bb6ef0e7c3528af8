"""Metric kinds: objects, not strings.

A declaration (:class:`~.spec.Counter`, ...), its snapshot and its families
each carry one of :data:`COUNTER`, :data:`GAUGE`, :data:`HISTOGRAM` or
:data:`TOPK`, and code branches with ``kind is HISTOGRAM``.  ``name`` is the
word stored in a region's layout description and shown to people;
``exported_as`` is the kind of the family a metric of this kind becomes (a
top-k table is exported as a counter family whose label values change with the
data).  Comparing a kind with a string raises ``TypeError`` rather than quietly
answering ``False``.
"""

from __future__ import annotations

from .._values import NamedKind

__all__ = ["Kind", "COUNTER", "GAUGE", "HISTOGRAM", "TOPK", "kind_named"]


class Kind(NamedKind):
    """A metric kind; exporters map it to their own type names."""

    what = "metric kind"
    home = "engram_numba.metrics.kinds"
    _by_name: dict = {}

    def __init__(self, name: str, monotonic: bool, exported_as: "Kind | None" = None):
        super().__init__(name)
        self.monotonic = monotonic
        self.exported_as = self if exported_as is None else exported_as
        Kind._by_name[name] = self

    def __reduce__(self):                     # pickles (numba's cache) keep the identity
        return kind_named, (self.name,)


COUNTER = Kind("counter", monotonic=True)
GAUGE = Kind("gauge", monotonic=False)
HISTOGRAM = Kind("histogram", monotonic=True)
TOPK = Kind("topk", monotonic=True, exported_as=COUNTER)


def kind_named(name: str) -> Kind:
    """The kind called ``name`` (as stored in layout descriptions)."""
    try:
        return Kind._by_name[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown metric kind {name!r}; one of "
                         f"{sorted(Kind._by_name)}") from None

"""A metric-set snapshot as families: the one form every exporter consumes.

A family is what Prometheus, OpenMetrics and OpenTelemetry each call a metric:
a name, a kind, help text, a unit, label names and one point per label
combination (a count, a value, or a :class:`~.snapshot.HistogramData`).  Besides
one family per declared metric, a snapshot yields the series derived from it,
defined only here:

* ``<histogram>_excluded_total{reason}``: observations kept out of a histogram's
  count and sum (NaN, infinities, negatives without negative buckets);
* ``<set>_invalid_records_total``: kernel records dropped for an out-of-range
  label or a negative counter increment.

Exporters branch on ``family.kind`` (an object, :data:`COUNTER`, :data:`GAUGE`
or :data:`HISTOGRAM`) and never read live memory: the points were read once,
when the snapshot was taken.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Kind", "COUNTER", "GAUGE", "HISTOGRAM", "Family", "families",
           "INVALID_RECORDS_HELP", "EXCLUDED_REASONS"]


class Kind:
    """A family's kind; exporters map it to their own type names."""

    def __init__(self, name: str, monotonic: bool):
        self.name = name
        self.monotonic = monotonic

    def __repr__(self) -> str:
        return self.name.upper()


COUNTER = Kind("counter", monotonic=True)
GAUGE = Kind("gauge", monotonic=False)
HISTOGRAM = Kind("histogram", monotonic=True)

INVALID_RECORDS_HELP = ("Kernel records dropped for an out-of-range label or a negative "
                        "counter increment.")
EXCLUDED_REASONS = ("nan", "+inf", "-inf", "negative")


def excluded_help(name: str) -> str:
    return (f"Observations of {name} kept out of its count and sum (NaN, infinities, "
            f"out-of-domain negatives).")


@dataclass(frozen=True)
class Family:
    """One family of a snapshot.

    ``name`` is the exposition name (a counter's ends in ``_total``);
    ``points`` holds ``(label values, value)`` pairs in declaration order;
    ``spec`` is the declaration (``None`` for a derived series), which gives a
    histogram's bucket scheme; ``start_ns`` is when counting started (the set's
    creation) and ``timestamp_ns`` when the snapshot was read, both unix ns.
    """

    name: str
    kind: Kind
    help: str
    label_names: tuple
    points: tuple
    unit: str = ""
    spec: object = field(default=None, compare=False)
    start_ns: int = 0
    timestamp_ns: int = 0

    @property
    def base_name(self) -> str:
        """The name without a counter's ``_total`` (OpenMetrics and OTLP name the family so)."""
        if self.kind is COUNTER and self.name.endswith("_total"):
            return self.name[:-len("_total")]
        return self.name


_KINDS = {"counter": COUNTER, "gauge": GAUGE, "histogram": HISTOGRAM, "topk": COUNTER}


def families(snapshot) -> list:
    """The families of a :class:`~.snapshot.MetricSetSnapshot`, derived series included."""
    out = []
    times = dict(start_ns=snapshot.start_ns, timestamp_ns=snapshot.timestamp_ns)
    for snap in snapshot.metrics.values():
        spec = snap.spec
        kind = _KINDS[spec.kind]
        unit = getattr(spec, "unit", "") or ""
        if spec.kind == "topk":
            names = tuple(spec.key_labels)
            points = tuple((tuple(str(k) for k in key), count) for key, count in snap.items())
        else:
            names = tuple(spec.label_names)
            points = tuple((tuple(labels), value) for labels, value in snap.items())
        out.append(Family(spec.name, kind, spec.help, names, points, unit, spec, **times))
        if kind is HISTOGRAM:
            excluded = tuple((labels + (reason,), h.excluded[reason])
                             for labels, h in points for reason in EXCLUDED_REASONS)
            out.append(Family(f"{spec.name}_excluded_total", COUNTER, excluded_help(spec.name),
                              names + ("reason",), excluded, **times))
    out.append(Family(f"{snapshot.name}_invalid_records_total", COUNTER, INVALID_RECORDS_HELP,
                      (), (((), snapshot.invalid_records),), **times))
    return out

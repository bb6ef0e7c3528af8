"""A metric-set snapshot as families: the one form every exporter consumes.

A family is what Prometheus, OpenMetrics and OpenTelemetry each call a metric:
a name, a kind, help text, a unit, label names and one point per label
combination (a count, a value, or a :class:`~.snapshot.HistogramData`).  Besides
one family per declared metric (each kind maps its snapshot:
:meth:`.spec.MetricSpec.families`), a snapshot yields the series derived from it:

* ``<histogram>_excluded_total{reason}``: observations kept out of a histogram's
  count and sum (NaN, infinities, negatives without negative buckets);
* ``<set>_invalid_records_total``: kernel records dropped for an out-of-range
  label or a negative counter increment.

Exporters branch on ``family.kind`` (an object, :data:`~.kinds.COUNTER`,
:data:`~.kinds.GAUGE` or :data:`~.kinds.HISTOGRAM`) and never read live memory: the points were read once,
when the snapshot was taken.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .kinds import COUNTER, GAUGE, HISTOGRAM, Kind

__all__ = ["Kind", "COUNTER", "GAUGE", "HISTOGRAM", "Family", "families", "merge", "families_of",
           "families_dict",
           "INVALID_RECORDS_HELP", "EXCLUDED_REASONS"]


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
    fixed_labels: bool = True       # False: label values change with the data (top-k keys)

    @property
    def base_name(self) -> str:
        """The name without a counter's ``_total`` (OpenMetrics and OTLP name the family so)."""
        if self.kind is COUNTER and self.name.endswith("_total"):
            return self.name[:-len("_total")]
        return self.name


def families(snapshot) -> list:
    """The families of a :class:`~.snapshot.MetricSetSnapshot`, derived series included."""
    out = []
    times = dict(start_ns=snapshot.start_ns, timestamp_ns=snapshot.timestamp_ns)
    const = getattr(snapshot, "const_labels", ())
    c_names = tuple(k for k, _ in const)
    c_values = tuple(v for _, v in const)
    for snap in snapshot.metrics.values():
        out.extend(snap.spec.families(snap, c_names, c_values, times))   # each kind says
    out.append(Family(f"{snapshot.name}_invalid_records_total", COUNTER, INVALID_RECORDS_HELP,
                      c_names, ((c_values, snapshot.invalid_records),), **times))
    return out


def families_dict(fams) -> dict:
    """Families as plain JSON values: ``{name: {type, help, [unit], labels, samples}}``;
    a histogram sample's value is its ``to_dict()``, a non-finite gauge ``None``."""
    import math

    def plain(fam, v):
        if fam.kind is HISTOGRAM:
            return v.to_dict()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v
    out = {}
    for fam in fams:
        d = {"type": fam.kind.name, "help": fam.help, "labels": list(fam.label_names),
             "samples": [{"labels": dict(zip(fam.label_names, labels)), "value": plain(fam, v)}
                         for labels, v in fam.points]}
        if fam.unit:
            d["unit"] = fam.unit
        out[fam.name] = d
    return out


def merge(family_lists) -> list:
    """The families of several snapshots as one list: a family declared by several
    instances (of one class, told apart by their constant labels) becomes one family
    holding all their points.  Raises ``ValueError`` for two series with the same
    name and labels, and for one name declared with different kinds or labels."""
    merged, order = {}, []
    for fams in family_lists:
        for fam in fams:
            have = merged.get(fam.name)
            if have is None:
                merged[fam.name] = fam
                order.append(fam.name)
                continue
            if (have.kind, set(have.label_names)) != (fam.kind, set(fam.label_names)):
                raise ValueError(
                    f"{fam.name}: exported by two sets as different metrics "
                    f"({have.kind!r} {list(have.label_names)} and {fam.kind!r} "
                    f"{list(fam.label_names)})")
            if have.label_names != fam.label_names:
                position = [fam.label_names.index(n) for n in have.label_names]
                points = tuple((tuple(labels[i] for i in position), v) for labels, v in fam.points)
            else:
                points = fam.points
            seen = {labels for labels, _ in have.points}
            for labels, _ in points:
                if labels in seen:
                    pairs = ", ".join(f"{k}={v!r}" for k, v in zip(have.label_names, labels))
                    raise ValueError(
                        f"{fam.name}{{{pairs}}} is exported twice: give each instance of the "
                        f"set its own const_labels (e.g. const_labels={{'worker': '1'}})")
            merged[fam.name] = replace(have, points=have.points + points,
                                       fixed_labels=have.fixed_labels and fam.fixed_labels,
                                       start_ns=min(have.start_ns, fam.start_ns))
    return [merged[name] for name in order]


def families_of(metric_sets) -> tuple:
    """``(families, cache key)`` of metric sets, their snapshots, or anything else with
    ``collect()`` returning an object with ``families()`` (a directory of sets), merged
    across instances (:func:`merge`); the key (``None`` unless every source is a metric
    set) lets a renderer keep what depends only on the layouts.  What every exporter
    starts from."""
    lists, key = [], []
    for m in metric_sets:
        if hasattr(m, "families"):                  # a snapshot
            lists.append(m.families())
            key.append(None)
        else:
            lists.append(m.collect().families())
            layout = getattr(m, "layout", None)
            key.append((type(m), layout.hash) if layout is not None
                       else getattr(m, "render_key", None))
    fams = lists[0] if len(lists) == 1 else merge(lists)
    return fams, (tuple(key) if None not in key else None)

"""The record operations of each metric kind, one row each: what tests and benchmarks need.

One table, as numbagg's one table drives its kernels, tests and benchmarks:
each :class:`Operation` names a kind's record method, its value parameter, an
example argument, how a reading shows the metric (:attr:`Operation.read`) and
the reference effect of one record on that reading
(:attr:`Operation.effect`: written here, not computed by the recording code).
``tests/test_operations.py`` records every row from a kernel, from a kernel
through ``labels(...)`` and from Python and checks the reading against the
reference; ``benchmarks/metrics_overhead.py`` builds its per-operation kernels
from the rows' :attr:`Operation.bench` cases.
"""

from __future__ import annotations

from dataclasses import dataclass

from .counter import Counter
from .gauge import Gauge
from .histogram import Histogram
from .kinds import COUNTER, GAUGE, HISTOGRAM, Kind

__all__ = ["Operation", "BenchCase", "OPERATIONS"]


@dataclass(frozen=True)
class BenchCase:
    """A row of ``benchmarks/metrics_overhead.py``: its printed name, the benchmark set's
    attribute it records into, and the kernel's arguments (``vals[...]``: a value drawn
    from the benchmark's values, ``i``: the loop index)."""

    name: str
    attr: str
    args: str = ""


@dataclass(frozen=True)
class Operation:
    """``m.<metric>.<method>([value,] *labels)`` on a metric of ``kind``.

    ``param``: the value parameter (``""``: none); ``example``: a value for it (exact in
    binary floating point, so that references compare exactly); ``declare(name, labels)``:
    a declaration of the kind; ``read(handle, *labels)``: what a reading shows;
    ``effect(before, value)``: that reading after one record of ``value``.
    """

    kind: Kind
    method: str
    param: str
    example: object
    declare: object
    read: object
    effect: object
    bench: tuple = ()

    @property
    def name(self) -> str:
        return f"{self.kind.name}.{self.method}"

    def args(self) -> tuple:
        """The example's arguments before the labels."""
        return (self.example,) if self.param else ()


def _value(h, *labels):
    return h.value(*labels)


def _count_sum(h, *labels):
    data = h.read(*labels)
    return data.count, data.sum


OPERATIONS = (
    Operation(COUNTER, "inc", "", None, Counter, _value, lambda v, x: v + 1,
              bench=(BenchCase("counter.inc()", "counter"),
                     BenchCase("counter.inc(label)", "labelled", "i & 3"))),
    Operation(COUNTER, "add", "n", 3, Counter, _value, lambda v, x: v + x),
    Operation(GAUGE, "set", "value", 2.5, Gauge, _value, lambda v, x: x,
              bench=(BenchCase("gauge.set(v)", "gauge", "vals[i & 4095]"),)),
    Operation(GAUGE, "add", "value", 1.5, Gauge, _value, lambda v, x: v + x,
              bench=(BenchCase("gauge.add(1.0)", "gauge", "1.0"),)),
    Operation(GAUGE, "sub", "value", 0.5, Gauge, _value, lambda v, x: v - x),
    Operation(HISTOGRAM, "observe", "value", 0.5, Histogram, _count_sum,
              lambda v, x: (v[0] + 1, v[1] + x),
              bench=(BenchCase("histogram.observe(v) exponential", "hist", "vals[i & 4095]"),
                     BenchCase("histogram.observe(v) 64 explicit bounds", "explicit",
                               "vals[i & 4095]"))),
)

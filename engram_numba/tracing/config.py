"""Tracing configuration: what to record, how much, and how much memory to use.

Enabling or disabling an event type and changing its sample rate take effect
in running kernels without recompiling: the tracer keeps one *threshold* word
per declared type in its shared header, which the recording code loads on
every call::

    threshold = 0            type off (or rate 0): one load, one predictable branch
    threshold = 2**64 - 1    rate 1: recorded, no random draw
    otherwise                recorded when the ring's xorshift draw < threshold
                             (threshold = rate * 2**64)

A configuration names event types by name (``"priming"``), by a member of a
set's type enum, or by index; the names are checked against the set when a
tracer is made from it.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field, replace

import numpy as np

from .._values import as_rate
from ._ring import ALWAYS as _ALWAYS

__all__ = ["TracingConfig"]

ALWAYS = int(_ALWAYS)
MAX_RING = 1 << 24
MAX_THREADS = 4096


def threshold(rate: float) -> int:
    """Threshold word of a sample rate in [0, 1]: 0 (off), 2**64 - 1 (every event, no
    random draw), else ``rate * 2**64`` (kept when the ring's xorshift draw is below it)."""
    if rate >= 1.0:
        return ALWAYS
    if rate <= 0.0:
        return 0
    return max(1, min(ALWAYS - 1, int(rate * 2.0 ** 64)))


def _key(value, field_name):
    """An event-type key as given: a name, an enum member (its lowercased name) or an index."""
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, str) and value:
        return value.lower()
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) \
            and int(value) >= 0:
        return int(value)
    raise ValueError(f"{field_name}: unknown event type {value!r} (an event type's name, a "
                     f"member of the set's type enum, or its index)")


@dataclass
class TracingConfig:
    """What to trace and how much memory to use.

    ``enabled_events`` (default: every type) and ``sample_rates`` (default 1.0,
    or each type's declared production rate with ``production_rates=True``, as
    :meth:`production` sets) name
    types as the module docstring says.  ``ring_buffer_size`` is the number of
    events per ring (one ring per recording thread, ``max_threads`` rings),
    rounded up to a power of two; memory is ``max_threads * ring_buffer_size *
    64`` bytes plus a small header.  The defaults (31 rings of 8,192 events) take
    15.5 MiB plus 12 KiB: raise ``ring_buffer_size`` for longer bursts between
    drains, ``max_threads`` when more threads record (``prange`` on many cores).
    ``path`` puts the rings in a file (e.g. under ``/dev/shm``) that other
    processes can attach to.
    """

    enabled_events: set | None = None
    sample_rates: dict = field(default_factory=dict)
    ring_buffer_size: int = 8_192
    export_batch_size: int = 1_000
    export_interval_ms: int = 5_000
    max_threads: int = 31
    path: str | None = None
    production_rates: bool = False

    def __post_init__(self):
        self.validate()

    def validate(self) -> "TracingConfig":
        """Normalise fields in place; raise ValueError naming the bad field."""
        if self.enabled_events is not None:
            if isinstance(self.enabled_events, (str, bytes)):
                raise ValueError(f"enabled_events: expected a collection of event types, "
                                 f"got {self.enabled_events!r}")
            try:
                self.enabled_events = {_key(e, "enabled_events") for e in self.enabled_events}
            except TypeError:
                raise ValueError(f"enabled_events: expected a collection of event types, "
                                 f"got {self.enabled_events!r}") from None
        try:
            items = dict(self.sample_rates).items()
        except (TypeError, ValueError):
            raise ValueError(f"sample_rates: expected a mapping of event type to rate, "
                             f"got {self.sample_rates!r}") from None
        rates = {}
        for key, rate in items:
            k = _key(key, "sample_rates")
            rates[k] = as_rate(rate, f"sample_rates[{k}]")
        self.sample_rates = rates
        for name in ("ring_buffer_size", "export_batch_size", "export_interval_ms", "max_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        if self.ring_buffer_size > MAX_RING:
            raise ValueError(f"ring_buffer_size: at most {MAX_RING}, got {self.ring_buffer_size}")
        if self.max_threads > MAX_THREADS:
            raise ValueError(f"max_threads: at most {MAX_THREADS}, got {self.max_threads}")
        if self.path is not None:
            if not isinstance(self.path, (str, os.PathLike)) or not os.fspath(self.path):
                raise ValueError(f"path: a file path, or None for anonymous memory; "
                                 f"got {self.path!r}")
            if os.path.isdir(self.path):
                raise ValueError(f"path: {os.fspath(self.path)} is a directory; give a file path")
        if not isinstance(self.production_rates, bool):
            raise ValueError(f"production_rates: True or False, got {self.production_rates!r}")
        return self

    @property
    def ring_capacity(self) -> int:
        """``ring_buffer_size`` rounded up to a power of two."""
        return 1 << (self.ring_buffer_size - 1).bit_length()

    @property
    def memory_bytes(self) -> int:
        return self.max_threads * self.ring_capacity * 64

    def resolve(self, layout) -> dict:
        """Rate per declared type name of ``layout`` (0.0 for types switched off)."""
        def name_of(key, field_name):
            try:
                return layout.type_of(key).name
            except ValueError as exc:
                raise ValueError(f"{field_name}: {exc}") from None
        enabled = None if self.enabled_events is None else {
            name_of(k, "enabled_events") for k in self.enabled_events}
        given = {name_of(k, "sample_rates"): r for k, r in self.sample_rates.items()}
        out = {}
        for t in layout.types:
            default = layout.production_rates.get(t.name, 1.0) if self.production_rates else 1.0
            rate = given.get(t.name, default)
            out[t.name] = rate if enabled is None or t.name in enabled else 0.0
        return out

    def thresholds(self, layout) -> list:
        """The threshold word of every type of ``layout``, in table order."""
        rates = self.resolve(layout)
        return [threshold(rates[t.name]) for t in layout.types]

    # -- presets ---------------------------------------------------------------------------

    @classmethod
    def disabled(cls) -> "TracingConfig":
        """Every type off, and the smallest rings."""
        return cls(enabled_events=set(), ring_buffer_size=1, max_threads=1)

    @classmethod
    def development(cls, **changes) -> "TracingConfig":
        """Every type at rate 1.0 (engram's development preset; the default rings)."""
        return cls(export_batch_size=1_000, export_interval_ms=5_000, **changes)

    @classmethod
    def production(cls, **changes) -> "TracingConfig":
        """Every type at the rate its set declares for production (``production_rates``),
        larger export batches, a 30 s export interval (engram's production preset; the
        default rings)."""
        return cls(production_rates=True, export_batch_size=5_000, export_interval_ms=30_000,
                   **changes)

    def with_(self, **changes) -> "TracingConfig":
        """A validated copy with some fields changed."""
        return replace(self, **changes)

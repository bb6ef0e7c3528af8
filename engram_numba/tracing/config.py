"""Tracing configuration, with engram's field names and presets.

Enabling or disabling an event type and changing its sample rate take effect
in running kernels without recompiling: the tracer keeps one *threshold* word
per type in its shared header, which the recording code loads on every call::

    threshold = 0            type off (or rate 0): one load, one predictable branch
    threshold = 2**64 - 1    rate 1: recorded, no random draw
    otherwise                recorded when the ring's xorshift draw < threshold
                             (threshold = rate * 2**64)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from .._values import as_enum, as_rate
from .events import EventType

__all__ = ["TracingConfig"]

ALWAYS = (1 << 64) - 1
MAX_RING = 1 << 24
MAX_THREADS = 4096


def _event_type(value, field_name) -> EventType:
    try:
        return as_enum(EventType, value, field_name, names=True)
    except ValueError:
        pass
    names = ", ".join(t.name.lower() for t in EventType)
    raise ValueError(f"{field_name}: unknown event type {value!r} (one of {names})")


def threshold(rate: float) -> int:
    """Threshold word of a sample rate in [0, 1] (see module docstring)."""
    if rate >= 1.0:
        return ALWAYS
    if rate <= 0.0:
        return 0
    return max(1, min(ALWAYS - 1, int(rate * 2.0 ** 64)))


@dataclass
class TracingConfig:
    """What to trace and how much memory to use.

    ``ring_buffer_size`` is the number of events per ring (one ring per
    recording thread), rounded up to a power of two; memory is
    ``max_threads * ring_buffer_size * 64`` bytes plus a small header.
    ``path`` puts the rings in a file (e.g. under ``/dev/shm``) that other
    processes can attach to.
    """

    enabled_events: set = field(default_factory=lambda: set(EventType))
    sample_rates: dict = field(default_factory=lambda: {t: 1.0 for t in EventType})
    ring_buffer_size: int = 10_000
    export_batch_size: int = 1_000
    export_interval_ms: int = 5_000
    max_threads: int = 64
    path: str | None = None

    def __post_init__(self):
        self.validate()

    def validate(self) -> "TracingConfig":
        """Normalise fields in place; raise ValueError naming the bad field."""
        try:
            events = {_event_type(e, "enabled_events") for e in self.enabled_events}
        except TypeError:
            raise ValueError(f"enabled_events: expected a collection of event types, "
                             f"got {self.enabled_events!r}") from None
        rates = {t: 1.0 for t in EventType}
        try:
            items = dict(self.sample_rates).items()
        except (TypeError, ValueError):
            raise ValueError(f"sample_rates: expected a mapping of event type to rate, "
                             f"got {self.sample_rates!r}") from None
        for key, rate in items:
            t = _event_type(key, "sample_rates")
            rates[t] = as_rate(rate, f"sample_rates[{t.name.lower()}]")
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
                raise ValueError(f"path: a file path, or None for anonymous memory; got {self.path!r}")
            if os.path.isdir(self.path):
                raise ValueError(f"path: {os.fspath(self.path)} is a directory; give a file path")
        self.enabled_events = events
        self.sample_rates = rates
        return self

    @property
    def ring_capacity(self) -> int:
        """``ring_buffer_size`` rounded up to a power of two."""
        return 1 << (self.ring_buffer_size - 1).bit_length()

    def thresholds(self) -> list:
        """The threshold word of every event type (0 when disabled)."""
        return [threshold(self.sample_rates[t]) if t in self.enabled_events else 0
                for t in EventType]

    @property
    def memory_bytes(self) -> int:
        return self.max_threads * self.ring_capacity * 64

    # -- engram's presets ----------------------------------------------------------

    @classmethod
    def disabled(cls) -> "TracingConfig":
        return cls(enabled_events=set(), sample_rates={t: 0.0 for t in EventType},
                   ring_buffer_size=1, max_threads=1)

    @classmethod
    def development(cls) -> "TracingConfig":
        return cls(enabled_events=set(EventType), sample_rates={t: 1.0 for t in EventType},
                   ring_buffer_size=10_000, export_batch_size=1_000, export_interval_ms=5_000)

    @classmethod
    def production(cls) -> "TracingConfig":
        return cls(enabled_events=set(EventType),
                   sample_rates={EventType.PRIMING: 0.01, EventType.INTERFERENCE: 0.01,
                                 EventType.RECONSOLIDATION: 1.0, EventType.FALSE_MEMORY: 1.0},
                   ring_buffer_size=10_000, export_batch_size=5_000, export_interval_ms=30_000)

    def with_(self, **changes) -> "TracingConfig":
        """A validated copy with some fields changed."""
        return replace(self, **changes)

"""Cognitive events: one 64-byte cache line each, fixed layout, no pointers.

Byte layout of a slot (little-endian; the payload is a union on the event type)::

    offset size  field                      priming  interference  reconsolidation  false memory
    0      8     sequence  u64              -------- position of the event in its ring --------
    8      8     timestamp u64              clock ticks when written; unix ns after drain()
    16     1     event_type u8              0        1             2                3
    17     1     priming_type / interference_type u8
    18     2     thread u16                 ring id of the recording thread
    20     4     f32                        strength magnitude     window_position  reconstruction_confidence
    24     8     u64                        source_node target_episode_id episode_id critical_lure_hash
    32     8     u64                        target_node
    32     4     u32                                    competing_episode_count modification_count source_list_size
    36     4     f32                                                   plasticity_factor
    40     24    reserved (zero)

Inside a ring the ``sequence`` word doubles as the slot's seqlock (see
:mod:`._ring`); :func:`~engram_numba.CognitiveTracer.drain` returns events
whose ``sequence`` is the event's position in its ring and whose ``timestamp``
is absolute unix nanoseconds.  :data:`EVENT_DTYPE` names every payload field
at its offset (overlapping, like a C union): read the fields that belong to
each row's ``event_type``.
"""

from __future__ import annotations

import enum

import numpy as np

__all__ = ["EventType", "EVENT_DTYPE", "EVENT_SIZE", "EVENT_FIELDS", "event_type_name", "concat",
           "as_events"]

EVENT_SIZE = 64


class EventType(enum.IntEnum):
    PRIMING = 0
    INTERFERENCE = 1
    RECONSOLIDATION = 2
    FALSE_MEMORY = 3


# (name, numpy type, offset)
_COMMON = [("sequence", "<u8", 0), ("timestamp", "<u8", 8), ("event_type", "u1", 16),
           ("thread", "<u2", 18)]
_PAYLOAD = {
    EventType.PRIMING: [("priming_type", "u1", 17), ("strength", "<f4", 20),
                        ("source_node", "<u8", 24), ("target_node", "<u8", 32)],
    EventType.INTERFERENCE: [("interference_type", "u1", 17), ("magnitude", "<f4", 20),
                             ("target_episode_id", "<u8", 24),
                             ("competing_episode_count", "<u4", 32)],
    EventType.RECONSOLIDATION: [("window_position", "<f4", 20), ("episode_id", "<u8", 24),
                                ("modification_count", "<u4", 32),
                                ("plasticity_factor", "<f4", 36)],
    EventType.FALSE_MEMORY: [("reconstruction_confidence", "<f4", 20),
                             ("critical_lure_hash", "<u8", 24), ("source_list_size", "<u4", 32)],
}

#: Payload field names of each event type, in JSON order.
EVENT_FIELDS = {t: [name for name, _, _ in fields] for t, fields in _PAYLOAD.items()}

_ALL = _COMMON + [f for fields in _PAYLOAD.values() for f in fields]
EVENT_DTYPE = np.dtype({
    "names": [n for n, _, _ in _ALL],
    "formats": [t for _, t, _ in _ALL],
    "offsets": [o for _, _, o in _ALL],
    "itemsize": EVENT_SIZE,
})

#: Byte offsets used by the recording code.
OFFSETS = {n: o for n, _, o in _ALL}

_NAMES = {t: t.name.lower() for t in EventType}


def event_type_name(value: int) -> str:
    """``"priming"``, ``"interference"``, ``"reconsolidation"`` or ``"false_memory"``."""
    return _NAMES[EventType(value)]


def as_events(events) -> np.ndarray:
    """``events`` checked to be a 1-d array of :data:`EVENT_DTYPE`, made contiguous and aligned.

    Every encoder and exporter takes its input through here, because they read
    the raw 64-byte slots: an array of another dtype, itemsize or shape would be
    read past its end.  Raises TypeError or ValueError saying what is wrong.
    """
    if not isinstance(events, np.ndarray):
        raise TypeError(f"expected a numpy array of events (EVENT_DTYPE), got "
                        f"{type(events).__name__}")
    if events.dtype != EVENT_DTYPE or events.dtype.itemsize != EVENT_SIZE:
        raise ValueError(f"expected events of EVENT_DTYPE ({EVENT_SIZE}-byte records from "
                         f"drain() or read()), got dtype {events.dtype}")
    if events.ndim != 1:
        raise ValueError(f"expected a 1-d array of events, got shape {events.shape}")
    return np.require(events, requirements=("C", "A"))    # a copy when strided or unaligned


def concat(batches) -> np.ndarray:
    """Join event arrays keeping :data:`EVENT_DTYPE`'s layout.

    ``np.concatenate`` would promote the dtype to a packed copy without the
    overlapping union fields, which is no longer the 64-byte event layout.
    """
    batches = [as_events(b) for b in batches]
    if not batches:
        return np.empty(0, dtype=EVENT_DTYPE)
    words = np.concatenate([b.view(np.uint64).reshape(-1) for b in batches])
    return words.view(EVENT_DTYPE)

"""The enums engram's metrics and events share (an event's ``priming_type`` is the label
its metric counts by).  :mod:`.metrics` re-exports them."""

from __future__ import annotations

import enum

__all__ = ["PrimingType", "InterferenceType", "RejectionReason"]


class PrimingType(enum.IntEnum):
    SEMANTIC = 0
    ASSOCIATIVE = 1
    REPETITION = 2


class InterferenceType(enum.IntEnum):
    PROACTIVE = 0
    RETROACTIVE = 1
    FAN = 2


class RejectionReason(enum.IntEnum):
    OUTSIDE_WINDOW = 0
    TOO_SOON = 1
    CONFLICTING = 2
    OTHER = 3

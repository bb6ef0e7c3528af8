"""Validation of values passed from Python to recording calls.

Every Python-side record call (metric handles, kernel methods, tracer events,
configuration) checks all of its arguments with these helpers *before* it
writes anything, so a bad argument raises and leaves nothing half-recorded.

* numbers are ``int``, ``float`` and numpy integer/float scalars (and other
  ``numbers.Real``); strings, bytes, ``bool`` and ``None`` are not numbers;
* an IntEnum argument is a member of the declared class, or an integer that is
  one of its values, or (where allowed) a member name; a member of *another*
  IntEnum is refused even when its value would fit.
"""

from __future__ import annotations

import enum
import math
import numbers
import re

import numpy as np

from .errors import KernelTypingError

__all__ = ["as_number", "as_integer", "as_enum", "as_rate", "KernelTypingError"]


def _what(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def as_number(value, name: str) -> float:
    """``value`` as a float, or ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating,
                                                                     np.integer)):
        raise ValueError(f"{name} must be a number, got {_what(value)}")
    return float(value)


def as_integer(value, name: str, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an int within ``[lo, hi]``, or ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ValueError(f"{name} must be an integer, got {_what(value)}")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")
    return v


def as_enum(enum_cls, value, name: str, *, names: bool = False):
    """The member of ``enum_cls`` that ``value`` denotes, or ValueError naming ``name``."""
    if isinstance(value, enum.Enum):
        if isinstance(value, enum_cls):
            return value
        raise ValueError(f"{name} takes {enum_cls.__name__} members, got "
                         f"{type(value).__name__}.{value.name}")
    if names and isinstance(value, str):
        member = enum_cls.__members__.get(value.upper())
        if member is not None:
            return member
    elif isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool,
                                                                                        np.bool_)):
        try:
            return enum_cls(int(value))
        except ValueError:
            pass
    allowed = ", ".join(f"{m.name.lower() if names else int(m)}" for m in enum_cls)
    raise ValueError(f"{name}: {_what(value)} is not a {enum_cls.__name__} (one of {allowed})")


def as_rate(value, name: str) -> float:
    """A sampling rate in [0, 1]."""
    r = as_number(value, name)
    if math.isnan(r) or not 0.0 <= r <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {_what(value)}")
    return r


def snake_case(name: str) -> str:
    """``CamelCase`` -> ``camel_case`` (default names of sets and enum labels)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


class NamedKind:
    """Base of kinds that are objects, not strings (metric kinds, trace event kinds).

    ``name`` is the word stored in layout descriptions and shown to people;
    comparing a kind with a string raises ``TypeError`` (naming the object to
    compare with) rather than quietly answering ``False``.  Subclasses set
    ``what`` and ``home`` (for that message) and pickle by name.
    """

    what = "kind"
    home = ""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name.upper()

    def __eq__(self, other):
        if isinstance(other, str):            # code written for kinds as strings: say so
            raise TypeError(f"a {self.what} is an object: compare with `kind is {self!r}` "
                            f"({self.home}), not with the string {other!r}")
        return self is other

    __hash__ = object.__hash__


"""Field types: how one scalar argument is stored, validated from Python and described.

An event's fields (:mod:`.tracing.schema`) and a kernel method's annotated
parameters (:mod:`._methods`) are typed with these.  A type is an object, made
from a declaration by :func:`field_type`: a numpy scalar type (``int8`` ..
``uint64``, ``float32``, ``float64``, ``bool``) or an ``IntEnum`` class (stored
in the smallest integer that holds every member).  ``code`` is the one-letter
class the compiled encoders branch on: ``i``/``u`` signed/unsigned integer,
``f``/``d`` float32/float64, ``b`` bool, ``e`` enum.
"""

from __future__ import annotations

import enum
import json

import numpy as np

from ._values import as_enum, as_integer, as_number

__all__ = ["FieldType", "IntField", "FloatField", "BoolField", "EnumField", "field_type",
           "field_from_description"]


class FieldType:
    """How one field is stored, validated from Python, encoded and described."""

    code = ""          # the encoders' class of the field (module docstring)

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype).newbyteorder("<") if np.dtype(dtype).itemsize > 1 \
            else np.dtype(dtype)
        self.size = self.dtype.itemsize

    def python(self, value, where):
        raise NotImplementedError

    def describe(self) -> dict:
        return {"type": self.dtype.name}

    def json_schema(self) -> dict:
        raise NotImplementedError

    def __eq__(self, other):
        return type(self) is type(other) and self.describe() == other.describe()

    def __hash__(self):
        return hash(json.dumps(self.describe(), sort_keys=True))

    def __repr__(self):
        return f"{type(self).__name__}({self.describe()})"


class IntField(FieldType):
    def __init__(self, dtype):
        super().__init__(dtype)
        info = np.iinfo(self.dtype)
        self.lo, self.hi = int(info.min), int(info.max)
        self.signed = self.lo < 0
        self.code = "i" if self.signed else "u"

    def python(self, value, where):
        return as_integer(value, where, self.lo, self.hi)

    def json_schema(self):
        return {"type": "integer", "minimum": self.lo, "maximum": self.hi}


class FloatField(FieldType):
    def __init__(self, dtype):
        super().__init__(dtype)
        self.code = "f" if self.size == 4 else "d"

    def python(self, value, where):
        return as_number(value, where)

    def json_schema(self):
        return {"type": ["number", "null"]}


class BoolField(FieldType):
    code = "b"

    def __init__(self):
        super().__init__(np.uint8)

    def describe(self):
        return {"type": "bool"}

    def python(self, value, where):
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, (int, np.integer)) and int(value) in (0, 1):
            return bool(value)
        raise ValueError(f"{where} must be a bool, got {value!r}")

    def json_schema(self):
        return {"type": "boolean"}


class EnumField(FieldType):
    """An IntEnum, stored in the smallest integer holding every member."""

    code = "e"

    def __init__(self, enum_cls):
        values = [int(m) for m in enum_cls]
        if not values:
            raise ValueError(f"{enum_cls.__name__} has no members")
        lo, hi = min(values), max(values)
        for dt in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64):
            info = np.iinfo(dt)
            if info.min <= lo and hi <= info.max:
                break
        else:
            raise ValueError(f"{enum_cls.__name__}: members from {lo} to {hi} do not fit in a "
                             f"64-bit signed integer, the widest an event field stores; use "
                             f"values in [{-2**63}, {2**63 - 1}]")
        super().__init__(dt)
        self.enum = enum_cls
        self.values = sorted(values)
        self.names = {int(m): m.name.lower() for m in enum_cls}

    def python(self, value, where):
        return int(as_enum(self.enum, value, where))

    def describe(self):
        return {"type": "enum", "storage": self.dtype.name, "enum": self.enum.__name__,
                "members": {m.name: int(m) for m in self.enum}}

    def json_schema(self):
        return {"enum": sorted(self.names.values()) + ["unknown"]}


def field_type(declared) -> FieldType:
    """The FieldType of a declared field (a numpy scalar type or an IntEnum class)."""
    if isinstance(declared, FieldType):
        return declared
    if isinstance(declared, type) and issubclass(declared, enum.IntEnum):
        return EnumField(declared)
    try:
        dt = np.dtype(declared)
    except TypeError:
        dt = None
    if dt is not None and declared is not object and not isinstance(declared, str):
        if dt == np.bool_:
            return BoolField()
        if dt.kind in "iu" and dt.itemsize <= 8:
            return IntField(dt)
        if dt.kind == "f" and dt.itemsize in (4, 8):
            return FloatField(dt)
    raise TypeError(f"a field type is a numpy scalar type (int8 .. uint64, float32, float64, "
                    f"bool) or an IntEnum class, got {declared!r}")


def field_from_description(d: dict) -> FieldType:
    """The FieldType a description (:meth:`FieldType.describe`) was made from."""
    if d["type"] == "bool":
        return BoolField()
    if d["type"] == "enum":
        members = d["members"]
        if not isinstance(members, dict) or not members:
            raise ValueError("an enum field needs members")
        return EnumField(enum.IntEnum(str(d["enum"]), {str(k): int(v) for k, v in members.items()}))
    return field_type(np.dtype(str(d["type"])))

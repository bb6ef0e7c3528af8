"""Event sets: traced event and span types declared once, everything else derived.

::

    class SolverEvents(EventSet, name="solver"):
        iteration = Event("One Newton step", residual=np.float64, step=np.uint32)
        restart = Event("Solver restarted", reason=Reason, at_step=np.uint32)
        solve = Span("One call of solve()", size=np.uint32)

From this table come the 64-byte slot layout (the offsets of every field), the
structured dtype of drained events, the compiled encoders kernels call, the
validated Python calls, the disabled stubs, the threshold words of the ring
header, and every exporter's names.  Adding a type is one line.

Drained events (``Layout.dtype``) are plain records, one column per name, no
two columns sharing bytes, so that ``np.save`` / ``np.load(allow_pickle=False)``
keep them, and ``np.concatenate`` joins them::

    timestamp       u8   unix ns
    sequence        u8   the event's position in its ring
    thread          u8   OS thread id of the thread that recorded it (0: unknown)
    span_id         u8   a span's own id for its begin and end; for an instant
                         event, the innermost span open on its thread (0: none)
    parent_span_id  u8   a span begin's parent (0: a root or not a span)
    trace_id        u8   the id of the root span of the trace the event is in (0:
                         none); the OTLP trace id is the tracer's id followed by it
    ...                  the set's fields, each once (8-byte ones first)
    ring            u2   the ring it was recorded in
    ...                  2-byte fields
    event_type      u1   index of the type in the table
    flags           u1   bits 0-1: 0 event, 1 span begin, 2 span end; bits 2-7: depth
    ...                  1-byte fields, then ``_padding`` bytes to a multiple of 8

Columns follow each other without gaps, in size order, so every value is
naturally aligned and numpy keeps the dtype through every operation.  A field
that a type does not have is 0 in that type's rows.  The ``event_type``
column's title (``engram_numba.events:<set>:<hash>``) names the set, so an
array loaded from a file is recognised by any process that declares the set
(:func:`schema_of`).

Slot layout (little-endian, one cache line)::

    offset size
    0      8    sequence   u64   the event's position in its ring (a seqlock in the ring)
    8      8    timestamp  u64   clock ticks when written; unix ns once read
    16     1    event_type u8    index of the type in the set's table
    17     1    flags      u8    bits 0-1: 0 event, 1 span begin, 2 span end; bits 2-7: depth
    18     2    ring       u16   ring of the recording thread
    20     44   payload          the type's fields at computed offsets
                                 spans: span_id u64 at 24, parent_span_id u64 at 32
                                 (begin events carry the span's fields too)

Field types: numpy ``int8`` .. ``uint64``, ``float32``, ``float64``, ``bool``,
and ``IntEnum`` classes (stored in the smallest integer that holds every
member).  Fields are placed largest first at the lowest naturally aligned free
offset; a field name used by several types has one type and one offset, so
the drained dtype names every field once (a C union, like the slot).  A
declaration that does not fit says which fields are over the limit.

The description of a set (JSON) is stored in file-backed tracers, so
:meth:`~engram_numba.Tracer.attach` rebuilds the set, enums included, without
its class.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
import typing

import numpy as np
from numba import njit

from .._fields import FieldType, field_from_description, field_type
from .._methods import kernel_method
from .._values import as_rate, snake_case
from .kinds import EVENT, SPAN

__all__ = ["EventSet", "Event", "Span", "FieldType", "EventKind", "SLOT_SIZE", "schema_of",
           "as_events", "concat"]

SLOT_SIZE = 64
PAYLOAD_START = 20
SPAN_ID_OFFSET = 24
PARENT_ID_OFFSET = 32
FLAG_EVENT, FLAG_BEGIN, FLAG_END = 0, 1, 2
#: a ring record that is not an event: a parallel region's worker sets or clears the span
#: its instant events belong to (see ._prange); readers apply it and never return it
FLAG_CONTEXT = 3
MAX_TYPES = 256
TITLE_PREFIX = "engram_numba.events"
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_RESERVED = {"sequence", "timestamp", "event_type", "flags", "thread", "ring", "span_id",
             "parent_span_id", "trace_id", "span", "depth", "pid", "process_start",
             "_padding"}

COMMON_FIELDS = [("sequence", "<u8", 0), ("timestamp", "<u8", 8), ("event_type", "u1", 16),
                 ("flags", "u1", 17), ("ring", "<u2", 18)]
SPAN_FIELDS = [("span_id", "<u8", SPAN_ID_OFFSET), ("parent_span_id", "<u8", PARENT_ID_OFFSET)]
#: the columns every drained event has: the 8-byte ones first, the narrow ones after the
#: fields of their size (the record layout is in the module docstring)
RECORD_WIDE = ("timestamp", "sequence", "thread", "span_id", "parent_span_id", "trace_id")
RECORD_NARROW = (("ring", 2), ("event_type", 1), ("flags", 1))

_LAYOUTS: dict = {}                  # drained dtype -> Layout: how arrays are recognised


# -- declarations ----------------------------------------------------------------------------

class EventKind:
    """Base of :class:`Event` and :class:`Span`: a help text and named fields; ``kind`` is
    :data:`~.kinds.EVENT` or :data:`~.kinds.SPAN`."""

    kind = None
    reserved = ()

    def __init__(self, help: str = "", /, **fields):
        if not isinstance(help, str):
            raise TypeError(f"the first argument is the help text, got {help!r}")
        self.help = help
        self.fields = {}
        for name, declared in fields.items():
            if not _NAME.match(name) or name in _RESERVED:
                raise ValueError(f"invalid field name {name!r} (lowercase identifiers; "
                                 f"reserved: {sorted(_RESERVED)})")
            try:
                self.fields[name] = field_type(declared)
            except TypeError as exc:
                raise TypeError(f"field {name!r}: {exc}") from None
        self.name = None
        self.index = None

    def __set_name__(self, owner, name):
        self.name = name

    def describe(self) -> dict:
        return {"kind": self.kind.name, "help": self.help,
                "fields": [dict(name=n, **t.describe()) for n, t in self.fields.items()]}

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}, {list(self.fields)})"


class Event(EventKind):
    """An instant event: ``tr.<name>.emit(*fields)`` records one slot."""

    kind = EVENT
    reserved = ()


class Span(EventKind):
    """A timed region: ``tr.<name>.begin(*fields)`` ... ``tr.<name>.end()``.

    Begin and end are two events of the same thread.  A span begun inside
    another is its child; its begin event carries ``span_id`` and
    ``parent_span_id`` and the declared fields, its end event the ``span_id``.
    """

    kind = SPAN
    reserved = ((SPAN_ID_OFFSET, 16),)


def _kind_from_description(d: dict) -> EventKind:
    cls = {"event": Event, "span": Span}.get(d.get("kind"))
    if cls is None:
        raise ValueError(f"unknown event kind {d.get('kind')!r}")
    return cls(str(d.get("help", "")), **{f["name"]: field_from_description(f) for f in d["fields"]})


# -- the table -------------------------------------------------------------------------------

class Layout:
    """Offsets of every field of a set, its drained dtype, its description and hash."""

    def __init__(self, name: str, types: list, production_rates: dict):
        if len(types) > MAX_TYPES:
            raise ValueError(f"{name}: at most {MAX_TYPES} event types, got {len(types)}")
        self.name = name
        self.types = types
        self.production_rates = dict(production_rates)
        self.has_spans = any(t.kind is SPAN for t in types)
        self.offsets = {}               # (type index, field name) -> offset
        field_types = {}
        users = {}
        for t in types:
            for fname, ft in t.fields.items():
                if fname in field_types and field_types[fname] != ft:
                    first = users[fname][0].name
                    raise TypeError(f"{name}: field {fname!r} is {field_types[fname].describe()} "
                                    f"in {first} and {ft.describe()} in {t.name}; a field name has "
                                    f"one type within a set")
                field_types[fname] = ft
                users.setdefault(fname, []).append(t)
        free = {t.index: self._free(t) for t in types}
        order = sorted(field_types, key=lambda n: (-field_types[n].size,
                                                   min(u.index for u in users[n])))
        self.field_offset = {}
        for fname in order:
            ft = field_types[fname]
            offset = self._place(ft.size, [free[u.index] for u in users[fname]])
            if offset is None:
                over = [u for u in users[fname] if self._place(ft.size, [free[u.index]]) is None]
                t = (over or users[fname])[0]
                placed = [f for f in t.fields if f in self.field_offset]
                raise ValueError(
                    f"{name}.{t.name}: the fields do not fit the {SLOT_SIZE}-byte slot "
                    f"({self._room(t)} bytes of payload): {fname!r} ({ft.size} bytes) is over the "
                    f"limit after {placed}; total declared "
                    f"{sum(x.size for x in t.fields.values())} bytes")
            for u in users[fname]:
                free[u.index][offset:offset + ft.size] = False
                self.offsets[(u.index, fname)] = offset
            self.field_offset[fname] = offset
        self.field_types = field_types
        names = [n for n, _, _ in COMMON_FIELDS]
        formats = [f for _, f, _ in COMMON_FIELDS]
        offs = [o for _, _, o in COMMON_FIELDS]
        if self.has_spans:
            for n, f, o in SPAN_FIELDS:
                names.append(n), formats.append(f), offs.append(o)
        for fname in sorted(field_types, key=lambda n: self.field_offset[n]):
            names.append(fname)
            formats.append(field_types[fname].dtype.str)
            offs.append(self.field_offset[fname])
        slot_dtype = np.dtype({"names": names, "formats": formats, "offsets": offs,
                               "itemsize": SLOT_SIZE})
        self.description = json.dumps({
            "format": "engram-numba.event-set", "version": 1, "name": name,
            "slot_size": SLOT_SIZE,
            "types": [dict(t.describe(), name=t.name,
                           offsets={f: self.offsets[(t.index, f)] for f in t.fields})
                      for t in types],
            "production_rates": self.production_rates,
        }, sort_keys=True, separators=(",", ":"))
        self.hash = hashlib.sha256(self.description.encode()).hexdigest()
        #: the 64-byte slot as the rings hold it (fields of different types overlap)
        self.slot_dtype = slot_dtype
        self.dtype = self._record_dtype(field_types, users)
        #: per field name, which type indexes have it (256 entries: any type byte)
        self.type_has = {f: np.isin(np.arange(MAX_TYPES), [u.index for u in users[f]])
                         for f in field_types}
        self.is_span = np.isin(np.arange(MAX_TYPES), [t.index for t in types
                                                     if t.kind is SPAN])
        self.by_name = {t.name: t for t in types}
        _LAYOUTS[self.dtype] = self

    def _record_dtype(self, field_types, users) -> np.dtype:
        """The drained events' dtype: packed columns in size order (module docstring)."""
        columns = [(n, "<u8") for n in RECORD_WIDE]
        order = sorted(field_types, key=lambda n: (-field_types[n].size,
                                                   min(u.index for u in users[n]), n))
        narrow = dict(RECORD_NARROW)
        for size in (8, 4, 2, 1):
            columns += [(n, "<u2" if w == 2 else "u1") for n, w in RECORD_NARROW if w == size]
            columns += [(n, field_types[n].dtype.str) for n in order
                        if field_types[n].size == size and n not in narrow]
        names, formats, offsets, offset = [], [], [], 0
        for name, fmt in columns:
            names.append(name), formats.append(fmt), offsets.append(offset)
            offset += np.dtype(fmt).itemsize
        if offset % 8:
            names.append("_padding"), formats.append(f"V{8 - offset % 8}")
            offsets.append(offset)
            offset += 8 - offset % 8
        titles = [f"{TITLE_PREFIX}:{self.name}:{self.hash[:16]}" if n == "event_type" else None
                  for n in names]
        return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                         "titles": titles, "itemsize": offset})

    def record_offset(self, name: str) -> int:
        """Byte offset of a column of the drained dtype."""
        return self.dtype.fields[name][1]

    def records(self, raw: np.ndarray) -> np.ndarray:
        """Drained events from raw slots (``slot_dtype``): each field copied into its own
        column for the rows whose type has it (a compiled copy driven by the table);
        ``thread``, ``trace_id`` and an instant event's ``span_id`` are 0 here (the
        tracer fills them in)."""
        out = np.zeros(raw.size, dtype=self.dtype)
        if raw.size:
            tables = self._copy_tables()
            _to_records(np.ascontiguousarray(raw).view(np.uint8), raw.size,
                        out.view(np.uint8), self.dtype.itemsize, *tables)
        return out

    def _copy_tables(self) -> tuple:
        """(common src, dst, size; per type: first row; rows: src, dst, size) for
        :func:`_to_records`: the bytes each type's slot gives each column."""
        cached = self.__dict__.get("_tables")
        if cached is not None:
            return cached
        slot = self.slot_dtype
        common = [(slot.fields[n][1], self.record_offset(n), slot.fields[n][0].itemsize)
                  for n in ("timestamp", "sequence", "ring", "event_type", "flags")]
        starts, rows = [0], []
        for t in self.types:
            if t.kind is SPAN:
                rows += [(SPAN_ID_OFFSET, self.record_offset("span_id"), 8),
                         (PARENT_ID_OFFSET, self.record_offset("parent_span_id"), 8)]
            for fname, ft in t.fields.items():
                rows.append((self.offsets[(t.index, fname)], self.record_offset(fname), ft.size))
            starts.append(len(rows))
        as_array = (lambda values: np.array(values, dtype=np.int64).reshape(-1, 3))
        cached = (as_array(common), np.array(starts, dtype=np.int64), as_array(rows or [(0, 0, 0)]))
        self._tables = cached
        return cached

    @staticmethod
    def _room(t) -> int:
        return SLOT_SIZE - PAYLOAD_START - sum(n for _, n in t.reserved)

    @staticmethod
    def _free(t) -> np.ndarray:
        free = np.zeros(SLOT_SIZE, dtype=bool)
        free[PAYLOAD_START:] = True
        for start, n in t.reserved:
            free[start:start + n] = False
        return free

    @staticmethod
    def _place(size, frees):
        for offset in range(PAYLOAD_START + (-PAYLOAD_START % size), SLOT_SIZE - size + 1, size):
            if all(f[offset:offset + size].all() for f in frees):
                return offset
        return None

    def type_of(self, key) -> EventKind:
        """A declared type by name, index, or member of the set's type enum."""
        if isinstance(key, enum.Enum):
            key = key.name.lower()
        if isinstance(key, str):
            t = self.by_name.get(key.lower())
            if t is not None:
                return t
        elif isinstance(key, (int, np.integer)) and not isinstance(key, bool) \
                and 0 <= int(key) < len(self.types):
            return self.types[int(key)]
        raise ValueError(f"unknown event type {key!r} for {self.name} "
                         f"(one of {', '.join(self.by_name)})")

    def __reduce__(self):
        return _layout_from_description, (self.description,)

    def __eq__(self, other):
        return isinstance(other, Layout) and other.description == self.description

    def __hash__(self):
        return hash(self.description)


@njit(cache=True)
def _to_records(raw, n, out, stride, common, starts, rows):
    """Copy the slots' bytes into the records' columns (see Layout.records)."""
    n_types = starts.size - 1
    for e in range(n):
        src = e * SLOT_SIZE
        dst = e * stride
        for c in range(common.shape[0]):
            for b in range(common[c, 2]):
                out[dst + common[c, 1] + b] = raw[src + common[c, 0] + b]
        t = np.int64(raw[src + 16])
        if t >= n_types:
            continue                          # a type this set does not declare
        for r in range(starts[t], starts[t + 1]):
            for b in range(rows[r, 2]):
                out[dst + rows[r, 1] + b] = raw[src + rows[r, 0] + b]


def _layout_from_description(description: str) -> "Layout":
    return EventSet.from_description(description).layout


class EventSet:
    """Base class of event sets; declare :class:`Event` and :class:`Span` attributes.

    Subclass keywords: ``name`` (default: the class name in snake case), used
    by exporters (``<name>.<field>`` attributes, the stream label); and
    ``production_rates={"type": rate}``, the sample rates of
    :meth:`TracingConfig.production`.  Kernel methods (``@kernel_method``)
    declared here can be called on any tracer of the set.
    """

    set_name: typing.ClassVar[str] = "events"
    layout: typing.ClassVar[Layout] = None
    _kernel_methods: typing.ClassVar[dict] = {}

    def __init_subclass__(cls, name: str | None = None, production_rates: dict | None = None,
                          **kwargs):
        super().__init_subclass__(**kwargs)
        types, methods = {}, {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if isinstance(value, EventKind):
                    types[attr] = value
                elif isinstance(value, kernel_method):
                    methods[attr] = value
        if name is not None:
            if not isinstance(name, str) or not re.match(r"^[a-zA-Z_][a-zA-Z0-9_]*$", name):
                raise TypeError(f"{cls.__name__}: set name must be an identifier, got {name!r}")
            cls.set_name = name
        elif EventSet in cls.__bases__ and "set_name" not in vars(cls):
            cls.set_name = snake_case(cls.__name__)
        for attr in list(types) + list(methods):
            if attr in _reserved:
                raise TypeError(f"{cls.__name__}.{attr}: the name {attr!r} is taken by Tracer "
                                f"itself (tracer.{attr} is the tracer's own attribute); "
                                f"rename the event type or kernel method")
        ordered = []
        for i, (attr, t) in enumerate(types.items()):
            if t.name not in (None, attr):     # inherited under another name: copy
                t = type(t)(t.help, **t.fields)
            t.name, t.index = attr, i
            ordered.append(t)
        rates = dict(getattr(cls, "_production_rates", {}))
        if production_rates is not None:
            for key, rate in dict(production_rates).items():
                if key not in types:
                    raise ValueError(f"production_rates: unknown event type {key!r}")
                rates[key] = as_rate(rate, f"production_rates[{key}]")
        cls._production_rates = rates
        cls.layout = Layout(cls.set_name, ordered, rates) if ordered else None
        cls._kernel_methods = methods       # registered by each TracerType made for the set

    @classmethod
    def types(cls) -> dict:
        """Declared types by name, in table order."""
        return {t.name: t for t in cls.layout.types} if cls.layout else {}

    @classmethod
    def type_enum(cls) -> type:
        """An IntEnum of the declared types (``PRIMING = 0``, ...), derived from the table."""
        cached = cls.__dict__.get("_type_enum")
        if cached is None:
            cached = enum.IntEnum(f"{cls.__name__}Type",
                                  {t.name.upper(): t.index for t in cls.layout.types})
            cls._type_enum = cached
        return cached

    @classmethod
    def dtype(cls) -> np.dtype:
        """The dtype of drained events: ``timestamp``, ``sequence``, ``thread`` (OS id),
        ``span_id``, ``parent_span_id``, ``trace_id``, each field in a column of its own,
        ``ring``, ``event_type``, ``flags``; packed without gaps (np.save keeps it)."""
        return cls.layout.dtype

    @classmethod
    def from_description(cls, description: str) -> type:
        """Rebuild an event-set class from a stored description (enums become new IntEnums)."""
        d = json.loads(description)
        if not isinstance(d, dict) or d.get("format") != "engram-numba.event-set" \
                or d.get("version") != 1 or d.get("slot_size") != SLOT_SIZE:
            raise ValueError("not an event-set description this version reads")
        attrs = {}
        for t in d["types"]:
            if not isinstance(t, dict) or not isinstance(t.get("name"), str) \
                    or not _NAME.match(t["name"]):
                raise ValueError(f"bad event type entry {t!r}"[:200])
            attrs[t["name"]] = _kind_from_description(t)
        rebuilt = type(f"Attached_{d['name']}", (EventSet,), attrs, name=str(d["name"]),
                       production_rates=d.get("production_rates") or {})
        if rebuilt.layout is None or rebuilt.layout.description != description:
            raise ValueError("the stored layout differs from the one this version computes")
        return rebuilt


_reserved: frozenset = frozenset()


def reserve_names(names) -> None:
    """Called by the tracer module: the names a Tracer and its instances use themselves,
    which event types and kernel methods must not take (``tracer.<name>`` would find the
    tracer's own attribute in Python while a kernel finds the event)."""
    global _reserved
    _reserved = _reserved | frozenset(names)


def reserved_names() -> frozenset:
    """The names event types and kernel methods cannot have (see :func:`reserve_names`)."""
    return _reserved


# -- event arrays -----------------------------------------------------------------------------

def schema_of(events) -> Layout:
    """The layout of an event array (from its dtype), or TypeError/ValueError saying why not.

    Arrays loaded from a file (``np.load``) are recognised by their dtype, which names
    the set: the set must be declared in this process (import the module that declares
    it, or attach to a tracer file of it)."""
    if not isinstance(events, np.ndarray):
        raise TypeError(f"expected a numpy array of events, got {type(events).__name__}")
    layout = _LAYOUTS.get(events.dtype) if events.dtype.names else None
    if layout is None:
        title = None
        if events.dtype.names and "event_type" in events.dtype.names:
            field = events.dtype.fields["event_type"]
            title = field[2] if len(field) > 2 else None
        if isinstance(title, str) and title.startswith(TITLE_PREFIX + ":"):
            _, set_name, digest = (title.split(":") + ["", ""])[:3]
            raise ValueError(f"events of event set {set_name!r} (layout {digest}), which is "
                             f"not declared in this process: import the module that declares "
                             f"it (or attach to a rings file of it) before reading them")
        raise ValueError(f"expected events of an event set (the records a tracer's drain() "
                         f"or read() returns, or np.load of them), got dtype {events.dtype}")
    return layout


def as_events(events) -> tuple:
    """``(events, layout)``: a 1-d event array made contiguous and aligned, and its layout.

    Every encoder and exporter takes its input through here, because the compiled
    ones read the records as 64-bit words: an array of another dtype or shape would
    be read past its end.
    """
    layout = schema_of(events)
    if events.ndim != 1:
        raise ValueError(f"expected a 1-d array of events, got shape {events.shape}")
    return np.require(events, requirements=("C", "A")), layout


def concat(batches, layout: Layout | None = None) -> np.ndarray:
    """Join event arrays of one set (``np.concatenate`` does the same for one set's
    arrays; this also checks that they are of one set)."""
    checked = [as_events(b) for b in batches]
    if not checked:
        if layout is None:
            raise ValueError("concat of no batches needs the layout")
        return np.empty(0, dtype=layout.dtype)
    first = checked[0][1]
    for _, other in checked[1:]:
        if other != first:
            raise ValueError("cannot join events of different event sets")
    return np.concatenate([b for b, _ in checked]).astype(first.dtype, copy=False)

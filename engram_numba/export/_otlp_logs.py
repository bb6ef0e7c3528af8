"""Compiled protobuf encoding of cognitive events as OTLP ``LogRecord``s.

Building ``opentelemetry-proto`` message objects takes ~165 ms for 10,000
events here; this loop writes the same wire format (field numbers of
``opentelemetry/proto/logs/v1/logs.proto``) in about a millisecond.  The
envelope (resource, scope) is serialised by the official message classes, and
the tests decode everything with them.

Each ``LogRecord``::

    1  time_unix_nano           fixed64   event time (unix ns)
    11 observed_time_unix_nano  fixed64   export time
    2  severity_number          INFO (9)
    3  severity_text            "INFO"
    5  body                     string    event type ("priming", ...)
    12 event_name               string    "engram.<event type>"
    6  attributes               engram.event_type, engram.thread, engram.sequence,
                                and every payload field as engram.<field>:
                                enums as strings, integers as int (u64 values are
                                sent as the int64 with the same bits), floats as
                                double (the float32's shortest decimal, as in JSON)
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..tracing.events import as_events
from ._jsontext import Pieces, _shortest, _unscale, copy_bytes, put_piece

SEVERITY_INFO = 9


def varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return varint((number << 3) | 2) + varint(len(payload)) + payload


@njit(cache=True)
def _varint(buf, pos, value):
    value = np.uint64(value)
    while value >= np.uint64(0x80):
        buf[pos] = np.uint8((value & np.uint64(0x7F)) | np.uint64(0x80))
        value >>= np.uint64(7)
        pos += 1
    buf[pos] = np.uint8(value)
    return pos + 1


@njit(cache=True)
def _varint_size(value):
    value = np.uint64(value)
    n = 1
    while value >= np.uint64(0x80):
        value >>= np.uint64(7)
        n += 1
    return n


@njit(cache=True)
def _fixed64(buf, pos, value):
    value = np.uint64(value)
    for i in range(8):
        buf[pos + i] = np.uint8((value >> np.uint64(8 * i)) & np.uint64(0xFF))
    return pos + 8


@njit(cache=True)
def _f32_as_double(bits):
    """The double nearest the float32's shortest decimal (0.7f -> 0.7); NaN/inf kept."""
    bits = np.uint32(bits)
    v = np.float64(bits.view(np.float32))
    if not np.isfinite(v) or v == 0.0:
        return v
    negative = v < 0
    magnitude = bits & np.uint32(0x7FFFFFFF)
    m, nd, k = _shortest(abs(v), magnitude)
    d = _unscale(m, k)
    return -d if negative else d


@njit(cache=True)
def _attr_int(buf, pos, flat, starts, lengths, key, value):
    value = np.uint64(value)
    av = 1 + _varint_size(value)                       # 0x18 varint
    kv = lengths[key] + 1 + _varint_size(av) + av       # key, 0x12 len av
    buf[pos] = 0x32
    pos = _varint(buf, pos + 1, kv)
    pos = put_piece(buf, pos, flat, starts, lengths, key)
    buf[pos] = 0x12
    pos = _varint(buf, pos + 1, av)
    buf[pos] = 0x18
    return _varint(buf, pos + 1, value)


@njit(cache=True)
def _attr_double(buf, pos, flat, starts, lengths, key, value):
    kv = lengths[key] + 2 + 9
    buf[pos] = 0x32
    pos = _varint(buf, pos + 1, kv)
    pos = put_piece(buf, pos, flat, starts, lengths, key)
    buf[pos] = 0x12
    buf[pos + 1] = 9
    buf[pos + 2] = 0x21
    return _fixed64(buf, pos + 3, np.float64(value).view(np.uint64))


@njit(cache=True)
def encode_records(words, n, observed, out, scratch, flat, starts, lengths):
    """Write ``n`` events as ScopeLogs.log_records fields (tag 2) into ``out``; returns the end.

    Pieces (see :data:`PIECES`): 0..4 per-type constants (body, event_name,
    engram.event_type attribute), 5..7 priming-type attributes, 8..10
    interference-type attributes, then attribute keys from KEY0.
    """
    pos = 0
    lo32 = np.uint64(0xFFFFFFFF)
    for e in range(n):
        b = e * 8
        w2 = words[b + 2]
        t = np.int64(w2 & np.uint64(0xFF))
        sub = np.int64((w2 >> np.uint64(8)) & np.uint64(0xFF))
        f32 = (w2 >> np.uint64(32)) & lo32
        w3 = words[b + 3]
        w4 = words[b + 4]
        p = 0
        scratch[p] = 0x09
        p = _fixed64(scratch, p + 1, words[b + 1])
        scratch[p] = 0x59
        p = _fixed64(scratch, p + 1, observed)
        p = put_piece(scratch, p, flat, starts, lengths, SEVERITY)
        p = put_piece(scratch, p, flat, starts, lengths, min(t, 4))              # body, name, type
        p = _attr_int(scratch, p, flat, starts, lengths, K_THREAD, (w2 >> np.uint64(16)) & np.uint64(0xFFFF))
        p = _attr_int(scratch, p, flat, starts, lengths, K_SEQUENCE, words[b])
        if t == 0:
            p = put_piece(scratch, p, flat, starts, lengths, 5 + min(sub, 3))
            p = _attr_double(scratch, p, flat, starts, lengths, K_STRENGTH, _f32_as_double(f32))
            p = _attr_int(scratch, p, flat, starts, lengths, K_SOURCE, w3)
            p = _attr_int(scratch, p, flat, starts, lengths, K_TARGET, w4)
        elif t == 1:
            p = put_piece(scratch, p, flat, starts, lengths, 9 + min(sub, 3))
            p = _attr_double(scratch, p, flat, starts, lengths, K_MAGNITUDE, _f32_as_double(f32))
            p = _attr_int(scratch, p, flat, starts, lengths, K_EPISODE_TARGET, w3)
            p = _attr_int(scratch, p, flat, starts, lengths, K_COMPETING, w4 & lo32)
        elif t == 2:
            p = _attr_int(scratch, p, flat, starts, lengths, K_EPISODE, w3)
            p = _attr_double(scratch, p, flat, starts, lengths, K_WINDOW, _f32_as_double(f32))
            p = _attr_double(scratch, p, flat, starts, lengths, K_PLASTICITY,
                             _f32_as_double(w4 >> np.uint64(32)))
            p = _attr_int(scratch, p, flat, starts, lengths, K_MODS, w4 & lo32)
        elif t == 3:
            p = _attr_int(scratch, p, flat, starts, lengths, K_LURE, w3)
            p = _attr_int(scratch, p, flat, starts, lengths, K_LIST, w4 & lo32)
            p = _attr_double(scratch, p, flat, starts, lengths, K_CONF, _f32_as_double(f32))
        out[pos] = 0x12
        pos = _varint(out, pos + 1, p)
        copy_bytes(out, pos, scratch, 0, p)
        pos += p
    return pos


# -- constant pieces ------------------------------------------------------------------

_TYPES = ("priming", "interference", "reconsolidation", "false_memory", "unknown")
_PRIMING = ("semantic", "associative", "repetition", "unknown")
_INTERFERENCE = ("proactive", "retroactive", "fan", "unknown")


def _string_attr(key: str, value: str) -> bytes:
    any_value = field_bytes(1, value.encode())
    return field_bytes(6, field_bytes(1, key.encode()) + field_bytes(2, any_value))


def _type_piece(name: str) -> bytes:
    return (field_bytes(5, field_bytes(1, name.encode()))          # body
            + field_bytes(12, f"engram.{name}".encode())             # event_name
            + _string_attr("engram.event_type", name))


KEYS = ["thread", "sequence", "strength", "source_node", "target_node", "magnitude",
        "target_episode_id", "competing_episode_count", "episode_id", "window_position",
        "plasticity_factor", "modification_count", "critical_lure_hash", "source_list_size",
        "reconstruction_confidence"]
_pieces = ([_type_piece(n) for n in _TYPES]
           + [_string_attr("engram.priming_type", n) for n in _PRIMING]
           + [_string_attr("engram.interference_type", n) for n in _INTERFERENCE]
           + [bytes([0x10, SEVERITY_INFO]) + field_bytes(3, b"INFO")]
           + [field_bytes(1, f"engram.{k}".encode()) for k in KEYS])
SEVERITY = 13
KEY0 = 14
(K_THREAD, K_SEQUENCE, K_STRENGTH, K_SOURCE, K_TARGET, K_MAGNITUDE, K_EPISODE_TARGET,
 K_COMPETING, K_EPISODE, K_WINDOW, K_PLASTICITY, K_MODS, K_LURE, K_LIST, K_CONF) = \
    range(KEY0, KEY0 + len(KEYS))
_PIECES = Pieces(_pieces)

MAX_RECORD = 640


def log_records(events: np.ndarray, observed_ns: int) -> bytes:
    """The events as repeated ``ScopeLogs.log_records`` fields (wire format)."""
    events = as_events(events)
    n = events.size
    if n == 0:
        return b""
    words = events.view(np.uint64)
    out = np.empty(n * MAX_RECORD, dtype=np.uint8)
    scratch = np.empty(MAX_RECORD, dtype=np.uint8)
    end = encode_records(words, n, np.uint64(observed_ns), out, scratch, _PIECES.flat,
                         _PIECES.starts, _PIECES.lengths)
    return out[:end].tobytes()

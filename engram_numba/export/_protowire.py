"""The Protocol Buffers wire format, as far as the exporters write or read it by hand.

OTLP logs are encoded by a compiled loop (:mod:`.otlp.logs`: the official message
classes take ~100x longer) and the envelopes around them, like the Prometheus
protobuf exposition's length-delimited ``MetricFamily`` stream
(:mod:`.prometheus_proto`), need a few bytes written around serialized messages:

* :func:`varint`, :func:`field_bytes` (Python) - a varint, a length-delimited field;
* :func:`put_varint`, :func:`varint_size`, :func:`put_fixed64` (compiled) - the same
  written into a byte buffer from a kernel;
* :func:`read_varint` - a varint read back (a length prefix), refusing truncation.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["varint", "field_bytes", "read_varint", "put_varint", "varint_size", "put_fixed64"]


def varint(value: int) -> bytes:
    """``value`` (taken modulo 2**64, as protobuf does for negative int64) as a varint."""
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


def read_varint(data: bytes, pos: int, what: str = "varint") -> tuple:
    """``(value, position after it)`` of the varint at ``data[pos:]``; ``ValueError``
    ("truncated <what>") if the data ends inside it or it runs past 64 bits."""
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError(f"truncated {what}")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


@njit(cache=True)
def put_varint(buf, pos, value):
    """Write ``value`` as a varint at ``buf[pos:]``; returns the position after it."""
    value = np.uint64(value)
    while value >= np.uint64(0x80):
        buf[pos] = np.uint8((value & np.uint64(0x7F)) | np.uint64(0x80))
        value >>= np.uint64(7)
        pos += 1
    buf[pos] = np.uint8(value)
    return pos + 1


@njit(cache=True)
def varint_size(value):
    """Bytes of ``value`` as a varint."""
    value = np.uint64(value)
    n = 1
    while value >= np.uint64(0x80):
        value >>= np.uint64(7)
        n += 1
    return n


@njit(cache=True)
def put_fixed64(buf, pos, value):
    """Write ``value`` as 8 little-endian bytes at ``buf[pos:]``; returns the position after."""
    value = np.uint64(value)
    for i in range(8):
        buf[pos + i] = np.uint8((value >> np.uint64(8 * i)) & np.uint64(0xFF))
    return pos + 8

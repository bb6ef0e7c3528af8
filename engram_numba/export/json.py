"""Cognitive events as JSON: JSON Lines and a batch document, with shipped schemas.

One event per line::

    {"timestamp":1795731552667751424,"event_type":"priming","thread":1,"sequence":5,
     "priming_type":"semantic","strength":0.7,"source_node":3,"target_node":9}

``timestamp`` is unix nanoseconds, ``event_type`` one of ``priming``,
``interference``, ``reconsolidation``, ``false_memory``, ``thread`` the ring of
the recording thread, ``sequence`` the event's position in that ring, and the
per-type fields follow by name (enum fields as lowercase names).  The batch
document is ``{"events": [...], "exported_at": <unix s>, "count": n}``.
Schemas: :func:`schema` (``"event"`` / ``"document"``), files under
``engram_numba/export/schemas/``.

Encoding is a compiled loop over the raw 64-byte events (see :mod:`._jsontext`
for the number formatting).
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
from numba import njit

from ..tracing.events import as_events
from ._jsontext import Pieces, put_piece, write_f32, write_u64

__all__ = ["events_to_jsonl", "events_to_document", "event_records", "schema",
           "JsonLinesExporter"]

_MAX_EVENT_BYTES = 400
_SCHEMAS = Path(__file__).resolve().parent / "schemas"


def _b(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), dtype=np.uint8).copy()


# constant pieces of every line
K_TS = _b('{"timestamp":')
K_TYPE = [_b(f',"event_type":"{n}","thread":') for n in
          ("priming", "interference", "reconsolidation", "false_memory")]
K_SEQ = _b(',"sequence":')
PRIMING_TYPES = [_b(f',"priming_type":"{n}","strength":') for n in
                 ("semantic", "associative", "repetition", "unknown")]
INTERFERENCE_TYPES = [_b(f',"interference_type":"{n}","magnitude":') for n in
                      ("proactive", "retroactive", "fan", "unknown")]
K_SOURCE = _b(',"source_node":')
K_TARGET = _b(',"target_node":')
K_EPISODE_TARGET = _b(',"target_episode_id":')
K_COMPETING = _b(',"competing_episode_count":')
K_EPISODE = _b(',"episode_id":')
K_WINDOW = _b(',"window_position":')
K_PLASTICITY = _b(',"plasticity_factor":')
K_MODS = _b(',"modification_count":')
K_LURE = _b(',"critical_lure_hash":')
K_LIST = _b(',"source_list_size":')
K_CONF = _b(',"reconstruction_confidence":')
K_UNKNOWN = _b(',"event_type":"unknown","thread":')


# piece numbers
TS, SEQ, SOURCE, TARGET, EP_TARGET, COMPETING, EPISODE, WINDOW, PLASTICITY, MODS, LURE, LIST, \
    CONF = range(13)
TYPE0 = 13          # 5 event types (the 5th: unknown)
PRIMING0 = 18       # 4 priming types (the 4th: unknown)
INTERFERENCE0 = 22  # 4 interference types
_PIECES = Pieces([K_TS, K_SEQ, K_SOURCE, K_TARGET, K_EPISODE_TARGET, K_COMPETING, K_EPISODE,
                   K_WINDOW, K_PLASTICITY, K_MODS, K_LURE, K_LIST, K_CONF]
                  + K_TYPE + [K_UNKNOWN] + PRIMING_TYPES + INTERFERENCE_TYPES)


@njit(cache=True)
def _encode(words, n, buf, sep, flat, starts, lengths):
    pos = 0
    lo32 = np.uint64(0xFFFFFFFF)
    for e in range(n):
        if e:
            buf[pos] = sep
            pos += 1
        b = e * 8
        w2 = words[b + 2]
        t = np.int64(w2 & np.uint64(0xFF))
        sub = np.int64((w2 >> np.uint64(8)) & np.uint64(0xFF))
        thread = (w2 >> np.uint64(16)) & np.uint64(0xFFFF)
        f32 = (w2 >> np.uint64(32)) & lo32
        w3 = words[b + 3]
        w4 = words[b + 4]
        pos = put_piece(buf, pos, flat, starts, lengths, TS)
        pos = write_u64(buf, pos, words[b + 1])
        pos = put_piece(buf, pos, flat, starts, lengths, TYPE0 + min(t, 4))
        pos = write_u64(buf, pos, thread)
        pos = put_piece(buf, pos, flat, starts, lengths, SEQ)
        pos = write_u64(buf, pos, words[b])
        if t == 0:
            pos = put_piece(buf, pos, flat, starts, lengths, PRIMING0 + min(sub, 3))
            pos = write_f32(buf, pos, f32)
            pos = put_piece(buf, pos, flat, starts, lengths, SOURCE)
            pos = write_u64(buf, pos, w3)
            pos = put_piece(buf, pos, flat, starts, lengths, TARGET)
            pos = write_u64(buf, pos, w4)
        elif t == 1:
            pos = put_piece(buf, pos, flat, starts, lengths, INTERFERENCE0 + min(sub, 3))
            pos = write_f32(buf, pos, f32)
            pos = put_piece(buf, pos, flat, starts, lengths, EP_TARGET)
            pos = write_u64(buf, pos, w3)
            pos = put_piece(buf, pos, flat, starts, lengths, COMPETING)
            pos = write_u64(buf, pos, w4 & lo32)
        elif t == 2:
            pos = put_piece(buf, pos, flat, starts, lengths, EPISODE)
            pos = write_u64(buf, pos, w3)
            pos = put_piece(buf, pos, flat, starts, lengths, WINDOW)
            pos = write_f32(buf, pos, f32)
            pos = put_piece(buf, pos, flat, starts, lengths, PLASTICITY)
            pos = write_f32(buf, pos, w4 >> np.uint64(32))
            pos = put_piece(buf, pos, flat, starts, lengths, MODS)
            pos = write_u64(buf, pos, w4 & lo32)
        elif t == 3:
            pos = put_piece(buf, pos, flat, starts, lengths, LURE)
            pos = write_u64(buf, pos, w3)
            pos = put_piece(buf, pos, flat, starts, lengths, LIST)
            pos = write_u64(buf, pos, w4 & lo32)
            pos = put_piece(buf, pos, flat, starts, lengths, CONF)
            pos = write_f32(buf, pos, f32)
        buf[pos] = 125  # '}'
        pos += 1
    return pos


def _encode_events(events: np.ndarray, sep: bytes) -> bytes:
    events = as_events(events)
    n = events.size
    if n == 0:
        return b""
    words = events.view(np.uint64)
    buf = np.empty(n * _MAX_EVENT_BYTES, dtype=np.uint8)
    end = _encode(words, n, buf, sep[0], _PIECES.flat, _PIECES.starts, _PIECES.lengths)
    return buf[:end].tobytes()


def events_to_jsonl(events: np.ndarray) -> bytes:
    """One JSON object per line (a trailing newline after the last)."""
    body = _encode_events(events, b"\n")
    return body + b"\n" if body else b""


def events_to_document(events: np.ndarray, exported_at: float | None = None) -> bytes:
    """``{"events": [...], "exported_at": <unix s>, "count": n}``."""
    exported_at = time.time() if exported_at is None else exported_at
    return (b'{"events":[' + _encode_events(events, b",") + b'],"exported_at":'
            + repr(float(exported_at)).encode() + b',"count":' + str(len(events)).encode() + b"}")


def event_records(events: np.ndarray) -> list:
    """The events as Python dicts, exactly as exported (for other exporters and tests)."""
    text = _encode_events(events, b",")
    return json.loads(b"[" + text + b"]") if text else []


@lru_cache(maxsize=None)
def schema(name: str = "event") -> dict:
    """The JSON Schema of one event (``"event"``) or of a batch document (``"document"``)."""
    files = {"event": "event.schema.json", "document": "events-document.schema.json"}
    if name not in files:
        raise ValueError(f"schema name must be one of {sorted(files)}")
    return json.loads((_SCHEMAS / files[name]).read_text())




class JsonLinesExporter:
    """A collector exporter appending each batch to a JSON Lines file."""

    name = "jsonl"

    def __init__(self, path):
        self.path = path
        self._file = open(path, "ab")

    def export(self, events: np.ndarray) -> None:
        self._file.write(events_to_jsonl(events))
        self._file.flush()

    def shutdown(self) -> None:
        self._file.close()

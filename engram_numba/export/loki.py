"""Grafana Loki push: events as JSON log lines in low-cardinality streams.

``POST <url>/loki/api/v1/push`` with::

    {"streams": [{"stream": {"service": "engram", "event_set": "engram",
                             "event_type": "priming", "priming_type": "semantic"},
                  "values": [["<unix ns>", "<event as a JSON line>"], ...]}, ...]}

Streams are labelled only by ``service``, ``event_set``, ``event_type`` and the
type's enum fields (member names): their number is bounded by the set's
declaration (types times enum members), whatever the workload, as Loki wants.
Everything else (ids, strengths, ...) is in the line, which is exactly the
JSON export of the event.  A span's end, which carries no fields, is filed in
its begin's stream.  Values are sorted by time within each stream.
Options: gzip, tenant (``X-Scope-OrgID``), basic auth, extra headers, TLS.
Success is 204; failures follow the shared HTTP rules.
"""

from __future__ import annotations

import json

import numpy as np

from ..tracing.kinds import SPAN
from ..tracing.schema import FLAG_BEGIN, FLAG_END, as_events
from . import _http
from .json import _encode_events

__all__ = ["LokiExporter", "push_body"]


MAX_OPEN_SPANS = 1 << 16      # span begins remembered for the labels of their ends


def push_body(events: np.ndarray, service: str | None = None,
              extra_labels: dict | None = None, open_spans: dict | None = None,
              tracer=None) -> bytes:
    """The JSON body of one push request for ``events`` (``service`` defaults to the set name).

    A span's end carries no fields of its own: it goes to the stream of its begin
    (the begin's enum fields), found in this batch or in ``open_spans`` (span id ->
    stream, updated here; an exporter keeps one across batches).  An end whose
    begin was never seen gets ``unknown`` for its enum labels.  ``tracer`` (the one
    that recorded the events) gives the lines' 128-bit ``trace_id``.
    """
    events, layout = as_events(events)
    if events.size == 0:
        return b'{"streams":[]}'
    service = layout.name if service is None else service
    lines = _encode_events(events, b"\n", tracer).split(b"\n")
    timestamps = events["timestamp"]
    types = events["event_type"].astype(np.int64)
    keys = types.copy()
    label_fields = {}
    stride = len(layout.types) + 1
    for t in layout.types:
        label_fields[t.index] = [(n, ft) for n, ft in t.fields.items() if ft.code == "e"]
    # one key per (type, enum values): mixed radix over the type's enum fields
    for t in layout.types:
        rows = types == t.index
        if not rows.any():
            continue
        radix = stride
        for name, ft in label_fields[t.index]:
            values = events[name][rows].astype(np.int64)
            codes = np.searchsorted(ft.values, values)
            codes = np.where((codes < len(ft.values)) &
                             (np.asarray(ft.values)[np.minimum(codes, len(ft.values) - 1)]
                              == values), codes, len(ft.values))
            keys[rows] += codes * radix
            radix *= len(ft.values) + 1
    _span_end_keys(events, layout, types, keys, label_fields, stride,
                   {} if open_spans is None else open_spans)
    streams = []
    for key in np.unique(keys):
        rows = np.flatnonzero(keys == key)
        rows = rows[np.argsort(timestamps[rows], kind="stable")]
        t = int(types[rows[0]])
        labels = {**(extra_labels or {}), "service": service, "event_set": layout.name}
        if t < len(layout.types):
            labels["event_type"] = layout.types[t].name
            rest = int(key) // stride
            for name, ft in label_fields[t]:
                n = len(ft.values) + 1
                code = rest % n
                rest //= n
                labels[name] = ft.names[ft.values[code]] if code < len(ft.values) else "unknown"
        else:
            labels["event_type"] = "unknown"
        streams.append({"stream": labels,
                        "values": [[str(int(timestamps[i])), lines[i].decode()] for i in rows]})
    return json.dumps({"streams": streams}, separators=(",", ":")).encode()


def _span_end_keys(events, layout, types, keys, label_fields, stride, open_spans) -> None:
    """Give every span end the stream key of its begin (see :func:`push_body`)."""
    labelled = [t.index for t in layout.types if t.kind is SPAN and label_fields[t.index]]
    if not labelled:
        return
    rows = np.flatnonzero(np.isin(types, labelled))
    if not rows.size:
        return
    phases = (events["flags"][rows] & 3).tolist()
    ids = events["span_id"][rows].tolist()
    for i, phase, span_id in zip(rows.tolist(), phases, ids):
        if phase == FLAG_BEGIN:
            open_spans[span_id] = int(keys[i])
            if len(open_spans) > MAX_OPEN_SPANS:         # ends lost: forget the oldest
                del open_spans[next(iter(open_spans))]
        elif phase == FLAG_END:
            key = open_spans.pop(span_id, None)
            if key is None:                               # its begin was never seen
                t = int(types[i])
                key, radix = t, stride
                for _, ft in label_fields[t]:
                    key += len(ft.values) * radix
                    radix *= len(ft.values) + 1
            keys[i] = key


class LokiExporter:
    """Collector exporter pushing each batch to Loki."""

    name = "loki"

    def __init__(self, url: str, *, service: str | None = None, labels: dict | None = None,
                 tenant: str | None = None, basic_auth: tuple | None = None,
                 headers: dict | None = None, compression: str | None = "gzip",
                 timeout: float = 10.0, insecure: bool = False, ca_file: str | None = None):
        base = url.rstrip("/")
        self.url = base if base.endswith("/loki/api/v1/push") else f"{base}/loki/api/v1/push"
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"Loki URL must be http(s)://..., got {url!r}")
        _http.check_url(self.url)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
                or not 0 < timeout < float("inf"):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if compression not in (None, "gzip"):
            raise ValueError(f"compression must be None or 'gzip', got {compression!r}")
        self.service = service
        self.labels = dict(labels or {})
        self.headers = dict(headers or {})
        if tenant:
            self.headers["X-Scope-OrgID"] = tenant
        if basic_auth:
            self.headers["Authorization"] = _http.basic_auth(*basic_auth)
        self.compress = compression == "gzip"
        self.timeout = timeout
        self.context = _http.ssl_context(ca_file, insecure) if self.url.startswith("https") else None
        self._open_spans = {}        # span id -> stream of its begin, across batches
        self._tracer = None

    def bind(self, tracer) -> None:
        """Compile the encoder now (a TraceCollector calls this before it starts), so that
        the first export does not hold up the collector's draining; the tracer gives
        the lines' trace ids."""
        self._tracer = tracer
        layout = getattr(tracer, "layout", None)
        if layout is not None:
            push_body(np.zeros(1, dtype=layout.dtype))

    def export(self, events: np.ndarray, deadline: float | None = None) -> None:
        """Push one batch; ``deadline`` (``time.monotonic()``) bounds the whole request.
        A span's end goes to the stream of its begin, even when an earlier batch held
        the begin; a retried batch pairs the same way (the spans still open are kept
        only once a push succeeded)."""
        events, _ = as_events(events)
        if events.size:
            open_spans = dict(self._open_spans)
            _http.post(self.url, push_body(events, self.service, self.labels, open_spans,
                                           self._tracer),
                       "application/json", headers=self.headers, compress=self.compress,
                       timeout=self.timeout, context=self.context, deadline=deadline)
            self._open_spans = open_spans

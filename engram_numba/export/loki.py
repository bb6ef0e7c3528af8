"""Grafana Loki push: events as JSON log lines in low-cardinality streams.

``POST <url>/loki/api/v1/push`` with::

    {"streams": [{"stream": {"service": "engram", "event_type": "priming",
                             "priming_type": "semantic"},
                  "values": [["<unix ns>", "<event as a JSON line>"], ...]}, ...]}

Labels are only ``service``, ``event_type`` and the type's enum
(``priming_type`` / ``interference_type``): at most 9 streams whatever the
workload, as Loki wants.  Everything else (ids, strengths, ...) is in the line,
which is exactly the JSON export of the event.  Values are sorted by time
within each stream.  Options: gzip, tenant (``X-Scope-OrgID``), basic auth,
extra headers, TLS.  Success is 204; failures follow the shared HTTP rules.
"""

from __future__ import annotations

import json

import numpy as np

from . import _http
from ..tracing.events import as_events
from .json import _encode_events

__all__ = ["LokiExporter", "push_body"]

_ENUM_LABEL = {"priming": ("priming_type", ("semantic", "associative", "repetition")),
               "interference": ("interference_type", ("proactive", "retroactive", "fan"))}
_TYPES = ("priming", "interference", "reconsolidation", "false_memory")


def push_body(events: np.ndarray, service: str = "engram", extra_labels: dict | None = None) -> bytes:
    """The JSON body of one push request for ``events``."""
    events = as_events(events)
    if events.size == 0:
        return b'{"streams":[]}'
    lines = _encode_events(events, b"\n").split(b"\n")
    timestamps = events["timestamp"]
    types = events["event_type"]
    subtypes = events["priming_type"]     # byte 17: priming_type / interference_type
    keys = types.astype(np.int64) * 8 + np.where(types <= 1, subtypes, 0)
    streams = []
    for key in np.unique(keys):
        rows = np.flatnonzero(keys == key)
        rows = rows[np.argsort(timestamps[rows], kind="stable")]
        t, sub = divmod(int(key), 8)
        name = _TYPES[t] if t < len(_TYPES) else "unknown"
        labels = {**(extra_labels or {}), "service": service, "event_type": name}
        if name in _ENUM_LABEL:
            label, values = _ENUM_LABEL[name]
            labels[label] = values[sub] if sub < len(values) else "unknown"
        streams.append({"stream": labels,
                        "values": [[str(int(timestamps[i])), lines[i].decode()] for i in rows]})
    return json.dumps({"streams": streams}, separators=(",", ":")).encode()


class LokiExporter:
    """Collector exporter pushing each batch to Loki."""

    name = "loki"

    def __init__(self, url: str, *, service: str = "engram", labels: dict | None = None,
                 tenant: str | None = None, basic_auth: tuple | None = None,
                 headers: dict | None = None, compression: str | None = "gzip",
                 timeout: float = 10.0, insecure: bool = False, ca_file: str | None = None):
        base = url.rstrip("/")
        self.url = base if base.endswith("/loki/api/v1/push") else f"{base}/loki/api/v1/push"
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"Loki URL must be http(s)://..., got {url!r}")
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

    def export(self, events: np.ndarray, deadline: float | None = None) -> None:
        """Push one batch; ``deadline`` (``time.monotonic()``) bounds the whole request."""
        events = as_events(events)
        if events.size:
            _http.post(self.url, push_body(events, self.service, self.labels), "application/json",
                       headers=self.headers, compress=self.compress, timeout=self.timeout,
                       context=self.context, deadline=deadline)

"""Every encoder and exporter that takes events refuses arrays it would misread.

The compiled ones read the records as 64-bit words, so an array of another
dtype, itemsize or shape (the rings' raw 64-byte slots included) would be read
past its end or misread.  Each bad input must give a TypeError or
ValueError; a strided, reversed or unaligned array of the right dtype is
encoded exactly like its contiguous copy.  Run in a subprocess: a regression
here reads foreign memory or crashes.
"""

import json
import subprocess
import sys
import textwrap

CODE = r"""
import json
import numpy as np
from engram_numba import CognitiveTracer, TracingConfig, EVENT_DTYPE
from engram_numba.tracing.schema import concat
from engram_numba.export.json import events_to_jsonl, events_to_document, event_records
from engram_numba.export.otlp import logs_request, OtlpLogExporter
from engram_numba.export.otlp.logs import log_records
from engram_numba.export.loki import push_body, LokiExporter
from engram_numba.export.chrome import chrome_trace, ChromeTraceExporter
from engram_numba import viz

tr = CognitiveTracer(TracingConfig(ring_buffer_size=256, max_threads=2))
for i in range(20):
    tr.trace_priming(i % 3, 0.5 + i, i, 2 * i)
    tr.trace_false_memory(i, 3, 0.25)
good = tr.drain()

packed = np.dtype([(n, EVENT_DTYPE.fields[n][0]) for n in ("sequence", "timestamp", "event_type")])
size = EVENT_DTYPE.itemsize
raw = np.zeros(good.size * size + 8, np.uint8)
unaligned = raw[1:1 + good.size * size].view(EVENT_DTYPE)
unaligned[:] = good
bad = {
    "u64 words": np.zeros(10, np.uint64),
    "2 million u64": np.zeros(2_000_000, np.uint64),
    "bytes": np.zeros(640, np.uint8),
    "packed structured": np.zeros(10, packed),
    "2-d": np.zeros((5, 2), EVENT_DTYPE),
    "0-d": np.zeros((), EVENT_DTYPE),
    "list": [1, 2, 3],
    "bytes object": b"x" * 640,
    "byte-swapped": np.zeros(3, EVENT_DTYPE.newbyteorder()),
    "raw slots": np.zeros(3, tr.layout.slot_dtype),
}
encoders = {
    "jsonl": events_to_jsonl, "document": events_to_document, "records": event_records,
    "log_records": lambda e: log_records(e, 0), "logs_request": logs_request,
    "otlp exporter": OtlpLogExporter("http://127.0.0.1:9", protocol="http").export,
    "loki body": push_body, "loki exporter": LokiExporter("http://127.0.0.1:9").export,
    "chrome": chrome_trace, "chrome exporter": ChromeTraceExporter("/dev/null").export,
    "concat": lambda e: concat([e]), "rates figure": viz.event_rates_figure,
    "timeline figure": viz.timeline_figure,
}
refused, wrong = 0, []
for ename, encode in encoders.items():
    for bname, value in bad.items():
        try:
            encode(value)
        except (TypeError, ValueError):
            refused += 1
        else:
            wrong.append(f"{ename} accepted {bname}")
same = []
for variant in ("strided", "reversed", "unaligned"):
    arr = {"strided": np.repeat(good, 2)[::2], "reversed": good[::-1][::-1],
           "unaligned": unaligned}[variant]
    same.append(events_to_jsonl(arr) == events_to_jsonl(good))
    same.append(log_records(arr, 1) == log_records(good, 1))
    same.append(push_body(arr) == push_body(good))
print(json.dumps({"refused": refused, "wrong": wrong, "same": same,
                  "cases": len(encoders) * len(bad)}))
"""


def test_bad_event_arrays_are_refused_by_every_encoder_and_exporter():
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(CODE)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, (r.returncode, r.stderr[-3000:])
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["wrong"] == []
    assert out["refused"] == out["cases"]
    assert all(out["same"])

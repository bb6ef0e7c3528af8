"""A newcomer's tracing program: does anything get lost, and does anyone say so?

One nogil kernel emits events at a steady rate (paced by the monotonic clock)
into ``TracingConfig(ring_buffer_size=1 << 12, export_interval_ms=200)``, while a
``TraceCollector`` writes them to a Chrome trace and to JSON Lines.  At 34,000
events a second a 4,096-event ring fills in 120 ms, faster than a 200 ms
interval drains it.  Printed per rate: events written, delivered to each
exporter, lost (as the tracer and the collector report it) and the lines in
the JSON Lines file, which are counted independently of the library.

    python benchmarks/trace_loss.py                     # 34,000 events/s for 2 s
    python benchmarks/trace_loss.py --rates 34000 100000 --seconds 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading

import numpy as np
from numba import njit

from engram_numba import Event, EventSet, TraceCollector, Tracer, TracingConfig
from engram_numba.clock import monotonic_ns
from engram_numba.export.chrome import ChromeTraceExporter
from engram_numba.export.json import JsonLinesExporter


class Work(EventSet, name="work"):
    step = Event("One step of the work", k=np.uint32, value=np.float64)


@njit(nogil=True)
def produce(tr, rate, n):
    start = monotonic_ns()
    period = 1e9 / rate
    for k in range(n):
        due = start + np.int64(k * period)
        while monotonic_ns() < due:
            pass
        tr.step.emit(k, 0.5)
    return n


def run(rate: int, seconds: float, directory: str) -> dict:
    n = int(rate * seconds)
    tr = Tracer(Work, TracingConfig(ring_buffer_size=1 << 12, export_interval_ms=200))
    chrome_path = tempfile.mktemp(suffix=".json", dir=directory)
    jsonl_path = tempfile.mktemp(suffix=".jsonl", dir=directory)
    warnings = []

    class Catch(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                warnings.append(record.getMessage())

    handler = Catch()
    logging.getLogger("engram_numba").addHandler(handler)
    try:
        produce(tr, float(rate), 10)                     # compile outside the measurement
        tr.drain()
        col = TraceCollector(tr, [ChromeTraceExporter(chrome_path), JsonLinesExporter(jsonl_path)])
        col.start()
        worker = threading.Thread(target=produce, args=(tr, float(rate), n))
        worker.start()
        worker.join()
        report = col.stop(5)
    finally:
        logging.getLogger("engram_numba").removeHandler(handler)
    stats = tr.stats()["total"]
    with open(jsonl_path, "rb") as f:
        lines = sum(1 for _ in f)
    with open(chrome_path) as f:
        chrome = json.load(f)
    instants = sum(1 for e in chrome["traceEvents"] if e.get("ph") == "i")
    return {"rate": rate, "written": stats["written"] - 10, "delivered": stats["delivered"] - 10,
            "ring_dropped": stats["dropped"], "report_dropped": report["dropped_events"],
            "jsonl_lines": lines,
            "chrome_events": instants, "warnings": len(warnings),
            "first_warning": warnings[0] if warnings else None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", type=int, nargs="+", default=[34_000])
    p.add_argument("--seconds", type=float, default=2.0)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        rows = [run(rate, args.seconds, d) for rate in args.rates]
    cols = ["rate", "written", "delivered", "ring_dropped", "report_dropped", "jsonl_lines",
            "chrome_events", "warnings"]
    print(" ".join(f"{c:>14}" for c in cols))
    for r in rows:
        print(" ".join(f"{'-' if r[c] is None else r[c]:>14}" for c in cols))
    for r in rows:
        if r["first_warning"]:
            print(f"rate {r['rate']}: first warning: {r['first_warning']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

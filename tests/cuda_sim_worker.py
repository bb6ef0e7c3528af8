"""Run under NUMBA_ENABLE_CUDASIM=1 (tests/test_cuda_simulator.py): a set of the test's own
goes through a simulated CUDA kernel; prints what the parent checks, as JSON."""

import json
import sys

import numpy as np
from numba import cuda, njit

from engram_numba import (Counter, Event, EventSet, Gauge, Histogram, MetricSet, Span,
                          Tracer, TracingConfig, to_dataframe)
from engram_numba.export.otlp import metrics_request
from engram_numba.export.prometheus import exposition


class ShopKernelMetrics(MetricSet, name="shop"):
    orders = Counter("orders_total", "Orders by kind", labels={"kind": ["new", "repeat", "refund"]})
    items = Counter("items_total", "Items ordered", labels={"kind": ["new", "repeat", "refund"]})
    latency = Histogram("latency_seconds", "Time per order", bounds=[0.1, 0.5, 1.0, 5.0])
    spread = Histogram("spread", "Signed values", range=(1e-3, 1e3), negative=True)
    level = Gauge("level", "Up and down")
    last = Gauge("last", "Set once")


def record(m, kinds, n, xs, ys, i):
    m.orders.inc(kinds[i])
    m.items.labels("new").inc(n[i])
    m.latency.observe(xs[i])
    m.spread.observe(ys[i])
    m.level.add(1.0)
    if i % 2 == 0:
        m.level.sub(0.5)
    if i == 0:
        m.last.set(42.5)


@cuda.jit
def kernel(m, kinds, n, xs, ys):
    i = cuda.grid(1)
    if i < xs.size:
        m.orders.inc(kinds[i])
        m.items.labels("new").inc(n[i])
        m.latency.observe(xs[i])
        m.spread.observe(ys[i])
        m.level.add(1.0)
        if i % 2 == 0:
            m.level.sub(0.5)
        if i == 0:
            m.last.set(42.5)


@njit
def cpu_kernel(m, kinds, n, xs, ys):
    for i in range(xs.size):
        m.orders.inc(kinds[i])
        m.items.labels("new").inc(n[i])
        m.latency.observe(xs[i])
        m.spread.observe(ys[i])
        m.level.add(1.0)
        if i % 2 == 0:
            m.level.sub(0.5)
        if i == 0:
            m.last.set(42.5)


def clock_check():
    """A device timestamp converted by the calibration, and the host readings around it."""
    import time
    from engram_numba.gpu._clock import _read_kernel, calibrate
    clock = calibrate()
    out = cuda.to_device(np.zeros(1, dtype=np.uint64))
    before = time.time_ns()
    _read_kernel()[1, 1](out)
    cuda.synchronize()
    after = time.time_ns()
    ticks = int(out.copy_to_host()[0])
    return {"before": before, "after": after, "ticks": ticks,
            "unix": clock.to_unix_ns(ticks), "error": clock.error_ns,
            "unix_array": int(clock.to_unix_ns(np.array([ticks], dtype=np.uint64))[0])}


class StepEvents(EventSet, name="steps"):
    step = Event("A step of the kernel", i=np.uint32, x=np.float64, k=np.uint8)


@cuda.jit
def traced(tr, xs, ks):
    i = cuda.grid(1)
    if i < xs.size:
        tr.step.emit(i, xs[i], ks[i])


def trace_check(size, rings, capacity):
    """Events of a simulated kernel, drained; the host readings around the kernel."""
    import time
    from engram_numba.export.chrome import chrome_trace
    from engram_numba.gpu import thread_name
    tr = Tracer.cuda(StepEvents, TracingConfig(max_threads=rings, ring_buffer_size=capacity))
    xs = np.arange(size) * 0.5
    ks = np.arange(size) % 200
    ks[7] = 300                                   # out of the u1 field's range: refused
    before = time.time_ns()
    traced[3, 64](tr, xs, ks)
    after = time.time_ns()
    ev = tr.drain()
    again = tr.drain()
    stats = tr.stats()
    return {"before": before, "after": after, "error": tr.clock.error_ns,
            "columns": {c: ev[c].tolist() for c in ("i", "x", "k", "thread", "ring",
                                                      "sequence", "timestamp",
                                                      "event_type")},
            "names": sorted({thread_name(t) for t in ev["thread"].tolist()}),
            "again": len(again), "stats": stats, "dtype": str(ev.dtype),
            "cpu_dtype": str(Tracer.disabled(StepEvents).drain().dtype),
            "frame_rows": len(to_dataframe(ev, "step")),
            "chrome": json.dumps(chrome_trace(ev))}


class WarpWork(EventSet, name="warp_work"):
    launch = Span("A warp's work", block=np.uint32)
    step = Span("One step", k=np.uint8)
    point = Event("A lane's point", i=np.uint32)


@cuda.jit
def spanned(tr, n):
    i = cuda.grid(1)
    tr.launch.begin(cuda.blockIdx.x)
    for k in range(2):
        tr.step.begin(k)
        if i < n:
            tr.point.emit(i)
        tr.step.end()
    tr.launch.end()


@cuda.jit
def held(tr):
    tr.launch.begin(cuda.blockIdx.x)        # both warps begin before either ends
    cuda.syncthreads()
    tr.launch.end()


@cuda.jit
def unmatched(tr):
    tr.launch.end()                         # no span begun: an end without a begin


def spans_check(n):
    """Nested spans of a simulated kernel, exported as an OTLP traces request; and the
    same kernel with two warps sharing each ring (spans refused, counted)."""
    from engram_numba.export.otlp.traces import spans_request
    from engram_numba.tracing.spans import SpanAssembler
    tr = Tracer.cuda(WarpWork, TracingConfig(max_threads=4, ring_buffer_size=256))
    spanned[2, 64](tr, n)
    ev = tr.drain()
    spans = SpanAssembler(attach_events=True).feed(ev)
    shared = Tracer.cuda(WarpWork, TracingConfig(max_threads=1, ring_buffer_size=256))
    held[1, 64](shared)                           # two warps, one ring
    closed = SpanAssembler().feed(shared.drain())
    shared_stats = shared.stats()
    lone = Tracer.cuda(WarpWork, TracingConfig(max_threads=4, ring_buffer_size=256))
    unmatched[1, 64](lone)                        # two warps end without a begin
    lone_before = lone.stats()["invalid"]
    held[1, 64](shared)                           # refused again, then ended: not invalid
    unmatched[1, 64](shared)                      # and two ends without a begin
    shared.drain()
    switched = Tracer.cuda(WarpWork, TracingConfig(max_threads=4, ring_buffer_size=256,
                                                   enabled_events={"launch", "step"}))
    spanned[1, 32](switched, n)
    first = switched.drain()
    switched.enable("point")
    switched.disable("step")
    spanned[1, 32](switched, n)
    second = switched.drain()
    names = [t.name for t in WarpWork.layout.types]
    kinds = lambda ev: sorted(names[t] for t in ev["event_type"].tolist())  # noqa: E731
    return {"otlp": spans_request(spans, WarpWork.layout, tracer_id=tr.tracer_id).hex(),
            "switched": {"first": kinds(first), "second": kinds(second),
                         "rates": switched.sample_rates(),
                         "second_spans": [(s.name, len(s.events)) for s in
                                          SpanAssembler(attach_events=True).feed(second)],
                         "invalid": switched.stats()["invalid"]},
            "tracer_id": tr.tracer_id, "stats": tr.stats(), "events": len(ev),
            "shared": {"closed": len(closed), "stats": shared_stats},
            "unmatched": {"alone": lone_before, "after_refused": shared.stats()["invalid"],
                          "refused": shared.stats()["span_refused"]}}


def main():
    size = int(sys.argv[1])
    rng = np.random.default_rng(int(sys.argv[2]))
    kinds = rng.integers(0, 4, size)                 # 3 is out of range: refused, counted
    n = rng.integers(0, 5, size)
    xs = rng.choice([0.05, 0.1, 0.3, 0.5, 0.7, 1.0, 3.0, 5.0, 9.0], size) * rng.choice([1, 1.0001], size)
    ys = rng.normal(0, 50, size)
    ys[:6] = [np.nan, np.inf, -np.inf, 0.0, 1e-5, 1e300]
    m = ShopKernelMetrics.cuda()
    kernel[3, 64](m, kinds, n, xs, ys)
    cpu = ShopKernelMetrics()
    cpu_kernel(cpu, kinds, n, xs, ys)
    json.dump({"kinds": kinds.tolist(), "n": n.tolist(), "xs": xs.tolist(),
               "ys": [repr(float(y)) for y in ys],
               "device": m.snapshot(), "cpu": cpu.snapshot(),
               "orders_new": m.orders.value("new"), "invalid": m.invalid_records,
               "spread": {k: getattr(m.spread.read(), k)
                          for k in ("count", "nan", "pos_inf", "neg_inf", "zero_count")},
               "spread_sum": m.spread.read().sum, "zero_threshold": m.spread.spec.scheme.zero_threshold,
               "level": m.level.value(), "last": m.last.value(),
               "prometheus": exposition(m), "otlp": metrics_request(m).hex(),
               "type": type(m).__name__, "isinstance": isinstance(m, ShopKernelMetrics),
               "clock": clock_check(), "trace": trace_check(size, 4, 64),
               "trace_lapped": trace_check(size, 2, 8), "spans": spans_check(100)},
              sys.stdout)


if __name__ == "__main__":
    main()

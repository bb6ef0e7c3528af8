"""What recording into a device metric set costs inside a CUDA kernel (needs a GPU).

One run, one kernel shape (a grid-stride loop over N elements), timed with CUDA
events, best of several launches:

    bare            the kernel without calls
    disabled        the same kernel with MySet.disabled()
    atomic          a bare cuda.atomic.add per thread on one word (the reference)
    counter         m.ops.inc() per element (warp-aggregated)
    labelled        m.ops_by_kind.inc(i & 3)
    histogram       m.latency.observe(x) per element
    event/warp      tr.tick.emit(i, x) from lane 0 of each warp per loop step
                    (Tracer.cuda, 1024 rings of 4096 slots: overwritten, never drained)
    span/warp       tr.step.begin(i) ... tr.step.end() per loop step, every lane (one
                    span per warp and step: two slots; a ring per warp, so no span is
                    refused)

It prints ns per element, events per second of event/warp, spans per second of span/warp, each op's cost as a ratio to the bare atomic and the
uninstrumented kernel, and the machine.  Goals (issue 25, to check on hardware):
counter <= 0.1x the bare atomic, observe <= 0.5x, a kernel recording once per
element within 5 % of its twin.  Without a GPU it says so and exits 0 (nothing
here has been measured on hardware yet).
"""

from __future__ import annotations

import sys


def _gpu_or_reason():
    try:
        from numba import cuda
    except ImportError:
        return "numba-cuda is not installed (pip install 'engram-numba[cuda]')"
    if cuda.config.ENABLE_CUDASIM:
        return "NUMBA_ENABLE_CUDASIM=1: the simulator times Python, not a GPU"
    try:
        if not cuda.is_available():
            return "no CUDA GPU (or driver) on this machine"
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"no usable CUDA driver: {exc}"
    return None


def main(argv=None) -> int:
    reason = _gpu_or_reason()
    if reason is not None:
        print(f"cuda_overhead: nothing measured: {reason}.")
        return 0
    import numpy as np
    from numba import cuda

    from engram_numba import (Counter, Event, EventSet, Histogram, MetricSet, Span, Tracer,
                              TracingConfig)

    class Bench(MetricSet):
        ops = Counter("ops_total", "ops")
        ops_by_kind = Counter("ops_by_kind_total", "ops", labels={"kind": ["a", "b", "c", "d"]})
        latency = Histogram("latency_seconds", "latency", range=(1e-6, 10))

    class Ticks(EventSet):
        tick = Event("A warp's step", i=np.uint32, x=np.float64)

    class Steps(EventSet):
        step = Span("A warp's step", i=np.uint32)

    n = 1 << 24
    xs = cuda.to_device(np.random.default_rng(0).random(n))
    one = cuda.to_device(np.zeros(1, np.uint64))
    out = cuda.device_array(n)

    @cuda.jit
    def bare(m, xs, out, one):
        for i in range(cuda.grid(1), xs.size, cuda.gridsize(1)):
            out[i] = xs[i] * 2.0

    @cuda.jit
    def atomic(m, xs, out, one):
        for i in range(cuda.grid(1), xs.size, cuda.gridsize(1)):
            cuda.atomic.add(one, 0, 1)
            out[i] = xs[i] * 2.0

    @cuda.jit
    def counter(m, xs, out, one):
        for i in range(cuda.grid(1), xs.size, cuda.gridsize(1)):
            m.ops.inc()
            out[i] = xs[i] * 2.0

    @cuda.jit
    def labelled(m, xs, out, one):
        for i in range(cuda.grid(1), xs.size, cuda.gridsize(1)):
            m.ops_by_kind.inc(i & 3)
            out[i] = xs[i] * 2.0

    @cuda.jit
    def histogram(m, xs, out, one):
        for i in range(cuda.grid(1), xs.size, cuda.gridsize(1)):
            m.latency.observe(xs[i])
            out[i] = xs[i] * 2.0

    @cuda.jit
    def event_per_warp(tr, xs, out, one):
        for i in range(cuda.grid(1), xs.size, cuda.gridsize(1)):
            if cuda.laneid == 0:
                tr.tick.emit(np.uint32(i), xs[i])
            out[i] = xs[i] * 2.0

    @cuda.jit
    def span_per_warp(tr, xs, out, one):
        for i in range(cuda.grid(1), xs.size, cuda.gridsize(1)):
            tr.step.begin(np.uint32(i))
            out[i] = xs[i] * 2.0
            tr.step.end()

    device = cuda.get_current_device()
    blocks, threads = device.MULTIPROCESSOR_COUNT * 8, 256
    m, off = Bench.cuda(), Bench.disabled()

    def best(kernel, arg, reps=10):
        kernel[blocks, threads](arg, xs, out, one)
        cuda.synchronize()
        times = []
        for _ in range(reps):
            start, stop = cuda.event(), cuda.event()
            start.record()
            kernel[blocks, threads](arg, xs, out, one)
            stop.record()
            stop.synchronize()
            times.append(cuda.event_elapsed_time(start, stop) * 1e6 / n)
        return min(times)

    spans = Tracer.cuda(Steps, TracingConfig(max_threads=blocks * threads // 32,
                                             ring_buffer_size=256))
    rows = {"bare": best(bare, off), "disabled": best(counter, off), "atomic": best(atomic, off),
            "counter": best(counter, m), "labelled": best(labelled, m),
            "histogram": best(histogram, m),
            "event/warp": best(event_per_warp, Tracer.cuda(Ticks, TracingConfig(
                max_threads=1024, ring_buffer_size=4096))),
            "span/warp": best(span_per_warp, spans)}
    print(f"device: {device.name.decode() if isinstance(device.name, bytes) else device.name}, "
          f"{device.MULTIPROCESSOR_COUNT} SMs; {n} elements, {blocks}x{threads} threads")
    atomic_cost = rows["atomic"] - rows["bare"]
    for name, ns in rows.items():
        extra = ns - rows["bare"]
        ratio = f"{extra / atomic_cost:6.3f}x atomic" if atomic_cost > 0 else ""
        print(f"  {name:10s} {ns:8.4f} ns/element  {ns / rows['bare']:6.3f}x bare  {ratio}")
    # one event per 32 elements (lane 0 of each warp, each step of the grid-stride loop)
    print(f"  event/warp: {1e9 / (32 * rows['event/warp']):.3e} events/s")
    # one span (a begin and an end) per warp and loop step
    print(f"  span/warp: {1e9 / (32 * rows['span/warp']):.3e} spans/s, "
          f"{spans.stats()['span_refused']} refused")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

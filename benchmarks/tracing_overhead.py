"""What tracing an event or a span costs inside a kernel, and what exporting costs.

Each variant runs batches of ``batch`` trace calls timed inside the kernel with
the TSC; variants are interleaved round by round.  Reported: median and P99
ns per call over all batches, and ratios to one read of the time-stamp counter
measured in the same run (an event is one TSC read plus a 64-byte slot write;
a span is a begin and an end).

    python benchmarks/tracing_overhead.py            # full run (~1 min)
    python benchmarks/tracing_overhead.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit, prange

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H  # noqa: E402

from engram_numba import CognitiveTracer, Event, EventSet, EventType, Span  # noqa: E402
from engram_numba import Tracer, TracingConfig  # noqa: E402
from engram_numba._asm import native_asm  # noqa: E402
from engram_numba.clock import calibrate, cycles  # noqa: E402
from engram_numba.export.json import events_to_document, events_to_jsonl  # noqa: E402


@njit(inline="always")        # too big for LLVM's inliner: inline it in numba's IR
def _priming(tr, vals, i):
    tr.trace_priming(i % 3, 0.5, i, i + 1)


@njit
def _nothing(tr, vals, i):
    pass


@njit
def _tsc(tr, vals, i):
    cycles()


class Bench(EventSet, name="bench"):
    step = Event("A step", residual=np.float64, k=np.uint32)
    region = Span("A timed region", k=np.uint32)


@njit(inline="always")
def _emit(tr, vals, i):
    tr.step.emit(0.5, i)


@njit(inline="always")
def _span(tr, vals, i):
    tr.region.begin(i)
    tr.region.end()


_k_priming = H.timed(_priming)
_k_bare = H.timed(_nothing)
_k_tsc = H.timed(_tsc)
_k_emit = H.timed(_emit)
_k_span = H.timed(_span)
_NO_VALUES = np.zeros(1)


def k_priming(tr, batch, out):
    return _k_priming(tr, _NO_VALUES, batch, out)


@njit(nogil=True)
def k_all_types(tr, batch, out):
    for b in range(out.size):
        t0 = cycles()
        for i in range(0, batch, 4):
            tr.trace_priming(i % 3, 0.5, i, i + 1)
            tr.trace_interference(i % 3, 0.25, i, 3)
            tr.trace_reconsolidation(i, 0.5, 0.75, 2)
            tr.trace_false_memory(i, 10, 0.9)
        out[b] = cycles() - t0


k_threaded = H.timed_together(_priming)


def _tracer(rate=1.0, enabled=True):
    events = set(EventType) if enabled else set(EventType) - {EventType.PRIMING}
    rates = {"priming": rate}
    return CognitiveTracer(TracingConfig(enabled_events=events, sample_rates=rates,
                                         ring_buffer_size=1 << 16, max_threads=8))


def single(rounds, batches, batch, ticks):
    on, sampled, off, disabled = _tracer(), _tracer(0.01), _tracer(enabled=False), \
        CognitiveTracer.disabled()
    bench = Tracer(Bench, TracingConfig(ring_buffer_size=1 << 16, max_threads=8))
    variants = {
        "TSC read (reference)": lambda out: _k_tsc(None, _NO_VALUES, batch, out),
        "generic event emit (2 fields), rate 1": lambda out: _k_emit(bench, _NO_VALUES, batch,
                                                                     out),
        "span begin + end (per pair)": lambda out: _k_span(bench, _NO_VALUES, batch, out),
        "trace_priming, rate 1": lambda out: k_priming(on, batch, out),
        "4 types in turn, rate 1 (per call)": lambda out: k_all_types(on, batch, out),
        "trace_priming, rate 0.01": lambda out: k_priming(sampled, batch, out),
        "trace_priming, type off": lambda out: k_priming(off, batch, out),
        "disabled tracer": lambda out: k_priming(disabled, batch, out),
        "empty loop (reference)": lambda out: _k_bare(None, _NO_VALUES, batch, out),
    }
    raw = H.interleave_batches(variants, rounds, batches)
    stats = {k: H.batch_stats(np.concatenate(v), batch, ticks) for k, v in raw.items()}
    tsc = stats["TSC read (reference)"]["median_ns"]
    for v in stats.values():
        v["x_tsc_read"] = v["median_ns"] / tsc
    disabled_sig = [s for s in _k_priming.signatures if not s[0].enabled][0]
    _k_bare(disabled, _NO_VALUES, batch, np.empty(1, dtype=np.uint64))   # same argument types
    identical = native_asm(_k_priming, disabled_sig) == native_asm(_k_bare, _k_bare.signatures[-1])
    return stats, identical


def threads(rounds, batches, batch, ticks):
    tr = _tracer()
    flag = np.zeros(1, dtype=np.int64)
    k_threaded(tr, _NO_VALUES, batch, np.empty(1, dtype=np.uint64), np.array([1]), 1)
    out = {}
    for n in (1, 2):
        samples = []
        for _ in range(rounds):
            flag[:] = 0
            outs = [np.empty(batches, dtype=np.uint64) for _ in range(n)]
            H.run_threads(k_threaded, [(tr, _NO_VALUES, batch, o, flag, n) for o in outs])
            samples.extend(outs)
        out[f"{n} thread(s), own rings"] = H.batch_stats(np.concatenate(samples), batch, ticks)
    return out


@njit(parallel=True)
def _loop_in_span(tr, x):
    tr.region.begin(0)
    for i in prange(x.size):
        x[i] += 1
    tr.region.end()


@njit(parallel=True)
def _loop_after_span(tr, x):
    tr.region.begin(0)
    tr.region.end()
    for i in prange(x.size):
        x[i] += 1


def regions(rounds, calls):
    """A small parallel loop entered with a span open (its workers inherit the span:
    the trampoline and two context records per worker) against the same loop entered
    after the span ended (numba's own entry), interleaved; median us per loop."""
    bench = Tracer(Bench, TracingConfig(ring_buffer_size=1 << 12, max_threads=8))
    x = np.zeros(256)
    variants = {"loop inside a span": _loop_in_span, "loop after the span": _loop_after_span}
    for fn in variants.values():
        fn(bench, x)
    times = {k: [] for k in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            bench.drain()
            for _ in range(calls):
                t0 = time.perf_counter_ns()
                fn(bench, x)
                times[name].append(time.perf_counter_ns() - t0)
    out = {k: {"median_us": float(np.median(v)) / 1e3} for k, v in times.items()}
    inside, after = (out[k]["median_us"] for k in variants)
    out["loop inside a span"]["x_after"] = inside / after
    out["loop after the span"]["x_after"] = 1.0
    return out


def export_cost(repeats):
    tr = CognitiveTracer(TracingConfig(ring_buffer_size=1 << 14, max_threads=2))
    k_all_types(tr, 10_000, np.empty(1, dtype=np.uint64))
    events = tr.drain()[-10_000:]
    out = {"events": int(events.size)}

    def median_ms(fn):
        return H.median_ms(fn, repeats)

    out["events_to_jsonl"] = median_ms(lambda: events_to_jsonl(events))
    out["events_to_document"] = median_ms(lambda: events_to_document(events))
    drains = []
    for _ in range(repeats):
        k_all_types(tr, 10_000, np.empty(1, dtype=np.uint64))   # untimed: refill the ring
        t = time.perf_counter_ns()
        tr.drain()
        drains.append(time.perf_counter_ns() - t)
    out["drain() of 10,000 events (copy, check, sort, unix time)"] = float(np.median(drains)) / 1e6
    from engram_numba.export.chrome import chrome_trace
    from engram_numba.export.loki import push_body
    out["Loki push body"] = median_ms(lambda: push_body(events))
    out["Chrome trace document"] = median_ms(lambda: chrome_trace(events))
    try:
        from engram_numba.export.otlp import logs_request
        out["OTLP ExportLogsServiceRequest (bytes)"] = median_ms(lambda: logs_request(events))
        out["OTLP via opentelemetry-proto message objects, for comparison"] = median_ms(
            lambda: _otlp_with_objects(events))
    except ImportError:
        out["OTLP"] = "not installed (pip install 'engram-numba[otlp]')"
    try:
        import orjson
        from engram_numba.export.json import event_records
        recs = event_records(events)
        out["orjson.dumps(list of dicts), for comparison"] = median_ms(lambda: orjson.dumps(recs))
    except ImportError:
        pass
    return out


def _otlp_with_objects(events):
    """The same logs request built with the official message classes (what we avoid)."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

    from engram_numba.export.json import event_records
    records = []
    for r in event_records(events):
        attrs = []
        for k, v in r.items():
            if k == "timestamp":
                continue
            value = AnyValue(string_value=v) if isinstance(v, str) else (
                AnyValue(double_value=v) if isinstance(v, float) else
                AnyValue(int_value=v if v < 2 ** 63 else v - 2 ** 64))
            attrs.append(KeyValue(key=f"engram.{k}", value=value))
        records.append(LogRecord(time_unix_nano=r["timestamp"], severity_number=9,
                                 severity_text="INFO", body=AnyValue(string_value=r["event_type"]),
                                 attributes=attrs))
    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[
        ScopeLogs(log_records=records)])]).SerializeToString()


def _rss_kb():
    with open(f"/proc/{os.getpid()}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


def memory(n_events):
    cfg = TracingConfig(ring_buffer_size=10_000, max_threads=64)
    tr = CognitiveTracer(cfg)
    k_all_types(tr, 1000, np.empty(1, dtype=np.uint64))
    tr.drain()
    before = _rss_kb()
    k_all_types(tr, n_events, np.empty(1, dtype=np.uint64))
    tr.drain()
    after = _rss_kb()
    return {"events": n_events, "region_bytes": tr.stats()["memory_bytes"],
            "bound_bytes": cfg.memory_bytes, "rss_growth_kb": after - before}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--output", default="tracing_overhead")
    args = p.parse_args(argv)
    rounds, batches, batch = (2, 20, 1000) if args.quick else (20, 200, 1000)
    info = H.machine()
    H.header("tracing_overhead: cost per traced event inside a kernel", info)
    ticks = calibrate().ticks_per_ns
    stats, identical = single(rounds, batches, batch, ticks)
    print(f"\n## one thread ({rounds} interleaved rounds x {batches} batches x {batch} calls)")
    print(H.table([dict(call=k, **v) for k, v in stats.items()],
                  ["call", "median_ns", "p99_ns", "x_tsc_read"]))
    print(f"disabled tracer: native code identical to the loop without the calls: "
          f"{'yes' if identical else 'NO'}")
    thr = threads(max(rounds // 2, 1), batches * 5, batch, ticks) \
        if (info["cpus_available"] or 1) >= 2 else None
    if thr:
        print("\n## threads in parallel")
        print(H.table([dict(case=k, **v) for k, v in thr.items()], ["case", "median_ns", "p99_ns"]))
    loops = regions(2 if args.quick else 10, 200 if args.quick else 1000)
    print("\n## a parallel loop of 256 rows, entered with a span open or not (wall us per loop)")
    print(H.table([dict(case=k, **v) for k, v in loops.items()], ["case", "median_us", "x_after"]))
    exp = export_cost(5 if args.quick else 50)
    print(f"\n## export of {exp['events']:,} events, median ms")
    print(H.table([{"what": k, "ms": v} for k, v in exp.items() if k != "events"], ["what", "ms"]))
    mem = memory(100_000 if args.quick else 1_000_000)
    print(f"\n## memory: {mem['events']:,} events through 64 rings x 16,384 slots: region "
          f"{mem['region_bytes']:,} B (bound {mem['bound_bytes']:,} B + header), "
          f"RSS grew {mem['rss_growth_kb']:,} kB")
    path = H.save(args.output, {"machine": info, "single_thread": stats,
                                "disabled_identical_machine_code": identical, "threads": thr,
                                "parallel_loops": loops,
                                "export_ms": exp, "memory": mem, "rounds": rounds,
                                "batches": batches, "batch": batch})
    print(f"\nsaved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

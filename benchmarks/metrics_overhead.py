"""What recording a metric costs inside a kernel, next to the alternatives.

Every kernel variant runs ``batches`` batches of ``batch`` operations per round
and times each batch with the TSC; rounds interleave the variants.  Reported:
median and P99 of ns/op over all batches, and the ratios of medians to a bare
``lock add`` loop and to the plain-array histogram floor, both measured in the
same run.

Values come from a stream of 4,096 lognormal values, indexed by a counter that
runs on across batches (``vals[i & 4095]``, see ``_harness.timed``), so no batch
replays the values of the one before.  The *floor* is the least a histogram
record can cost: the same bucket index from the value's bits, a plain
(non-atomic) increment, four sum lanes and the min/max compares, in a plain
numpy array that nobody else reads.

    python benchmarks/metrics_overhead.py            # full run (~1 min)
    python benchmarks/metrics_overhead.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit, objmode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H  # noqa: E402

from engram_numba import Counter, Gauge, Histogram, MetricSet, atomic_add  # noqa: E402
from engram_numba._asm import native_asm  # noqa: E402
from engram_numba.clock import calibrate, cycles  # noqa: E402
from engram_numba.export import exposition  # noqa: E402
from engram_numba._stats import overhead_estimate  # noqa: E402
from engram_numba.engram import CognitiveTracer, PrimingType  # noqa: E402
from engram_numba.engram.metrics import CognitivePatternMetrics  # noqa: E402
from engram_numba.metrics.buckets import exponential_index, key_of  # noqa: E402
from engram_numba.metrics.operations import OPERATIONS  # noqa: E402


class Bench(MetricSet):
    counter = Counter("bench_ops", "ops")
    labelled = Counter("bench_labelled", "ops by kind", labels={"kind": ["a", "b", "c", "d"]})
    gauge = Gauge("bench_level", "level")
    hist = Histogram("bench_sizes", "sizes", scale=3, range=(1e-3, 1e3))
    explicit = Histogram("bench_explicit", "sizes", bounds=list(np.geomspace(1e-3, 1e3, 64)))


VALUES = np.random.default_rng(42).lognormal(0.0, 1.5, 4096)
STRENGTHS = np.random.default_rng(43).uniform(0.01, 1.0, 4096)
TYPES = np.random.default_rng(44).integers(0, 3, 4096)     # priming types

# the floor: Bench.hist's bucket index, into plain arrays (every value lies in its range,
# so the floor needs no range test and no other homes)
_SCALE, _LO, _NB, _, _LOW, _HIGH, _LUT, _BND, _ = Bench.hist.scheme.recording_constants
assert ((VALUES > _LOW) & (VALUES <= _HIGH)).all()


# -- kernels: each times `out.size` batches of `batch` operations --------------------

@njit(inline="always")
def _lock_add(arr, vals, i):
    atomic_add(arr, 0, 1)


def _operation(op, case):
    """``m.<attr>.<method>(<args>)`` of an operations-table row's benchmark case."""
    ns = {}
    exec(f"def record(m, vals, i):\n    m.{case.attr}.{op.method}({case.args})\n", ns)
    return njit(inline="always")(ns["record"])


# one kernel per benchmark case of the operations table (engram_numba.metrics.operations)
OPERATION_KERNELS = {case.name: H.timed(_operation(op, case))
                     for op in OPERATIONS for case in op.bench}


@njit(inline="always")
def _counter(m, vals, i):
    m.counter.inc()


@njit(inline="always")
def _counter_and_histogram(m, vals, i):
    m.counter.inc()
    m.hist.observe(vals[i & 4095])


@njit(inline="always")
def _record_priming(m, vals, i):
    m.record_priming(TYPES[i & 4095], vals[i & 4095])


@njit(inline="always")
def _nothing(m, vals, i):
    pass


@njit(inline="always")
def _floor(arrays, vals, i):
    """A histogram record at its floor: bucket from the bits, a plain increment, four sum
    lanes (picked by the loop index), min and max compares; plain numpy arrays."""
    counts, sums, extremes = arrays
    v = vals[i & 4095]
    counts[exponential_index(v, _SCALE, _LUT, _BND) - _LO] += 1
    sums[i & 3] += v
    key = key_of(v)
    if key > extremes[1]:
        extremes[1] = key
    if ~key > extremes[0]:
        extremes[0] = ~key


def floor_arrays():
    return (np.zeros(_NB, dtype=np.uint64), np.zeros(4), np.zeros(2, dtype=np.uint64))


k_lock_add = H.timed(_lock_add)
k_disabled = H.timed(_counter_and_histogram)
k_record_priming = H.timed(_record_priming)
k_bare_loop = H.timed(_nothing)
k_floor = H.timed(_floor)


# engram's overhead workload: an op is 100 sin() calls, recording a priming event
# every 10th iteration; the twin is the same loop without the calls

@njit(nogil=True)
def k_engram_op(m, ops, out):
    acc = 0.0
    for b in range(out.size):
        t0 = cycles()
        for op in range(ops):
            for i in range(100):
                s = np.sin(acc + i * 0.01)
                acc += s
                if i % 10 == 0:
                    m.record_priming(i % 3, abs(s))
        out[b] = cycles() - t0
    return acc


@njit(nogil=True)
def k_engram_op_twin(ops, out):
    acc = 0.0
    for b in range(out.size):
        t0 = cycles()
        for op in range(ops):
            for i in range(100):
                s = np.sin(acc + i * 0.01)
                acc += s
        out[b] = cycles() - t0
    return acc


@njit(inline="always")
def _lock_add_at(arr, slot, i):
    atomic_add(arr, slot, 1)


k_shared_counter = H.timed_together(_counter)          # a copy per thread
k_shared_word = H.timed_together(_lock_add_at)         # the design without copies: one word
k_own_slot = H.timed_together(_lock_add_at)            # a word each, some bytes apart


# -- drivers ------------------------------------------------------------------------------

FLOOR = "histogram floor: plain array, same index"


def single_thread(rounds, batches, batch, ticks):
    m, d = Bench(), Bench.disabled()
    cognitive = CognitivePatternMetrics()
    arr = np.zeros(8, dtype=np.int64)
    floor = floor_arrays()
    kernels = {
        "lock add (bare reference)": lambda out: k_lock_add(arr, VALUES, batch, out),
        FLOOR: lambda out: k_floor(floor, VALUES, batch, out),
        **{name: (lambda out, k=k: k(m, VALUES, batch, out))
           for name, k in OPERATION_KERNELS.items()},
        "disabled counter.inc() + observe(v)": lambda out: k_disabled(d, VALUES, batch, out),
        "cognitive record_priming(type, strength)":
            lambda out: k_record_priming(cognitive, STRENGTHS, batch, out),
    }

    raw = H.interleave_batches(kernels, rounds, batches)
    stats = {k: H.batch_stats(np.concatenate(v), batch, ticks) for k, v in raw.items()}
    ref = stats["lock add (bare reference)"]["median_ns"]
    floor_ns = stats[FLOOR]["median_ns"]
    for k, s in stats.items():
        s["ratio_to_lock_add"] = s["median_ns"] / ref
        s["ratio_to_floor"] = s["median_ns"] / floor_ns
    # the disabled kernel's native code against the same loop without the calls
    k_bare_loop(d, VALUES, batch, np.empty(1, dtype=np.uint64))
    identical = native_asm(k_disabled, k_disabled.signatures[0]) == native_asm(k_bare_loop)
    return stats, identical


def multi_thread(rounds, batches, batch, ticks):
    """Aggregate throughput of two threads: each owns a copy of the set's hot values."""
    results = {}
    flag = np.zeros(1, dtype=np.int64)
    m = Bench()
    arr = np.zeros(32, dtype=np.int64)
    k_shared_counter(m, VALUES, batch, np.empty(1, dtype=np.uint64), np.array([1]), 1)
    k_shared_word(arr, 0, batch, np.empty(1, dtype=np.uint64), np.array([1]), 1)
    k_own_slot(arr, 0, batch, np.empty(1, dtype=np.uint64), np.array([1]), 1)

    def run(kernel, args_per_thread):
        def go():
            flag[:] = 0
            outs = [np.empty(batches, dtype=np.uint64) for _ in args_per_thread]
            H.run_threads(kernel, [(*a, batch, o, flag, len(args_per_thread))
                                   for a, o in zip(args_per_thread, outs)])
            return np.concatenate(outs)
        return go

    variants = {
        "1 thread, counter.inc()": run(k_shared_counter, [(m, VALUES)]),
        "2 threads, counter.inc() on one counter (a copy each)":
            run(k_shared_counter, [(m, VALUES), (m, VALUES)]),
        "1 thread, lock add on one word": run(k_shared_word, [(arr, 0)]),
        "2 threads, lock add on one word (no copies)": run(k_shared_word, [(arr, 0), (arr, 0)]),
        "2 threads, lock add, words 64 B apart": run(k_own_slot, [(arr, 0), (arr, 8)]),
        "2 threads, lock add, words 8 B apart (one line)": run(k_own_slot, [(arr, 0), (arr, 1)]),
    }
    raw = H.interleave(variants, rounds)
    for k, v in raw.items():
        results[k] = H.batch_stats(np.concatenate(v), batch, ticks)
    for one, two in (("1 thread, counter.inc()",
                      "2 threads, counter.inc() on one counter (a copy each)"),
                     ("1 thread, lock add on one word",
                      "2 threads, lock add on one word (no copies)")):
        # two threads each doing one op per t2 ns against one thread's one op per t1 ns
        results[two]["aggregate_throughput_vs_1_thread"] = \
            2 * results[one]["median_ns"] / results[two]["median_ns"]
    return results


def memory_report():
    """Bytes per copy of the hot values, and the bound, for the cognitive set."""
    m = CognitivePatternMetrics()
    k_record_priming(m, STRENGTHS, 10, np.empty(1, dtype=np.uint64))
    return m.memory()


def engram_workload(rounds, batches, ticks):
    """engram's overhead target (< 1 %), measured: instrumented op vs its twin, interleaved."""
    m, d = CognitivePatternMetrics(), CognitivePatternMetrics.disabled()
    ops = 10
    variants = {
        "twin (no calls)": lambda out: k_engram_op_twin(ops, out),
        "instrumented": lambda out: k_engram_op(m, ops, out),
        "disabled set": lambda out: k_engram_op(d, ops, out),
    }
    raw = H.interleave_batches(variants, rounds, batches)
    # paired per round: same conditions for both sides of each ratio
    per_round = {k: [np.median(x) for x in v] for k, v in raw.items()}
    twin = per_round["twin (no calls)"]
    out = {}
    for k, v in per_round.items():
        ns_per_op = float(np.median(np.concatenate(raw[k]))) / ticks / ops
        est = overhead_estimate(v, twin)
        out[k] = {"ns_per_op": ns_per_op, "overhead_pct": est["median_percent"],
                  "ci95_pct": est["ci_percent"]}
    out["records_per_op"] = 10
    out["ns_per_record"] = (out["instrumented"]["ns_per_op"] - out["twin (no calls)"]["ns_per_op"]) / 10
    return out


def exposition_cost(repeats):
    """Whole cognitive set, one scrape in each format: bytes (plain and gzip) and median
    ms to render, next to prometheus_client's generate_latest of the same collector."""
    import gzip

    from engram_numba.export.prometheus_proto import protobuf_exposition
    m = CognitivePatternMetrics()
    k_record_priming(m, STRENGTHS, 1000, np.empty(10, dtype=np.uint64))
    m.record_interference(0, 0.5)
    text = exposition(m)
    samples = sum(1 for line in text.splitlines() if not line.startswith("#"))
    formats = {
        "text (every le bucket)": lambda: exposition(m).encode(),
        "text, classic_scale=1": lambda: exposition(m, classic_scale=1).encode(),
        "text, classic_scale=0": lambda: exposition(m, classic_scale=0).encode(),
        "protobuf (native histograms)": lambda: protobuf_exposition(m),
    }
    try:
        from prometheus_client import CollectorRegistry, generate_latest

        from engram_numba.export import MetricSetCollector, openmetrics_exposition
        reg = CollectorRegistry()
        reg.register(MetricSetCollector(m))
        formats["openmetrics via prometheus_client"] = lambda: openmetrics_exposition(m).encode()
        formats["prometheus_client generate_latest(collector)"] = lambda: generate_latest(reg)
    except ImportError:
        pass
    rows = []
    for name, fn in formats.items():
        body = fn()
        rows.append({"format": name, "bytes": len(body),
                     "gzip_bytes": len(gzip.compress(body, compresslevel=6)),
                     "ms": H.median_ms(fn, repeats)})
    return {"samples": samples, "formats": rows}


def python_peers(n, rounds):
    """Our Python calls next to prometheus_client's, in interleaved rounds (medians)."""
    m = Bench()
    cognitive, tracer = CognitivePatternMetrics(), CognitiveTracer()
    semantic = PrimingType.SEMANTIC
    calls = {
        "engram_numba counter.inc()": m.counter.inc,
        "engram_numba histogram.observe(0.5)": lambda: m.hist.observe(0.5),
        "engram_numba record_priming(SEMANTIC, 0.5)":
            lambda: cognitive.record_priming(semantic, 0.5),
        "engram_numba trace_priming(SEMANTIC, 0.5, 1, 2)":
            lambda: tracer.trace_priming(semantic, 0.5, 1, 2),
    }
    try:
        import prometheus_client as pc
    except ImportError:
        pc = None
    if pc is not None:
        reg = pc.CollectorRegistry()
        c = pc.Counter("peer_ops", "ops", registry=reg)
        h15 = pc.Histogram("peer_sizes", "sizes", registry=reg)
        h64 = pc.Histogram("peer_sizes64", "sizes", buckets=list(np.geomspace(1e-3, 1e3, 64)),
                           registry=reg)
        calls["prometheus_client Counter.inc()"] = c.inc
        calls["prometheus_client Histogram.observe(0.5), 15 buckets"] = lambda: h15.observe(0.5)
        calls["prometheus_client Histogram.observe(0.5), 64 buckets"] = lambda: h64.observe(0.5)

    def loop(fn):
        def run():
            t = time.perf_counter_ns()
            for _ in range(n):
                fn()
            return (time.perf_counter_ns() - t) / n
        return run

    for fn in calls.values():
        fn()
    raw = H.interleave({k: loop(fn) for k, fn in calls.items()}, rounds)
    out = {k: float(np.median(v)) for k, v in raw.items()}
    tracer.drain()
    if pc is None:
        out["prometheus_client"] = "not installed (pip install engram-numba[prometheus])"
        return out

    # reached through an imported module: numba before 0.61 pickles an objmode block's
    # closure cells and __main__'s globals by value, and a Counter holds a lock
    H.peer_counter = c

    @njit
    def objmode_loop(count):
        for _ in range(count):
            with objmode():
                H.peer_counter.inc()

    @njit
    def objmode_empty(count):
        for _ in range(count):
            with objmode():
                pass

    for name, fn in (("numba objmode block, empty", objmode_empty),
                     ("numba objmode + prometheus_client Counter.inc()", objmode_loop)):
        fn(1)
        t = time.perf_counter_ns()
        fn(n)
        out[name] = (time.perf_counter_ns() - t) / n
    return out


def _ci(ci) -> str:
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a short smoke run")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--output", default="metrics_overhead", help="results/<name>.json")
    args = p.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 20)
    batches, batch = (20, 1000) if args.quick else (200, 1000)

    info = H.machine()
    H.header("metrics_overhead: cost per recorded metric inside a kernel", info)
    cal = calibrate()
    ticks = cal.ticks_per_ns

    single, identical = single_thread(rounds, batches, batch, ticks)
    print(f"\n## one thread ({rounds} interleaved rounds x {batches} batches x {batch} ops)")
    print(H.table([dict(op=k, **v) for k, v in single.items()],
                  ["op", "median_ns", "p99_ns", "ratio_to_lock_add", "ratio_to_floor"]))
    print(f"disabled set: native code identical to the loop without the calls: "
          f"{'yes' if identical else 'NO'}")

    multi = None
    if info["cpus_available"] and info["cpus_available"] >= 2:
        # threads run 10x longer per round so that their loops overlap despite scheduling
        multi = multi_thread(max(rounds // 2, 1), batches * 10, batch, ticks)
        print("\n## two threads (per-thread ns/op; aggregate throughput against one thread)")
        print(H.table([dict(case=k, **v) for k, v in multi.items()],
                      ["case", "median_ns", "p99_ns", "aggregate_throughput_vs_1_thread"]))
    else:
        print("\n## two threads: skipped (fewer than 2 CPUs available)")

    workload = engram_workload(rounds, max(batches // 10, 5), ticks)
    print("\n## engram overhead workload: 100 sin() per op, record_priming every 10th")
    print(H.table([dict(variant=k, **v, ci95=_ci(v["ci95_pct"]))
                   for k, v in workload.items() if isinstance(v, dict)],
                  ["variant", "ns_per_op", "overhead_pct", "ci95"]))
    print(f"= {workload['ns_per_record']:.1f} ns per record_priming inside the workload")

    expo = exposition_cost(20 if args.quick else 200)
    print(f"\n## one scrape of the whole cognitive set ({expo['samples']} text samples): "
          f"bytes, gzip bytes (level 6, as the server sends), median ms to render")
    print(H.table(expo["formats"], ["format", "bytes", "gzip_bytes", "ms"]))

    peers = python_peers(5_000 if args.quick else 20_000, 3 if args.quick else 15)
    print("\n## from Python, per call (interleaved rounds of a plain loop, medians)")
    print(H.table([{"call": k, "ns": v} for k, v in peers.items()], ["call", "ns"]))

    memory = memory_report()
    print(f"\n## memory: {memory['bytes_per_copy']:,} bytes per copy of the cognitive set's hot "
          f"values, at most {memory['owned_copies']} owned copies (shards); region "
          f"{memory['region_bytes']:,} bytes, {memory['bytes_in_use']:,} in use with "
          f"{memory['claimed']} copy claimed")

    path = H.save(args.output, {"machine": info, "ticks_per_ns": ticks, "single_thread": single,
                                "disabled_identical_machine_code": identical,
                                "two_threads": multi, "python": peers,
                                "engram_workload": workload, "exposition_ms": expo,
                                "memory": memory,
                                "rounds": rounds, "batches": batches, "batch": batch})
    print(f"\nsaved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

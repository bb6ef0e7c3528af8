"""What a CUDA kernel that records into a device set compiles to (PTX, no GPU needed).

numba-cuda's compile_ptx with NVIDIA's nvvm wheels; the kernels are compiled for sm_80.
"""

import re

import numpy as np
import pytest

try:
    import numba_cuda  # noqa: F401
    from numba import cuda, types
except ImportError:
    pytest.skip("the CUDA tests need the [cuda] extra (numba-cuda)", allow_module_level=True)
if cuda.config.ENABLE_CUDASIM:
    pytest.skip("PTX needs numba-cuda's compiler, not the simulator", allow_module_level=True)

from engram_numba import Counter, Gauge, Histogram, MetricSet  # noqa: E402
from engram_numba.gpu import compile_ptx, device_type, is_leader  # noqa: E402

try:
    compile_ptx(lambda a: None, (types.uint64[::1],))
except Exception as exc:  # no libNVVM (the nvidia wheels) here
    pytest.skip(f"numba-cuda cannot compile PTX here: {exc}", allow_module_level=True)


class GpuShop(MetricSet):
    orders = Counter("orders_total", "Orders", labels={"kind": ["new", "repeat"]})
    latency = Histogram("latency_seconds", "Latency", range=(1e-6, 10))
    level = Gauge("level", "Level")


def instructions(ptx):
    return set(re.findall(r"\b(atom\.[\w.]+|match\.[\w.]+|activemask\.\w+|popc\.\w+|"
                          r"shfl\.[\w.]+|ld\.volatile\.[\w.]+)", ptx))


def counted(m, xs):
    i = cuda.grid(1)
    if i < xs.size:
        m.orders.inc(i & 1)


def observed(m, xs):
    i = cuda.grid(1)
    if i < xs.size:
        m.latency.observe(xs[i])


def everything(m, xs):
    i = cuda.grid(1)
    if i < xs.size:
        m.orders.labels("repeat").inc(3)
        m.level.set(xs[i])
        m.level.add(xs[i])


def test_counter_is_aggregated_per_warp():
    ptx = compile_ptx(counted, (device_type(GpuShop), types.float64[::1]))
    got = instructions(ptx)
    assert {"activemask.b32", "match.any.sync.b64", "popc.b32", "atom.global.add.u64"} <= got
    # one atomic add, the leader's (``i & 1`` is provably a valid label: no refused path)
    assert len(re.findall(r"atom\.global\.add\.u64", ptx)) == 1
    assert "%smid" in ptx                           # copies spread by multiprocessor


def test_histogram_buckets_aggregated_sum_and_extremes_atomic():
    ptx = compile_ptx(observed, (device_type(GpuShop), types.float64[::1]))
    got = instructions(ptx)
    assert {"match.any.sync.b64", "popc.b32", "atom.global.add.u64", "atom.global.add.f64",
            "atom.global.max.u64"} <= got


class GpuBounds(MetricSet):
    latency = Histogram("latency_seconds", "Latency", bounds=[0.1, 0.5, 1.0])


def test_histogram_sum_and_extremes_gathered_per_warp():
    """One path records a finite value (explicit bounds): its sum and extremes are
    gathered over the warp (butterfly shuffles for a full warp, indexed ones otherwise)
    and written with one f64 atomic add and two atomic maxes, the leader's."""
    def observe(m, xs):
        i = cuda.grid(1)
        if i < xs.size:
            m.latency.observe(xs[i])

    ptx = compile_ptx(observe, (device_type(GpuBounds), types.float64[::1]))
    assert ptx.count("atom.global.add.f64") == 1
    assert ptx.count("atom.global.max.u64") == 2
    # 5 butterfly steps, each moving the sum and both extremes (64 bits: two 32-bit halves)
    assert ptx.count("shfl.sync.bfly.b32") == 5 * 3 * 2
    assert ptx.count("shfl.sync.idx.b32") == 3 * 2      # the loop over a partial group


def test_labelled_add_and_gauges():
    ptx = compile_ptx(everything, (device_type(GpuShop), types.float64[::1]))
    got = instructions(ptx)
    assert {"shfl.sync.idx.b32", "atom.global.cas.b64", "atom.global.add.f64",
            "ld.volatile.global.u64"} <= got


def _normalized(ptx):
    """PTX with the mangled names (which spell the argument types) renamed by order."""
    names = {}
    return re.sub(r"_Z\w+", lambda m: names.setdefault(m.group(0), f"F{len(names)}"), ptx)


def with_calls(m, xs, out):
    i = cuda.grid(1)
    if i < xs.size:
        m.orders.inc(i & 1)
        m.latency.observe(xs[i])
        m.orders.labels("new").inc(2)
        m.level.set(xs[i])
        out[i] = xs[i] * 2.0


def without_calls(m, xs, out):
    i = cuda.grid(1)
    if i < xs.size:
        out[i] = xs[i] * 2.0


def test_disabled_set_compiles_to_the_kernel_without_the_calls():
    arr = types.float64[::1]
    off = GpuShop.disabled()._numba_type_
    disabled = compile_ptx(with_calls, (off, arr, arr))
    bare = compile_ptx(without_calls, (off, arr, arr))
    assert _normalized(disabled) == _normalized(bare)
    enabled = compile_ptx(with_calls, (device_type(GpuShop), arr, arr))
    assert _normalized(enabled) != _normalized(bare)       # the control: calls leave code
    assert "atom." not in disabled


def test_disabled_set_is_no_kernel_argument():
    """At launch the disabled set (an empty struct) adds nothing to the kernel's arguments."""
    from numba.cuda.dispatcher import _Kernel
    args = []
    _Kernel._prepare_args(type("K", (), {"extensions": []})(),
                          GpuShop.disabled()._numba_type_, GpuShop.disabled(), 0, [], args)
    assert args == []


def test_device_set_is_passed_as_its_words():
    """A device set's kernel parameters are those of a uint64 array (numba-cuda marshals it
    as one: its to_device() gives the device words)."""
    def k(a, out):
        out[0] = 1.0
    params = [re.findall(r"\.param \.(\w+)", compile_ptx(k, (t, types.float64[::1])))
              for t in (device_type(GpuShop), types.uint64[::1])]
    assert params[0] == params[1]


def test_leader_is_the_lowest_lane_of_its_group():
    """The target-agnostic leader test the warp code runs, against a reference."""
    rng = np.random.default_rng(3)
    for peers in [1, 0x80000000, 0xFFFFFFFF, *rng.integers(1, 2**32, 200).tolist()]:
        lanes = [lane for lane in range(32) if is_leader(peers, lane)]
        lowest = [lane for lane in range(32) if peers >> lane & 1][0]
        assert lanes == [lowest]


def test_kernel_methods_and_count_invalid_compile_for_the_device():
    from engram_numba import kernel_method

    class Served(MetricSet):
        served = Counter("served_total", "Served", labels={"kind": ["a", "b"]})
        seconds = Histogram("seconds", "Time", range=(1e-3, 10))

        @kernel_method
        def record(self, kind, seconds):
            self.served.inc(kind)
            self.seconds.observe(seconds)

    def k(m, xs):
        i = cuda.grid(1)
        if i < xs.size:
            m.record(i & 1, xs[i])
            m.count_invalid()

    got = instructions(compile_ptx(k, (device_type(Served), types.float64[::1])))
    assert {"match.any.sync.b64", "atom.global.add.f64", "atom.global.cas.b64"} <= got


def test_device_timestamps_read_the_global_timer():
    from engram_numba.gpu._ops import global_timer

    def stamp(out):
        out[cuda.grid(1)] = global_timer()

    ptx = compile_ptx(stamp, (types.uint64[::1],))
    assert re.search(r"mov\.u64\s+%rd\d+,\s*%globaltimer;", ptx), ptx[-2000:]
    assert ".extern" not in ptx         # no call left to a function the device lacks


def test_device_events_claim_a_slot_per_warp_with_one_atomic():
    from engram_numba import Event, EventSet
    from engram_numba.gpu._device_tracer import geometry
    from engram_numba.gpu._target import tracer_type

    class GpuSteps(EventSet):
        step = Event("A step", i=np.uint32, x=np.float64)

    def traced(tr, xs):
        i = cuda.grid(1)
        if i < xs.size:
            tr.step.emit(np.uint32(i), xs[i])       # in range by type: no check, no refusal

    ptx = compile_ptx(traced, (tracer_type(GpuSteps, geometry(4, 64)), types.float64[::1]))
    found = instructions(ptx)
    assert {"activemask.b32", "shfl.sync.idx.b32"} <= found, found
    assert ptx.count("atom.global.add.u64") == 1          # the warp's claim (fields in range)
    assert re.search(r"popc\.b32", ptx)
    assert re.search(r"mov\.u64\s+%rd\d+,\s*%globaltimer;", ptx)
    assert "membar.gl" in ptx                              # the slot before its position word
    assert ".extern" not in ptx


def test_device_spans_compile_per_warp():
    """Nested spans: each begin takes the ring's span stack with one compare-and-swap
    (the lowest lane's), each end of a warp without the stack takes one refused begin
    back with one, each begin and end writes one slot (one %globaltimer reading)
    and hands its result to the warp's other lanes."""
    from engram_numba import EventSet, Span
    from engram_numba.gpu._device_tracer import geometry
    from engram_numba.gpu._target import tracer_type

    class GpuWork(EventSet):
        launch = Span("A warp's work", block=np.uint32)
        step = Span("A step", k=np.uint8)

    def spanned(tr, xs):
        tr.launch.begin(np.uint32(cuda.blockIdx.x))
        tr.step.begin(np.uint8(1))
        i = cuda.grid(1)
        if i < xs.size:
            xs[i] = 2.0 * xs[i]
        tr.step.end()
        tr.launch.end()

    ptx = compile_ptx(spanned, (tracer_type(GpuWork, geometry(4, 64)), types.float64[::1]))
    # one stack claim per begin, and per end the count of refused begins it may close
    assert ptx.count("atom.global.cas.b64") == 4
    assert ptx.count("activemask.b32") == 4                   # the warp's lanes, per call
    assert len(re.findall(r"mov\.u64\s+%rd\d+,\s*%globaltimer;", ptx)) == 4
    assert "shfl.sync.idx.b32" in ptx and "membar.gl" in ptx
    assert ".extern" not in ptx


def test_disabled_tracer_compiles_to_the_kernel_without_the_calls():
    from engram_numba import Event, EventSet, Span, Tracer

    class GpuSpans(EventSet):
        launch = Span("A warp's work", block=np.uint32)
        point = Event("A point", i=np.uint32)

    def with_calls(tr, xs):
        i = cuda.grid(1)
        tr.launch.begin(cuda.blockIdx.x)
        if i < xs.size:
            tr.point.emit(i)
            xs[i] = 2.0 * xs[i]
        tr.launch.end()

    def without_calls(tr, xs):
        i = cuda.grid(1)
        if i < xs.size:
            xs[i] = 2.0 * xs[i]

    off = Tracer.disabled(GpuSpans)._numba_type_
    arr = types.float64[::1]
    assert _normalized(compile_ptx(with_calls, (off, arr))) == \
        _normalized(compile_ptx(without_calls, (off, arr)))


def test_device_tracer_refuses_sampling_and_files():
    """A device tracer records a type always or never: a sample rate between 0 and 1 (or
    a file path) is refused, naming it, before any device memory is taken."""
    from engram_numba import Event, EventSet, Tracer, TracingConfig

    class GpuRated(EventSet):
        point = Event("A point", i=np.uint32)

    with pytest.raises(ValueError, match=r"sample rates \{'point': 0\.5\}.*always or never"):
        Tracer.cuda(GpuRated, TracingConfig(sample_rates={"point": 0.5}))
    with pytest.raises(ValueError, match="device memory, not in a file"):
        Tracer.cuda(GpuRated, TracingConfig(path="/tmp/never-made.rings"))

"""Metric sets and event tracers inside numba CUDA kernels (extra ``[cuda]``: numba-cuda
and NVIDIA's wheels).

::

    class Shop(MetricSet):
        orders = Counter("orders_total", "Orders", labels={"kind": ["new", "repeat"]})
        latency = Histogram("latency_seconds", "Time per order", range=(1e-6, 10))

    m = Shop.cuda()                  # values in device memory
    off = Shop.disabled()            # compiles to the kernel without the calls

    @cuda.jit
    def kernel(m, xs):
        i = cuda.grid(1)
        if i < xs.size:
            m.orders.inc("new")
            m.latency.observe(xs[i])

    kernel[blocks, threads](m, xs)
    m.orders.value("new"); exposition(m)   # copied back, read as a CPU set is

Kernels record with atomics on device memory (``atom.global.*``): counters and
histogram buckets aggregated per warp (``match.any.sync`` on the word, ``popc``
or a ``shfl.sync`` sum, one atomic from the leader lane), a histogram's sum and
extremes gathered over the warp with ``shfl.sync`` and written by the leader (one
f64 atomic add, two unsigned atomic maxes); each multiprocessor records
into one of the set's copies (``%smid``), which readers add up.  See
:mod:`._target` for the numba registrations, :mod:`._bodies` for the recording
code (one source for the GPU and the simulator).

Events: ``Tracer.cuda(Events, config)`` (:mod:`._device_tracer`) keeps rings in
device memory; a warp claims its lanes' slots with one atomic, events carry
``%globaltimer`` calibrated to Unix time (:mod:`._clock`), spans are the warp's
(its lanes open one together; a stack per ring), and ``drain()`` gives the CPU
tracer's event array.

Without a GPU, :func:`compile_ptx` compiles a kernel that calls device
functions (numba-cuda 0.30 compiles those for the current device, which needs
a driver) and the simulator (``NUMBA_ENABLE_CUDASIM=1``) runs kernels.
"""

from __future__ import annotations

import contextlib

from ._ops import SIMULATOR, is_leader
from ._device_set import DeviceMetricSet, device_metric_set, device_type

__all__ = ["device_metric_set", "device_type", "DeviceMetricSet", "DeviceTracer", "device_tracer",
           "thread_name", "compile_ptx", "SIMULATOR", "is_leader"]

if not SIMULATOR:
    from . import _target  # noqa: F401  (registers the CUDA types and methods)

from .._kernel_arg import register_device  # noqa: E402

register_device("cuda", device_metric_set)          # MySet.cuda()
from ._device_tracer import DeviceTracer, device_tracer, thread_name  # noqa: E402

register_device("cuda-tracer", device_tracer)       # Tracer.cuda(Events, config)


@contextlib.contextmanager
def _device_cc(cc):
    """numba-cuda 0.30 compiles a kernel's device functions and overloads for the current
    device's compute capability; without a device, use ``cc`` while compiling."""
    from numba.cuda import dispatcher

    class _Device:
        compute_capability = tuple(cc)

    original = dispatcher.get_current_device
    try:
        original().compute_capability
        yield                               # a device exists: leave numba-cuda alone
        return
    except Exception:
        pass
    dispatcher.get_current_device = lambda: _Device()
    try:
        yield
    finally:
        dispatcher.get_current_device = original


def compile_ptx(fn, sig, cc=(8, 0), **kwargs):
    """``numba.cuda.compile_ptx`` that also works on a machine without a GPU for kernels
    that record into device sets (returns the PTX text)."""
    if SIMULATOR:
        raise RuntimeError("compile_ptx needs numba-cuda's compiler; the simulator "
                           "(NUMBA_ENABLE_CUDASIM=1) has none")
    from numba import cuda
    with _device_cc(cc):
        ptx, _ = cuda.compile_ptx(fn, sig, cc=cc, **kwargs)
    return ptx

"""The device's clock in Unix time: ``%globaltimer`` calibrated on the host.

``%globaltimer`` counts nanoseconds, but its epoch is the driver's (often Unix
time, not promised).  :func:`calibrate` reads it in a one-thread kernel between
two host readings of ``time.time_ns()`` and keeps the narrowest of a few
brackets: the device's reading happened inside it, so ``offset`` (the bracket's
middle minus the reading) converts a device timestamp to Unix ns within
``error_ns`` (half the bracket: the launch and copy latencies bound it).

A device tracer's events carry these timestamps (``Tracer.cuda``,
:mod:`._device_tracer`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numba import cuda

from ._ops import global_timer


@dataclass(frozen=True)
class DeviceClock:
    """``unix_ns = ticks + offset_ns``, within ``error_ns``."""

    offset_ns: int
    error_ns: int

    def to_unix_ns(self, ticks):
        """Unix ns of device timestamps (an int or a uint64 array)."""
        if isinstance(ticks, np.ndarray):
            return (ticks.astype(np.int64) + np.int64(self.offset_ns)).astype(np.uint64)
        return int(ticks) + self.offset_ns


_kernel = None


def _read_kernel():
    global _kernel
    if _kernel is None:
        @cuda.jit
        def read(out):
            if cuda.grid(1) == 0:
                out[0] = global_timer()
        _kernel = read
    return _kernel


def calibrate(samples: int = 5) -> DeviceClock:
    """Bracket ``samples`` device readings with host readings; the narrowest bracket wins."""
    if samples < 1:
        raise ValueError(f"samples: at least 1, got {samples}")
    kernel = _read_kernel()
    out = cuda.to_device(np.zeros(1, dtype=np.uint64))
    kernel[1, 1](out)                   # compiled and loaded before the first bracket
    cuda.synchronize()
    best = None
    for _ in range(samples):
        before = time.time_ns()
        kernel[1, 1](out)
        cuda.synchronize()
        after = time.time_ns()
        ticks = int(out.copy_to_host()[0])
        if best is None or after - before < best[1] - best[0]:
            best = (before, after, ticks)
    before, after, ticks = best
    return DeviceClock(offset_ns=(before + after) // 2 - ticks, error_ns=(after - before + 1) // 2)

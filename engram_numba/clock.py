"""Timestamps inside ``@njit`` code, and their conversion to wall-clock time.

numba has no clock (calling ``time`` needs object mode, ~0.3-1 us).  Two are
provided here, both declared inside intrinsics so kernels stay cacheable:

* :func:`monotonic_ns` - ``clock_gettime(CLOCK_MONOTONIC)``, nanoseconds
  (a vDSO call, no syscall: ~25 ns);
* :func:`cycles` - the CPU's time-stamp counter (``rdtsc``, ~10 ns).  It ticks at
  a constant rate only on CPUs with ``constant_tsc`` (see :func:`tsc_is_reliable`).

:class:`Calibration` relates both to ``CLOCK_REALTIME`` so that recorded
timestamps can be exported as absolute unix nanoseconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["monotonic_ns", "cycles", "Calibration", "calibrate", "tsc_is_reliable"]

_CLOCK_MONOTONIC = getattr(time, "CLOCK_MONOTONIC", 1)


@intrinsic
def _clock_gettime_ns(typingctx):
    sig = types.int64()

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        timespec = ir.LiteralStructType([i64, i64])  # struct timespec on LP64
        fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(32), timespec.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "clock_gettime")
        ts = cgutils.alloca_once(builder, timespec)
        builder.call(fn, [ir.Constant(ir.IntType(32), _CLOCK_MONOTONIC), ts])
        sec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 0))
        nsec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 1))
        return builder.add(builder.mul(sec, ir.Constant(i64, 1_000_000_000)), nsec)

    return sig, codegen


@intrinsic
def _readcyclecounter(typingctx):
    sig = types.uint64()

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.readcyclecounter")
        return builder.call(fn, [])

    return sig, codegen


@njit(inline="always")
def monotonic_ns():
    """CLOCK_MONOTONIC in nanoseconds (callable from kernels and Python)."""
    return _clock_gettime_ns()


@njit(inline="always")
def cycles():
    """The CPU time-stamp counter (callable from kernels and Python)."""
    return _readcyclecounter()


def tsc_is_reliable() -> bool:
    """True when the CPU advertises a constant, non-stop time-stamp counter."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return "constant_tsc" in flags.split() and "nonstop_tsc" in flags.split()


@njit(cache=True)
def _pair():
    c0 = cycles()
    m = monotonic_ns()
    c1 = cycles()
    return c0 + (c1 - c0) // 2, m


@dataclass(frozen=True)
class Calibration:
    """How cycle counts and monotonic nanoseconds map to unix time."""

    ticks_per_ns: float
    cycles_at: int
    monotonic_at: int
    realtime_minus_monotonic: int

    def cycles_to_ns(self, delta_cycles):
        return delta_cycles / self.ticks_per_ns

    def monotonic_to_unix_ns(self, monotonic):
        return monotonic + self.realtime_minus_monotonic


def calibrate(duration: float = 0.02) -> Calibration:
    """Measure the TSC rate against CLOCK_MONOTONIC over ``duration`` seconds."""
    _pair()
    offsets = []
    for _ in range(5):
        mono = time.clock_gettime_ns(_CLOCK_MONOTONIC)
        real = time.time_ns()
        mono2 = time.clock_gettime_ns(_CLOCK_MONOTONIC)
        offsets.append((mono2 - mono, real - (mono + mono2) // 2))
    realtime_minus_monotonic = min(offsets)[1]
    c0, m0 = _pair()
    time.sleep(duration)
    c1, m1 = _pair()
    return Calibration(ticks_per_ns=(c1 - c0) / max(m1 - m0, 1), cycles_at=int(c1),
                       monotonic_at=int(m1), realtime_minus_monotonic=int(realtime_minus_monotonic))

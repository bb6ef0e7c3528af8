"""Timestamps inside ``@njit`` code, and their conversion to wall-clock time.

numba has no clock (calling ``time`` needs object mode, ~0.3-1 us).  Two are
provided here, both declared inside intrinsics so kernels stay cacheable:

* :func:`monotonic_ns` - ``clock_gettime(CLOCK_MONOTONIC)``, nanoseconds
  (a vDSO call, no syscall: ~25 ns);
* :func:`cycles` - the CPU's time-stamp counter (``rdtsc``, ~10 ns).  It ticks at
  a constant rate only on CPUs with ``constant_tsc`` (see :func:`tsc_is_reliable`).

:class:`Anchor` converts recorded ticks to absolute unix nanoseconds, in
integer arithmetic (the one conversion path); :func:`calibrate` measures the
TSC rate for benchmarks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["monotonic_ns", "cycles", "Anchor", "Calibration", "calibrate", "now_triple",
           "tsc_is_reliable"]

_CLOCK_MONOTONIC = getattr(time, "CLOCK_MONOTONIC", 1)


# The two clocks as intrinsics, for compiled code only: the package's recording code calls
# them directly (``monotonic_ns`` and ``cycles`` below, callable from Python too, are
# inlined by numba at each call site, which runs numba's front end on them every time).

@intrinsic
def read_monotonic_ns(typingctx):
    """CLOCK_MONOTONIC in nanoseconds, int64 (compiled code only)."""
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
def read_cycles(typingctx):
    """The CPU time-stamp counter, uint64 (compiled code only)."""
    sig = types.uint64()

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.readcyclecounter")
        return builder.call(fn, [])

    return sig, codegen


@njit(inline="always")
def monotonic_ns():
    """CLOCK_MONOTONIC in nanoseconds (callable from kernels and Python)."""
    return read_monotonic_ns()


@njit(inline="always")
def cycles():
    """The CPU time-stamp counter (callable from kernels and Python)."""
    return read_cycles()


def tsc_is_reliable() -> bool:
    """True when the CPU advertises a constant, non-stop time-stamp counter."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return "constant_tsc" in flags.split() and "nonstop_tsc" in flags.split()


@njit(nogil=True, cache=True)
def _pair():
    c0 = cycles()
    m = monotonic_ns()
    c1 = cycles()
    return c0 + (c1 - c0) // 2, m


def now_triple(tries: int = 5) -> tuple:
    """(TSC ticks, CLOCK_MONOTONIC ns, unix ns), taken together.

    The sample whose two wall-clock reads lie closest together (of ``tries``)
    is kept, so a preemption in the middle of one does not skew it.
    """
    best = None
    for _ in range(tries):
        real0 = time.time_ns()
        tsc, mono = _pair()
        real1 = time.time_ns()
        if best is None or real1 - real0 < best[0]:
            best = (real1 - real0, int(tsc), int(mono), (real0 + real1) // 2)
    return best[1:]


# -- ticks -> unix nanoseconds ---------------------------------------------------------
# Integer arithmetic only: float64 cannot hold a unix-ns timestamp to the
# nanosecond (its spacing at 1.8e18 is 256 ns).  A tick delta d is scaled as
# round(d * mult / 2**shift), the 96-bit product split in two 64-bit halves.

_MAX_MULT = (1 << 32) - 1


@njit(nogil=True, cache=True)
def _scale(d, mult, shift):
    """round(d * mult / 2**shift) for d < 2**64, mult < 2**32, shift <= 32."""
    hi = (d >> np.uint64(32)) * mult
    lo = (d & np.uint64(0xFFFFFFFF)) * mult
    half = (np.uint64(1) << shift) >> np.uint64(1)
    return (hi << (np.uint64(32) - shift)) + ((lo + half) >> shift)


@njit(nogil=True, cache=True)
def _ticks_to_unix(ticks, anchor_ticks, anchor_unix, mult, shift, out):
    for i in range(ticks.size):
        t = ticks[i]
        if t >= anchor_ticks:
            out[i] = anchor_unix + _scale(t - anchor_ticks, mult, shift)
        else:
            out[i] = anchor_unix - _scale(anchor_ticks - t, mult, shift)
    return out


@dataclass(frozen=True)
class Anchor:
    """A point where a tick counter and unix time are known, and the tick rate.

    ``unix_ns(t) = unix + ((t - ticks) * mult) >> shift``, in exact integer
    arithmetic; ``mult < 2**32`` and ``shift <= 32`` are chosen for the most
    precision the rate allows.  CLOCK_MONOTONIC counts nanoseconds: its anchor
    has ``mult = 1, shift = 0``.  This is the only place where recorded ticks
    become unix time.
    """

    ticks: int
    unix: int
    mult: int
    shift: int

    def at_now(self) -> "Anchor":
        """The same rate, anchored at this moment's TSC and wall clock.

        Converting with an anchor taken now makes timestamps agree with the
        current wall clock, even after it was stepped.
        """
        tsc, _, unix = now_triple()
        return Anchor(tsc, unix, self.mult, self.shift)

    @classmethod
    def from_rate(cls, ticks: int, unix: int, ticks_per_ns: float) -> "Anchor":
        if not (math.isfinite(ticks_per_ns) and ticks_per_ns > 0):
            raise ValueError(f"tick rate must be positive and finite, got {ticks_per_ns!r}")
        ns_per_tick = 1.0 / ticks_per_ns
        shift = 32
        while shift > 0 and ns_per_tick * (1 << shift) > _MAX_MULT:
            shift -= 1
        mult = int(round(ns_per_tick * (1 << shift)))
        if not 0 < mult <= _MAX_MULT:
            raise ValueError(f"tick rate {ticks_per_ns!r} per ns is out of range")
        return cls(int(ticks), int(unix), mult, shift)

    @classmethod
    def monotonic(cls) -> "Anchor":
        """Converts CLOCK_MONOTONIC nanoseconds to unix nanoseconds."""
        _, mono, unix = now_triple()
        return cls(mono, unix, 1, 0)

    @property
    def ticks_per_ns(self) -> float:
        return (1 << self.shift) / self.mult

    def to_unix_ns(self, ticks) -> np.ndarray:
        """Unix nanoseconds (uint64) of tick values (an array or a scalar)."""
        t = np.ascontiguousarray(ticks, dtype=np.uint64).reshape(-1)
        out = np.empty(t.size, dtype=np.uint64)
        return _ticks_to_unix(t, np.uint64(self.ticks), np.uint64(self.unix),
                              np.uint64(self.mult), np.uint64(self.shift), out)


@dataclass(frozen=True)
class Calibration:
    """The TSC rate measured against CLOCK_MONOTONIC (benchmarks convert cycles with it)."""

    ticks_per_ns: float
    cycles_at: int
    monotonic_at: int

    def cycles_to_ns(self, delta_cycles):
        return delta_cycles / self.ticks_per_ns


def calibrate(duration: float = 0.02) -> Calibration:
    """Measure the TSC rate against CLOCK_MONOTONIC over ``duration`` seconds."""
    _pair()
    c0, m0 = _pair()
    time.sleep(duration)
    c1, m1 = _pair()
    return Calibration(ticks_per_ns=(c1 - c0) / max(m1 - m0, 1), cycles_at=int(c1),
                       monotonic_at=int(m1))

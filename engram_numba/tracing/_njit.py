"""numba support for CognitiveTracer: pass the tracer into a kernel, call trace_*.

The tracer's geometry (rings, capacity, clock) is part of its numba type, so
the recording code is specialised with constants; its native value is the
region's base address.  A disabled tracer has its own type with an empty value
and methods that compile to nothing.
"""

from __future__ import annotations

import inspect

import numpy as np
from numba import types
from numba.core import errors
from numba.extending import make_attribute_wrapper, overload_method, register_model, unbox

from .._atomics import f32_bits
from .._cache import FINGERPRINT, rebuild_type
from .._kernel_arg import AddressModel, unbox_address
from . import _ring as R
from .events import EventType

U32_MAX = 0xFFFFFFFF


class TracerType(types.Type):
    def __init__(self, enabled: bool, n_rings: int, capacity: int, clock: int):
        self.enabled = enabled
        self.n_rings = n_rings
        self.capacity = capacity
        self.clock = clock
        name = (f"CognitiveTracer[{n_rings}x{capacity},clock={clock}]" if enabled
                else "DisabledCognitiveTracer")
        super().__init__(name=name)

    @property
    def key(self):
        return tuple(getattr(self, f, None) for f in ("enabled", "n_rings", "capacity", "clock")) \
            + (FINGERPRINT,)

    def __reduce__(self):
        return rebuild_type, (_tracer_type, (self.enabled, self.n_rings, self.capacity, self.clock,
                                             FINGERPRINT))


def _tracer_type(enabled, n_rings, capacity, clock, fingerprint):
    if fingerprint != FINGERPRINT:
        raise ValueError("written by another version")
    return TracerType(enabled, n_rings, capacity, clock)


register_model(TracerType)(AddressModel)
make_attribute_wrapper(TracerType, "base", "base")
make_attribute_wrapper(TracerType, "pid", "pid")
unbox(TracerType)(unbox_address)


def _integer(method, name, t):
    if isinstance(t, types.Boolean) or not isinstance(t, (types.Integer, types.IntEnumMember)):
        raise errors.TypingError(f"{method}: {name} must be an integer, got {t}")


def _number(method, name, t):
    if not isinstance(t, (types.Integer, types.Float, types.IntEnumMember, types.Boolean)):
        raise errors.TypingError(f"{method}: {name} must be a number, got {t}")


def _subtype(method, name, t, enum_cls):
    _integer(method, name, t)
    if isinstance(t, types.IntEnumMember) and t.instance_class is not enum_cls:
        raise errors.TypingError(f"{method}: {name} takes {enum_cls.__name__} members, "
                                 f"got a {t.instance_class.__name__}")


_U8 = np.uint64(8)
_U32 = np.uint64(32)


def _checked(method, specs):
    def check(*args):
        for (name, kind), t in zip(specs, args):
            if t is None:
                raise errors.TypingError(f"{method}: missing argument {name}")
            kind(method, name, t)
    return check


def _register():
    from ..metrics.cognitive import InterferenceType, PrimingType

    def priming(tr):
        NR, CAP, CLK = tr.n_rings, tr.capacity, tr.clock
        T = np.uint64(EventType.PRIMING)

        def impl(tr, priming_type, strength, source_node, target_node):
            thresh = R.threshold(tr.base, 0)
            if thresh == 0:
                return False
            sub = np.int64(priming_type)
            if sub < 0 or sub > 2:
                R.count_invalid(tr.base)
                return False
            w2 = T | (np.uint64(sub) << _U8) | (np.uint64(f32_bits(np.float32(strength))) << _U32)
            return R.emit(tr.base, tr.pid, NR, CAP, CLK, thresh, w2, np.uint64(source_node),
                          np.uint64(target_node), np.uint64(0))
        return impl

    def interference(tr):
        NR, CAP, CLK = tr.n_rings, tr.capacity, tr.clock
        T = np.uint64(EventType.INTERFERENCE)

        def impl(tr, interference_type, magnitude, target_episode_id, competing_episode_count):
            thresh = R.threshold(tr.base, 1)
            if thresh == 0:
                return False
            sub = np.int64(interference_type)
            count = np.int64(competing_episode_count)
            if sub < 0 or sub > 2 or count < 0 or count > U32_MAX:
                R.count_invalid(tr.base)
                return False
            w2 = T | (np.uint64(sub) << _U8) | (np.uint64(f32_bits(np.float32(magnitude))) << _U32)
            return R.emit(tr.base, tr.pid, NR, CAP, CLK, thresh, w2, np.uint64(target_episode_id),
                          np.uint64(count), np.uint64(0))
        return impl

    def reconsolidation(tr):
        NR, CAP, CLK = tr.n_rings, tr.capacity, tr.clock
        T = np.uint64(EventType.RECONSOLIDATION)

        def impl(tr, episode_id, window_position, plasticity_factor, modification_count):
            thresh = R.threshold(tr.base, 2)
            if thresh == 0:
                return False
            count = np.int64(modification_count)
            if count < 0 or count > U32_MAX:
                R.count_invalid(tr.base)
                return False
            w2 = T | (np.uint64(f32_bits(np.float32(window_position))) << _U32)
            w4 = np.uint64(count) | (np.uint64(f32_bits(np.float32(plasticity_factor))) << _U32)
            return R.emit(tr.base, tr.pid, NR, CAP, CLK, thresh, w2, np.uint64(episode_id), w4,
                          np.uint64(0))
        return impl

    def false_memory(tr):
        NR, CAP, CLK = tr.n_rings, tr.capacity, tr.clock
        T = np.uint64(EventType.FALSE_MEMORY)

        def impl(tr, critical_lure_hash, source_list_size, reconstruction_confidence):
            thresh = R.threshold(tr.base, 3)
            if thresh == 0:
                return False
            size = np.int64(source_list_size)
            if size < 0 or size > U32_MAX:
                R.count_invalid(tr.base)
                return False
            w2 = T | (np.uint64(f32_bits(np.float32(reconstruction_confidence))) << _U32)
            return R.emit(tr.base, tr.pid, NR, CAP, CLK, thresh, w2, np.uint64(critical_lure_hash),
                          np.uint64(size), np.uint64(0))
        return impl

    def enum_check(enum_cls):
        return lambda m, n, t: _subtype(m, n, t, enum_cls)

    signatures = {
        "trace_priming": ([("priming_type", enum_check(PrimingType)), ("strength", _number),
                           ("source_node", _integer), ("target_node", _integer)], priming),
        "trace_interference": ([("interference_type", enum_check(InterferenceType)),
                                ("magnitude", _number), ("target_episode_id", _integer),
                                ("competing_episode_count", _integer)], interference),
        "trace_reconsolidation": ([("episode_id", _integer), ("window_position", _number),
                                   ("plasticity_factor", _number),
                                   ("modification_count", _integer)], reconsolidation),
        "trace_false_memory": ([("critical_lure_hash", _integer), ("source_list_size", _integer),
                                ("reconstruction_confidence", _number)], false_memory),
    }
    for name, (specs, body) in signatures.items():
        _register_method(name, specs, body)


def _register_method(name, specs, body):
    check = _checked(name, specs)
    arg_names = [n for n, _ in specs]

    def _ol(tr, *args):
        check(*args)
        if not tr.enabled:
            return _disabled_impls[len(args)]
        return body(tr)

    _ol.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ["tr"] + arg_names])
    overload_method(TracerType, name, strict=False, inline="always")(_ol)


def _off3(tr, a, b, c):
    return False


def _off4(tr, a, b, c, d):
    return False


_disabled_impls = {3: _off3, 4: _off4}


_register()


@overload_method(TracerType, "release_thread")
def _release_thread(tr):
    if not tr.enabled:
        return lambda tr: -1
    NR = tr.n_rings

    def impl(tr):
        return R.release_ring(tr.base, tr.pid, NR)
    return impl

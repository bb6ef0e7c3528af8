"""Recording helpers (``engram_numba._inline``): compiled once per process for every shape,
callable from Python all the same."""

import numpy as np
from numba import njit, types

from engram_numba import Event, EventSet, Tracer, TracingConfig
from engram_numba.metrics.buckets import exponential_index, exponential_tables
from engram_numba.tracing import _ring


class TwoTypes(EventSet, name="inline_two_types"):
    first = Event("The first type", k=np.uint32)
    second = Event("The second type", x=np.float64)


@njit
def _emit_both(tr):
    tr.first.emit(1)
    tr.second.emit(2.0)


def test_a_helper_compiles_once_for_every_event_type_and_ring_geometry():
    """numba compiles a callee once per literal value of its arguments; the helpers take
    plain types, so two event types on tracers of two geometries share one compile."""
    helpers = (_ring.emit, _ring.write_slot, _ring.sampled)
    before = {h: set(h.signatures) for h in helpers}
    tracers = [Tracer(TwoTypes, TracingConfig(ring_buffer_size=size)) for size in (64, 128)]
    for tr in tracers:
        _emit_both(tr)
        assert len(tr.drain()) == 2
    for h in helpers:
        new = set(h.signatures) - before[h]
        assert h.signatures, h
        assert len(new) <= 1, (h, new)         # at most one compile in this process
        literal = [sig for sig in h.signatures
                   if any(isinstance(a, types.Literal) for a in sig)]
        assert not literal, (h, literal)
    for tr in tracers:
        tr.close()


def test_a_helper_called_from_python_runs_the_same_code():
    lut, bounds = exponential_tables(3)

    @njit
    def compiled(v):
        return exponential_index(v, 3, lut, bounds)

    for v in (1e-3, 0.5, 1.0, 1.5, 2.0, 1e6):
        assert exponential_index(v, 3, lut, bounds) == compiled(v)

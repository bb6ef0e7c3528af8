"""A user's own program, as a newcomer writes it: a metric set and an event set of their own,
nested spans under ``prange``, each threading layer, exact totals.  In a subprocess per layer
(the layer is chosen once per process), on whatever numba release the suite runs with."""

import json
import subprocess
import sys

import pytest

from .test_owned_copies import _layer_available, _layer_env

PROGRAM = r'''
import enum, json, sys
import numpy as np
from numba import njit, prange, threading_layer
from engram_numba import (Counter, Event, EventSet, Gauge, Histogram, MetricSet, Span, Tracer,
                          TracingConfig)
from engram_numba.export import exposition
from engram_numba.tracing.spans import SpanAssembler

class Phase(enum.IntEnum):
    LOAD = 0
    MIX = 1

class Mixer(MetricSet, name="mixer", shards=4):
    batches = Counter("mixer_batches_total", "Batches mixed", labels={"phase": Phase})
    level = Gauge("mixer_level", "Items in flight")
    weight = Histogram("mixer_weight", "Weight per item", scale=3, range=(1e-3, 1e3))

class MixerEvents(EventSet, name="mixer"):
    item = Event("One item", weight=np.float64, index=np.uint32)
    batch = Span("One batch", index=np.uint32)
    step = Span("One phase of a batch", phase=Phase)

@njit(parallel=True)
def run(m, tr, n):
    for i in prange(n):
        tr.batch.begin(i)
        for p in range(2):
            tr.step.begin(p)
            w = 0.5 + (i % 10)
            m.batches.inc(p)
            m.weight.observe(w)
            m.level.add(1)
            tr.item.emit(w, i)
            m.level.sub(1)
            tr.step.end()
        tr.batch.end()

N = int(sys.argv[1])
m = Mixer()
tr = Tracer(MixerEvents, TracingConfig(ring_buffer_size=1 << 16))
run(m, tr, N)
events = tr.drain()
spans = SpanAssembler().feed(events)
by_id = {s.span_id: s for s in spans}
nested = all(by_id[s.parent_id].name == "batch" and by_id[s.parent_id].ring == s.ring
             for s in spans if s.name == "step")
h = m.weight.read()
weights = np.array([0.5 + (i % 10) for i in range(N)] * 2)
print(json.dumps({
    "layer": threading_layer(),
    "batches": {k: int(v) for k, v in m.batches.values().items()},
    "level": m.level.value(), "count": int(h.count), "sum": float(h.sum),
    "expected_sum": float(weights.sum()),
    "items": int((events["event_type"] == 0).sum()),
    "spans": {name: sum(1 for s in spans if s.name == name) for name in ("batch", "step")},
    "nested": nested, "rings": int(np.unique(events["thread"]).size),
    "invalid": int(tr.stats()["invalid"]), "dropped": int(tr.stats()["total"]["dropped"]),
    "exposed": "mixer_batches_total{phase=\"mix\"} " + str(N) in exposition(m),
}))
'''


@pytest.mark.parametrize("layer", ["workqueue", "omp", "tbb"])
def test_own_sets_and_nested_spans_under_prange_are_exact(tmp_path, layer):
    n = 3000
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    if not _layer_available(layer):
        pytest.skip(f"numba's {layer} threading layer is not available here")
    r = subprocess.run([sys.executable, str(script), str(n)], capture_output=True, text=True,
                       env=_layer_env(layer), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["layer"] == layer
    assert out["batches"] == {"load": n, "mix": n}
    assert out["level"] == 0
    assert out["count"] == 2 * n and out["sum"] == out["expected_sum"]
    assert out["items"] == 2 * n
    assert out["spans"] == {"batch": n, "step": 2 * n}
    assert out["nested"], "a step span is not the child of its batch on the same thread"
    assert out["invalid"] == 0 and out["dropped"] == 0
    assert out["exposed"]

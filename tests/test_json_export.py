"""JSON Lines and batch documents: schema-valid, exact, and float32 round-trips."""

import json

import jsonschema
import numpy as np
import pytest
from numba import njit

from engram_numba import CognitiveEvents, CognitiveTracer, TracingConfig
from engram_numba.export._jsontext import write_f32
from engram_numba.export.json import (event_records, events_to_document, events_to_jsonl,
                                      schema)


@njit
def record(tr, n):
    for i in range(n):
        tr.trace_priming(i % 3, np.float32(0.1) * i, i, np.uint64(2 ** 64 - 1) - np.uint64(i))
        tr.trace_interference(i % 3, -1.5e-7 * i, np.uint64(2 ** 63) + np.uint64(i), 2 ** 32 - 1)
        tr.trace_reconsolidation(i, np.nan if i == 3 else 0.5, np.inf if i == 4 else 3e38, i)
        tr.trace_false_memory(i, 0, 1e-45 * i)


@pytest.fixture(scope="module")
def events():
    tr = CognitiveTracer(TracingConfig(ring_buffer_size=1024, max_threads=2))
    record(tr, 50)
    return tr.drain()


def validator(name):
    return jsonschema.Draft202012Validator(schema(CognitiveEvents, name))


def test_every_line_is_a_schema_valid_event(events):
    lines = events_to_jsonl(events).decode().splitlines()
    assert len(lines) == events.size == 200
    v = validator("event")
    for line in lines:
        v.validate(json.loads(line))


def test_document_is_schema_valid(events):
    doc = json.loads(events_to_document(events, exported_at=1234.5))
    validator("document").validate(doc)
    assert doc["count"] == 200 and doc["exported_at"] == 1234.5
    assert json.loads(events_to_document(events[:0]))["events"] == []


def test_values_are_exact(events):
    recs = event_records(events)
    for rec, ev in zip(recs, events):
        assert rec["timestamp"] == int(ev["timestamp"]) and rec["sequence"] == int(ev["sequence"])
        assert rec["thread"] == int(ev["thread"])
        t = rec["event_type"]
        if t == "priming":
            assert rec["priming_type"] == ["semantic", "associative", "repetition"][ev["priming_type"]]
            assert np.float32(rec["strength"]) == ev["strength"]
            assert rec["target_node"] == int(ev["target_node"])      # up to 2**64 - 1
        elif t == "interference":
            assert np.float32(rec["magnitude"]) == ev["magnitude"]
            assert rec["target_episode_id"] == int(ev["target_episode_id"])
            assert rec["competing_episode_count"] == 2 ** 32 - 1
        elif t == "reconsolidation":
            for f in ("window_position", "plasticity_factor"):
                if np.isfinite(ev[f]):
                    assert np.float32(rec[f]) == ev[f]
                else:
                    assert rec[f] is None                            # JSON has no NaN/inf
        else:
            assert np.float32(rec["reconstruction_confidence"]) == ev["reconstruction_confidence"]
    with pytest.raises(jsonschema.ValidationError):
        bad = dict(recs[0], priming_type="telepathic")
        validator("event").validate(bad)


@njit
def _fmt(bits):
    buf = np.empty(64, np.uint8)
    return buf[:write_f32(buf, 0, bits)]


def test_float32_text_round_trips_and_is_short():
    rng = np.random.default_rng(5)
    bits = rng.integers(0, 2 ** 32, 100_000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    for b, v in zip(bits, values):
        text = bytes(_fmt(b)).decode()
        if np.isfinite(v):
            assert np.float32(float(text)) == v, (v, text)
        else:
            assert text == "null"
    assert bytes(_fmt(np.float32(0.7).view(np.uint32))) == b"0.7"
    assert bytes(_fmt(np.float32(-2.5e-8).view(np.uint32))) == b"-2.5e-8"
    assert bytes(_fmt(np.float32(1e16).view(np.uint32))) == b"1e16"
    assert bytes(_fmt(np.float32(0.0).view(np.uint32))) == b"0.0"


def test_wrong_arrays_are_refused():
    with pytest.raises(ValueError, match="expected events of an event set"):
        events_to_jsonl(np.zeros(3, np.float64))

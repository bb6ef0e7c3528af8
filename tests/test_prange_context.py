"""prange workers inherit the launching thread's span: a span around a parallel loop is
the parent of the row spans on every worker, in its trace, under each threading layer;
only the region's workers inherit it, and concurrent regions each pass their own."""

import functools
import json
import os
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(__file__), "prange_worker.py")


def run(layer, **env):
    return _run(layer, tuple(sorted(env.items())))


@functools.lru_cache(maxsize=None)            # one interpreter per layer for the tests below
def _run(layer, env):
    env = dict(env)
    lib = os.path.join(sys.prefix, "lib")
    full = dict(os.environ, NUMBA_THREADING_LAYER=layer, NUMBA_NUM_THREADS="2",
                LD_LIBRARY_PATH=os.pathsep.join(p for p in (lib, os.environ.get(
                    "LD_LIBRARY_PATH")) if p), **env)
    full["PYTHONPATH"] = os.pathsep.join(
        p for p in (os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    os.environ.get("PYTHONPATH")) if p)
    out = subprocess.run([sys.executable, WORKER], capture_output=True, text=True,
                         timeout=600, env=full)
    if out.returncode != 0 and layer != "workqueue" and (
            "TBB" in out.stderr or "OpenMP" in out.stderr or "threading layer" in out.stderr):
        pytest.skip(f"threading layer {layer} is not available here: {out.stderr[-300:]}")
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("layer", ["workqueue", "omp", "tbb"])
def test_row_spans_on_every_worker_are_children_of_the_launching_span(layer):
    result = run(layer)
    assert result["layer"] == layer
    for found in result["found"]:
        assert found["rows"] == 96 and found["threads"] == 2 and found["on_workers"] > 0
        assert found["children"] == 96, found            # the innermost span at entry
        assert found["roots"] == 0, found
        assert found["same_trace"] == 96, found          # nested: via the context table
        assert found["notes"] == found["notes_in_rows"] == found["notes_same_trace"] == 96


def test_control_without_the_hook_the_rows_on_workers_are_roots():
    result = run("workqueue", ENGRAM_NUMBA_PRANGE_CONTEXT="0")
    for found in result["found"]:
        assert found["on_workers"] > 0
        assert found["roots"] == found["on_workers"], found
        assert found["same_trace"] == 96 - found["on_workers"], found
        assert found["notes_same_trace"] == 96 - found["on_workers"], found


def test_an_otlp_receiver_gets_every_row_of_the_sweep_as_its_child():
    # the receiver is built from the official TraceService stubs; the worker exports the
    # spans of its last plain sweep, whose rows ran on the launcher and on a worker
    from .receivers import OtlpGrpcReceiver
    with OtlpGrpcReceiver() as rx:
        result = run("workqueue", PRANGE_OTLP_ENDPOINT=rx.endpoint)
        spans = [s for req in rx.traces for rs in req.resource_spans for ss in rs.scope_spans
                 for s in ss.spans]
    assert result["found"][0]["on_workers"] > 0
    (outer,) = [s for s in spans if s.name == "sweep"]
    rows = [s for s in spans if s.name == "row"]
    assert len(rows) == 96
    assert {s.parent_span_id for s in rows} == {outer.span_id}
    assert {s.trace_id for s in rows} == {outer.trace_id} and len(outer.trace_id) == 16
    # the notes of a nested sweep's bare rows, as log records: in the sweep's step span,
    # in the sweep's trace, the notes on workers too
    bare = result["bare"][1]
    assert bare["on_workers"] > 0
    records = [r for req in rx.logs for rl in req.resource_logs for sl in rl.scope_logs
               for r in sl.log_records]
    notes = [r for r in records if r.body.string_value == "note"
             and {kv.key: kv.value.int_value for kv in r.attributes}["sweep.r"] < 96]
    assert len(notes) == 96
    assert {r.span_id for r in notes} == {bare["parent_id"].to_bytes(8, "big")}
    assert {r.trace_id.hex() for r in notes} == {bare["trace_hex"]}


@pytest.mark.parametrize("layer", ["workqueue", "omp", "tbb"])
def test_a_thread_outside_a_running_region_does_not_inherit_its_span(layer):
    # a plain Python thread begins its span while the region's rows wait for it: it is
    # the root of a trace of its own; the rows on the workers still get the sweep
    result = run(layer)["outside"]
    assert result["guard_ran_out"] == 0
    assert result["lone_parent"] == 0 and result["lone_is_its_root"], result
    assert result["rows"] == 16 and result["children"] == 16, result
    if layer == "workqueue":                  # (its launcher runs no rows)
        assert result["rows_on_workers"] == 16


@pytest.mark.parametrize("layer", ["omp", "tbb"])
def test_regions_launched_at_the_same_time_each_pass_their_own_span(layer):
    # the second sweep starts once the first has begun a row, and each row waits until
    # both sweeps have begun one, so the first sweep's later rows on its workers begin
    # while the second sweep runs: they must still take their own sweep as parent
    result = run(layer)["concurrent"]
    assert result["guard_ran_out"] == 0
    assert result["rows"] == 65
    assert result["per_parent"] == [32, 33], result
    assert result["worker_rows"][0] > 0, result


@pytest.mark.parametrize("layer", ["workqueue", "omp", "tbb"])
def test_instant_events_on_workers_with_no_span_open_belong_to_the_launching_span(layer):
    # notes emitted in a prange body, with no span open on the row's thread, are in the
    # launcher's innermost span and its trace; a note after the region, and notes of a
    # region launched with no span open, are in none
    for found in run(layer)["bare"][:2]:
        assert found["rows"] == 96 and found["on_workers"] > 0, found
        assert found["in_parent"] == 96, found
        assert found["attached"] == list(range(96)), found    # SpanAssembler's span events
        assert found["same_trace"] == 96, found
        assert found["after"] == 1 and found["after_in_a_span"] == 0, found
        assert found["plain"] == 96 and found["plain_in_a_span"] == 0, found
        assert 0 < found["contexts"] < found["written"], found


@pytest.mark.parametrize("layer", ["workqueue", "omp", "tbb"])
def test_a_worker_s_events_drained_in_the_middle_of_its_chunk_keep_the_launching_span(layer):
    found = run(layer)["bare"][3]
    assert found["guard_ran_out"] == 0 and found["first_on_worker"] > 0, found
    assert found["first_in_sweep"] == found["first"], found
    assert found["later_on_worker"] > 0, found
    assert found["later_in_sweep"] == found["later"] == 2, found


def test_control_without_the_hook_instant_events_on_workers_are_in_no_span():
    for found in run("workqueue", ENGRAM_NUMBA_PRANGE_CONTEXT="0")["bare"][:2]:
        assert found["on_workers"] > 0, found
        assert found["in_parent"] == 96 - found["on_workers"], found
        assert found["contexts"] == 0, found


def test_a_set_of_spans_only_gets_no_context_records():
    found = run("workqueue")["span_only"]
    assert found["rows"] == 96 and found["on_workers"] > 0, found
    assert found["children"] == 96 and found["contexts"] == 0, found


def test_a_loop_whose_workers_emit_no_instant_event_writes_no_context_record():
    found = run("workqueue")["bare"][2]
    assert found["sweeps"] == 40 and found["contexts"] == 0, found      # begins and ends

"""Misuse from Python and from kernels: a clear exception, nothing half-recorded, no crash.

Each case here once crashed the process, corrupted memory or recorded part of
a call before raising; the ones that could crash run in a subprocess.
"""

import enum

import numpy as np
import pytest
from numba import njit

from engram_numba import KernelTypingError

from engram_numba import (CognitivePatternMetrics, CognitiveTracer, Counter, Gauge, Histogram,
                          InterferenceType, MetricSet, PrimingType, RejectionReason,
                          TracingConfig, attach_metrics, kernel_method)

from .conftest import run_isolated


def test_writes_through_a_read_only_attach_raise_type_error_and_never_crash(tmp_path):
    path = tmp_path / "c.metrics"
    CognitivePatternMetrics.create(path).close()
    r = run_isolated(f"""
        from engram_numba import CognitivePatternMetrics, attach_metrics
        calls = {{
            "reset": lambda m: m.reset(),
            "count_invalid": lambda m: m.count_invalid(),
            "inc": lambda m: m.priming_events.inc(0),
            "add": lambda m: m.priming_events.add(2, 0),
            "set": lambda m: m.overhead_percent.set(1.0),
            "observe": lambda m: m.priming_strength.observe(0.5),
            "metric reset": lambda m: m.priming_strength.reset(),
            "topk": lambda m: m.priming_node_pairs.set([((1, 2), 3)]),
        }}
        for opener in (lambda: attach_metrics({str(path)!r}),
                       lambda: CognitivePatternMetrics.attach({str(path)!r}, writable=False)):
            m = opener()
            for name, call in calls.items():
                try:
                    call(m)
                except TypeError as exc:
                    assert "read-only" in str(exc), exc
                else:
                    raise SystemExit(f"{{name}} did not raise")
        c = CognitivePatternMetrics.attach({str(path)!r}, writable=False)
        try:
            c.record_priming(0, 0.5)
        except TypeError as exc:
            assert "read-only" in str(exc)
        else:
            raise SystemExit("record_priming did not raise")
        print("all refused")
    """)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr[-2000:])
    assert "all refused" in r.stdout
    assert CognitivePatternMetrics.attach(path).priming_events_total() == 0


def test_a_file_whose_data_area_is_shorter_than_its_layout_is_refused(tmp_path):
    import struct
    path = tmp_path / "c.metrics"
    CognitivePatternMetrics.create(path).close()
    raw = bytearray(path.read_bytes())
    data_offset = struct.unpack_from("<Q", raw, 32)[0]
    struct.pack_into("<Q", raw, 40, 64)                 # header: 64 bytes of data
    path.write_bytes(bytes(raw[:data_offset + 64]))     # and a file to match
    r = run_isolated(f"""
        from engram_numba import RegionError, CognitivePatternMetrics, attach_metrics
        for attach in (attach_metrics, CognitivePatternMetrics.attach):
            try:
                attach({str(path)!r})
            except RegionError as exc:
                assert "data area is 64 bytes" in str(exc), exc
            else:
                raise SystemExit("accepted")
        print("refused")
    """)
    assert r.returncode == 0 and "refused" in r.stdout, (r.returncode, r.stderr[-2000:])


def test_a_member_of_another_enum_is_refused_from_python():
    m = CognitivePatternMetrics()
    for call in (lambda: m.record_interference(PrimingType.REPETITION, 0.5),
                 lambda: m.record_interference(RejectionReason.TOO_SOON, 0.5),
                 lambda: m.record_priming(InterferenceType.FAN, 0.5),
                 lambda: m.record_reconsolidation_rejection(PrimingType.SEMANTIC),
                 lambda: m.interference_count(PrimingType.SEMANTIC)):
        with pytest.raises(ValueError, match="takes .* members"):
            call()
    assert m.interference_detections_total() == 0 and m.priming_events_total() == 0
    assert m.invalid_records == 0
    tr = CognitiveTracer(TracingConfig(ring_buffer_size=64, max_threads=2))
    with pytest.raises(ValueError, match="takes PrimingType members"):
        tr.trace_priming(InterferenceType.FAN, 0.5, 1, 2)
    with pytest.raises(ValueError, match="takes InterferenceType members"):
        tr.trace_interference(PrimingType.SEMANTIC, 0.5, 1, 2)
    assert tr.drain().size == 0


def test_a_label_equal_to_one_seen_before_but_of_another_type_is_still_refused():
    """0.0, False and a member of another enum equal (and hash like) labels seen before:
    the remembered-labels fast paths must not take them for those labels."""
    class A(enum.IntEnum):
        X = 0
        Y = 1

    class B(enum.IntEnum):
        X = 0
        Y = 1

    class S(MetricSet):
        c = Counter("lab_c", "c", labels={"a": A, "b": B})
        g = Gauge("lab_g", "g", labels={"a": A})
        h = Histogram("lab_h", "h", bounds=[1.0], labels={"k": ["p", "q"]})

    m = S()
    m.c.inc(0, 1)
    m.c.inc(A.X, B.Y)
    m.g.set(2.0, 1)
    m.h.observe(0.5, 1)
    before = m.snapshot()["metrics"]
    for call in (lambda: m.c.inc(0.0, 1), lambda: m.c.inc(0, True), lambda: m.c.inc(B.X, A.Y),
                 lambda: m.c.add(2, 0, 1.0), lambda: m.g.set(3.0, True),
                 lambda: m.g.add(1.0, 1.0), lambda: m.h.observe(0.5, 1.0),
                 lambda: m.h.observe(0.5, np.float64(1.0))):
        with pytest.raises(ValueError):
            call()
    assert m.snapshot()["metrics"] == before
    assert m.c.value(0, 1) == 2 and m.g.value(1) == 2.0 and m.h.read("q").count == 1


@pytest.mark.parametrize("body", [
    "m.record_interference(PrimingType.REPETITION, 0.5)",
    "m.record_interference(RejectionReason.TOO_SOON, 0.5)",
    "m.record_reconsolidation_rejection(PrimingType.SEMANTIC)",
    "m.record_priming(InterferenceType.FAN, 0.5)",
])
def test_a_member_of_another_enum_is_a_typing_error_in_kernels(body):
    ns = {"njit": njit, "PrimingType": PrimingType, "RejectionReason": RejectionReason,
          "InterferenceType": InterferenceType}
    exec(f"@njit\ndef f(m):\n    {body}\n", ns)
    m = CognitivePatternMetrics()
    with pytest.raises(KernelTypingError, match="takes .* members"):
        ns["f"](m)
    assert m.interference_detections_total() == 0 and m.invalid_records == 0


class Color(enum.IntEnum):
    RED = 0
    GREEN = 1


class Shop(MetricSet):
    sold = Counter("sold", labels={"color": Color})
    level = Gauge("level")
    price = Histogram("price", range=(0.01, 100))

    @kernel_method
    def sale(self, color: Color, price, quantity):
        self.sold.inc(color)
        self.price.observe(price)
        self.level.sub(quantity)


NOT_NUMBERS = ["3.5", b"3.5", "nan", None, True, [1.0], {}, 1j]


@pytest.mark.parametrize("value", NOT_NUMBERS, ids=repr)
def test_strings_and_other_non_numbers_are_refused_before_anything_is_recorded(value):
    m = Shop()
    before = m.snapshot()["metrics"]
    for call in (lambda: m.level.set(value), lambda: m.level.add(value),
                 lambda: m.price.observe(value), lambda: m.sale(Color.RED, value, 1),
                 lambda: m.sale(Color.RED, 1.0, value), lambda: m.sale(value, 1.0, 1)):
        with pytest.raises(ValueError):
            call()
    assert m.snapshot()["metrics"] == before
    c = CognitivePatternMetrics()
    with pytest.raises(ValueError, match="strength"):
        c.record_priming(PrimingType.SEMANTIC, value)
    assert c.priming_events_total() == 0
    tr = CognitiveTracer(TracingConfig(ring_buffer_size=64, max_threads=2))
    with pytest.raises(ValueError):
        tr.set_sample_rate("priming", value)
    with pytest.raises(ValueError):
        tr.trace_priming(0, value, 1, 2)
    assert tr.sample_rates()["priming"] == 1.0 and tr.drain().size == 0
    with pytest.raises(ValueError):
        TracingConfig(sample_rates={"priming": value})


def test_kernel_method_arguments_by_keyword_and_wrong_arity():
    m = Shop()
    m.sale(price=2.0, color=Color.GREEN, quantity=1)
    assert m.sold.value(Color.GREEN) == 1 and m.level.value() == -1.0
    with pytest.raises(TypeError, match="sale"):
        m.sale(Color.RED, 1.0)
    with pytest.raises(TypeError, match="sale"):
        m.sale(Color.RED, 1.0, 1, 2)
    assert m.sold.total == 1


def test_closed_objects_say_they_are_closed():
    tr = CognitiveTracer(TracingConfig(ring_buffer_size=64, max_threads=2))
    tr.close()
    for call in (tr.drain, tr.stats, tr.thresholds, tr.read, tr.release_thread,
                 lambda: tr.set_sample_rate("priming", 0.5), lambda: tr.disable("priming"),
                 lambda: tr.trace_priming(0, 0.5, 1, 2), lambda: list(tr.follow())):
        with pytest.raises(ValueError, match="CognitiveTracer is closed"):
            call()
    m = CognitivePatternMetrics()
    m.close()
    for call in (m.snapshot, m.reset, lambda: m.record_priming(0, 0.5),
                 lambda: m.priming_events.inc(0), lambda: m.priming_events_total()):
        with pytest.raises(ValueError, match="CognitivePatternMetrics is closed"):
            call()


@njit
def _record(m):
    m.record_priming(0, 0.5)


def test_passing_a_closed_object_to_a_kernel_raises():
    m = CognitivePatternMetrics()
    _record(m)
    m.close()
    with pytest.raises(ValueError, match="closed"):
        _record(m)


def test_tracing_config_paths_are_checked(tmp_path):
    with pytest.raises(ValueError, match="a file path"):
        TracingConfig(path="")
    with pytest.raises(ValueError, match="is a directory"):
        TracingConfig(path=str(tmp_path))
    with pytest.raises(ValueError, match="a file path"):
        TracingConfig(path=42)

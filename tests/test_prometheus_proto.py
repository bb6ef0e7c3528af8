"""The Prometheus protobuf exposition (native histograms) and coarser classic buckets."""

import gzip
import math
import urllib.request

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from prometheus_client.parser import text_string_to_metric_families

from engram_numba import Counter, Gauge, Histogram, MetricSet
from engram_numba.export.prometheus import exposition
from engram_numba.export.prometheus_proto import (CONTENT_TYPE, parse_protobuf,
                                                  protobuf_exposition)
from engram_numba.export.server import MetricsServer, negotiate
from engram_numba.metrics.buckets import ExponentialBuckets

from .test_exact_histograms import ref_index

PROTOBUF_ACCEPT = ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
                   "encoding=delimited;q=0.8,application/openmetrics-text;version=1.0.0;q=0.5,"
                   "text/plain;version=0.0.4;q=0.3,*/*;q=0.1")


class Mixed(MetricSet):
    requests = Counter("mixed_requests", "Requests", labels=[("path", ["a", "b"])])
    size = Counter("mixed_size", "Bytes read", unit="bytes")
    level = Gauge("mixed_level", "A level")
    latency = Histogram("mixed_latency", "Latency", labels=[("path", ["a", "b"])],
                        range=(2.0 ** -10, 2.0 ** 10), scale=3, negative=True)
    sizes = Histogram("mixed_sizes", "Explicit", bounds=[1.0, 10.0, 100.0])


def native_buckets(h, field):
    """{Prometheus bucket index: count} decoded from spans and deltas (independently of
    the encoder)."""
    from .test_exact_histograms import native_buckets as decode
    return decode(getattr(h, f"{field}_span"), list(getattr(h, f"{field}_delta")))


def expected_native(data, sign, schema):
    """{Prometheus bucket index: count} at ``schema``, computed from the values themselves
    (the reference index of tests/test_exact_histograms.py, from math.frexp)."""
    scheme = data["scheme"]
    out = {}
    for v in data["values"]:
        if not math.isfinite(v) or abs(v) <= scheme.zero_threshold or (v > 0) != (sign > 0):
            continue
        i = ref_index(abs(v), schema) + 1
        out[i] = out.get(i, 0) + 1
    return out


def by_name(families):
    return {mf.name: mf for mf in families}


def test_counters_gauges_and_explicit_histograms_match_the_text_format():
    m = Mixed()
    m.requests.add(3, "a")
    m.requests.add(5, "b")
    m.size.add(4096)
    m.level.set(-2.5)
    for v in (0.5, 5.0, 50.0, 500.0, 7.0):
        m.sizes.observe(v)
    fams = by_name(parse_protobuf(protobuf_exposition(m)))
    text = {f.name: f for f in text_string_to_metric_families(exposition(m))}
    assert fams["mixed_requests_total"].type == 0
    assert {mf.label[0].value: mf.counter.value for mf in fams["mixed_requests_total"].metric} \
        == {"a": 3.0, "b": 5.0}
    assert fams["mixed_size_bytes_total"].metric[0].counter.value == 4096
    assert fams["mixed_size_bytes_total"].unit == "bytes"
    assert fams["mixed_level"].type == 1 and fams["mixed_level"].metric[0].gauge.value == -2.5
    h = fams["mixed_sizes"].metric[0].histogram
    buckets = [(b.upper_bound, b.cumulative_count) for b in h.bucket]
    want = [(float(s.labels["le"]), s.value) for s in text["mixed_sizes"].samples
            if s.name == "mixed_sizes_bucket"]
    assert buckets == want == [(1.0, 1), (10.0, 3), (100.0, 4), (math.inf, 5)]
    assert (h.sample_count, h.sample_sum) == (5, 562.5)
    assert fams["mixed_invalid_records_total"].metric[0].counter.value == 0
    excluded = fams["mixed_latency_excluded_total"]
    assert len(excluded.metric) == 2 * 4
    # every text family is in the protobuf stream under its series name, with its help
    for name, fam in text.items():
        series = name + "_total" if fam.type == "counter" else name
        assert fams[series].help == fam.documentation


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.one_of(
    st.floats(min_value=-2.0 ** 12, max_value=2.0 ** 12, allow_nan=False),
    st.sampled_from([0.0, 2.0 ** -10, -(2.0 ** -10), 1.0, 2.0 ** 10, 3000.0, -3000.0])),
    max_size=60))
def test_native_histogram_buckets_hold_every_observation(values):
    m = Mixed()
    for v in values:
        m.latency.observe(v, "a")
    snap = m.collect()
    data = snap.metrics["latency"].get("a")
    h = by_name(parse_protobuf(protobuf_exposition(snap)))["mixed_latency"].metric[0].histogram
    scheme = Mixed.latency.scheme
    above = any(abs(v) > 2.0 ** scheme.max_exponent for v in values)
    assert h.schema == (0 if above else 3)      # an octave a bucket once values overflow
    assert h.zero_threshold == scheme.zero_threshold
    assert h.sample_count == data.count == len(values)
    assert h.sample_sum == pytest.approx(sum(values), abs=1e-6 * (1 + sum(map(abs, values))))
    assert h.zero_count == sum(1 for v in values if abs(v) <= scheme.zero_threshold)
    ref = {"scheme": scheme, "values": values}
    assert native_buckets(h, "positive") == expected_native(ref, +1, h.schema)
    assert native_buckets(h, "negative") == expected_native(ref, -1, h.schema)
    assert h.zero_count + sum(native_buckets(h, "positive").values()) \
        + sum(native_buckets(h, "negative").values()) == h.sample_count
    assert not h.bucket                         # native only: no classic buckets
    if not values:                              # the no-op span marks an empty native histogram
        assert [(s.offset, s.length) for s in h.positive_span] == [(0, 0)]


def test_native_bucket_numbering_is_prometheus_s():
    """Prometheus numbers (base**(i-1), base**i] as i: 1.0 is the upper bound of bucket 0,
    and at scale 3 the value 1.05 lies in bucket 1 = (1, 2**(1/8)]."""
    m = Mixed()
    m.latency.observe(1.0, "b")
    m.latency.observe(1.05, "b")
    h = by_name(parse_protobuf(protobuf_exposition(m)))["mixed_latency"].metric[1].histogram
    assert native_buckets(h, "positive") == {0: 1, 1: 1}


def test_truncated_or_corrupt_streams_are_refused():
    data = protobuf_exposition(Mixed())
    assert len(parse_protobuf(data)) == 8          # 5 declared, 2 excluded, invalid records
    with pytest.raises(ValueError, match="past the end"):
        parse_protobuf(data[:-1])
    with pytest.raises(ValueError, match="truncated"):
        parse_protobuf(b"\xff")
    with pytest.raises(ValueError, match="malformed"):
        parse_protobuf(b"\x02\xff\xff")


def test_classic_buckets_at_a_coarser_scale_equal_a_histogram_declared_there():
    class Fine(MetricSet):
        h = Histogram("h", "x", range=(1e-3, 1e3), scale=4, negative=True)

    class Coarse(MetricSet):
        h = Histogram("h", "x", range=(1e-3, 1e3), scale=1, negative=True)

    fine, coarse = Fine(), Coarse()
    rng = np.random.default_rng(3)
    for v in rng.lognormal(0, 3, 3000) * rng.choice([-1, 1], 3000):
        fine.h.observe(v)
        coarse.h.observe(v)
    got = exposition(fine, classic_scale=1).replace("fine_invalid", "coarse_invalid")
    assert got == exposition(coarse, classic_scale=1)
    # 20 octaves: scale 1 is the finest with at most 40 classic buckets, the default
    assert Fine.h.classic_scale == 1 and exposition(fine) == exposition(fine, classic_scale=1)
    assert exposition(fine, classic_scale=8) == exposition(fine, classic_scale=4)   # capped
    assert len(exposition(fine, classic_scale=0)) < len(exposition(fine, classic_scale=4)) / 8
    for bad in (-1, 9, 1.5, "1"):
        with pytest.raises(ValueError, match="scale"):
            exposition(fine, classic_scale=bad)
    with pytest.raises(ValueError, match="at most"):
        ExponentialBuckets(2, classic_scale=3)


@pytest.mark.parametrize("accept, want", [
    (PROTOBUF_ACCEPT, "protobuf"),
    ("application/openmetrics-text;version=1.0.0,text/plain;q=0.5", "openmetrics"),
    ("text/plain;version=0.0.4;q=0.5,application/vnd.google.protobuf;"
     "proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.4", "text"),
    ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily", "text"),
    ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
     "encoding=delimited;q=0", "text"),
    ("", "text"), ("*/*", "text"), ("image/png", "text"), (";;,q=x", "text"),
])
def test_content_negotiation(accept, want):
    assert negotiate(accept) == want


def test_every_answer_varies_with_accept_and_accept_encoding():
    """The body depends on Accept (format) and Accept-Encoding (gzip): a cache must key on
    both, gzipped or not."""
    m = Mixed()
    with MetricsServer(m) as server:
        for accept in (PROTOBUF_ACCEPT, "application/openmetrics-text;version=1.0.0", ""):
            for encoding in ("gzip", ""):
                req = urllib.request.Request(server.url, headers={"Accept": accept,
                                                                  "Accept-Encoding": encoding})
                with urllib.request.urlopen(req, timeout=10) as r:
                    vary = {v.strip().lower() for v in r.headers["Vary"].split(",")}
                    assert vary == {"accept", "accept-encoding"}, (accept, encoding)


def test_server_answers_protobuf_with_gzip_and_the_text_at_a_coarser_scale():
    m = Mixed()
    for v in (0.1, 1.0, 10.0):
        m.latency.observe(v, "a")
    with MetricsServer(m, classic_scale=0) as server:
        req = urllib.request.Request(server.url, headers={"Accept": PROTOBUF_ACCEPT,
                                                          "Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.headers["Content-Type"] == CONTENT_TYPE
            assert r.headers["Content-Encoding"] == "gzip"
            body = gzip.decompress(r.read())
        h = by_name(parse_protobuf(body))["mixed_latency"].metric[0].histogram
        assert sum(native_buckets(h, "positive").values()) == 3
        with urllib.request.urlopen(server.url, timeout=10) as r:
            text = r.read().decode()
        assert text == exposition(m, classic_scale=0)
    with pytest.raises(ValueError, match="scale"):
        MetricsServer(m, classic_scale=12)

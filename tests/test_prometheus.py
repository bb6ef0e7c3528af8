"""Prometheus text exposition, parsed back with prometheus_client's own parser."""

import math

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from engram_numba import Counter, MetricSet
from engram_numba.export.prometheus import exposition

from .test_metric_set import Shop, _data, record_everything


def _samples(text):
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_every_exported_value_equals_what_the_kernel_recorded():
    m = Shop()
    colors, prices = _data(300)
    record_everything(m, colors, prices)
    m.price.observe(float("nan"))
    snap = m.collect()
    s = _samples(exposition(m))
    for color, n in m.sold.values().items():
        assert s[("items_sold_total", (("color", color),))] == n
    assert s[("visits_total", ())] == m.visits.value()
    assert s[("stock_level", (("aisle", "a"),))] == 42.5
    for attr in ("price", "delta", "wait"):
        h = snap[attr].get()
        name = snap[attr].spec.name
        assert s[(f"{name}_count", ())] == h.count
        assert s[(f"{name}_sum", ())] == h.sum
        for le, cum in h.cumulative():
            key = "+Inf" if le == math.inf else repr(float(le))
            found = [v for (n, labels), v in s.items()
                     if n == f"{name}_bucket" and float(dict(labels)["le"]) == le]
            assert found == [cum], (name, key)
        assert s[(f"{name}_bucket", (("le", "+Inf"),))] == h.count
    assert s[("price_euros_excluded_total", (("reason", "nan"),))] == 1
    assert s[("shop_invalid_records_total", ())] == 0


def test_buckets_are_cumulative_and_boundaries_do_not_depend_on_data():
    m = Shop()
    empty = [k for k in _samples(exposition(m)) if k[0] == "price_euros_bucket"]
    record_everything(m, *_data(100))
    full = _samples(exposition(m))
    assert [k for k in full if k[0] == "price_euros_bucket"] == empty
    counts = [full[k] for k in empty]
    assert counts == sorted(counts)


def test_label_values_and_help_are_escaped():
    class Odd(MetricSet):
        c = Counter("odd", 'Help with \\ backslash\nand newline',
                    labels={"kind": ['quote"d', "back\\slash", "new\nline"]})
    m = Odd()
    for k in range(3):
        m.c.add(k + 1, k)
    text = exposition(m)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["odd"].documentation == "Help with \\ backslash\nand newline"
    got = {s.labels["kind"]: s.value for s in families["odd"].samples}
    assert got == {'quote"d': 1, "back\\slash": 2, "new\nline": 3}


def test_many_sets_in_one_exposition():
    import pytest

    class Other(MetricSet, name="other"):
        jobs = Counter("jobs_total", "Jobs")

    a, b = Shop(), Other()
    a.visits.inc()
    b.jobs.add(2)
    s = _samples(exposition(a, b.collect()))
    assert s[("visits_total", ())] == 1 and s[("jobs_total", ())] == 2
    assert np.isclose(_samples(exposition(a))[("visits_total", ())], 1)
    with pytest.raises(ValueError, match="exported twice"):     # was two TYPE lines
        exposition(a, Shop.disabled().collect())


def test_text_and_the_prometheus_client_collector_give_the_same_samples():
    """Both are rendered from the snapshot's families: one path, the same series."""
    from prometheus_client import CollectorRegistry, generate_latest

    from engram_numba.export.prometheus import MetricSetCollector
    m = Shop()
    record_everything(m, *_data(200))
    m.price.observe(float("nan"))
    snap = m.collect()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricSetCollector(snap))
    ours = _samples(exposition(snap))
    theirs = _samples(generate_latest(registry).decode())
    theirs = {k: v for k, v in theirs.items() if not k[0].endswith("_created")}
    # prometheus_client leaves out _sum and _count of a histogram with negative
    # buckets (the OpenMetrics rule); the text format keeps them
    assert {k for k in set(ours) - set(theirs)} == {("price_delta_sum", ()),
                                                      ("price_delta_count", ())}
    assert all(ours[k] == v for k, v in theirs.items())
    assert set(theirs) <= set(ours)
    assert ("price_euros_excluded_total", (("reason", "nan"),)) in ours
    assert len(ours) > 50


def test_exporters_read_the_snapshot_not_the_live_set():
    from engram_numba.export.otlp import metrics_request
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
    m = Shop()
    m.visits.add(5)
    snap = m.collect()
    m.visits.add(7)                         # after the snapshot: no exporter may see it
    assert _samples(exposition(snap))[("visits_total", ())] == 5
    req = metrics_service_pb2.ExportMetricsServiceRequest.FromString(metrics_request(snap))
    metrics = {x.name: x for x in req.resource_metrics[0].scope_metrics[0].metrics}
    assert metrics["visits"].sum.data_points[0].as_int == 5       # OTLP: no _total
    assert all(p.start_time_unix_nano == snap.start_ns
               for p in metrics["visits"].sum.data_points)
    fams = {f.name: f for f in snap.families()}
    assert fams["visits_total"].points == (((), 5),)
    assert fams["shop_invalid_records_total"].kind is fams["visits_total"].kind


def test_units_name_the_metric_and_reach_openmetrics_and_otlp(tmp_path):
    import pytest
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

    from engram_numba import Gauge, Histogram, attach_metrics
    from engram_numba.export.otlp import metrics_request
    from engram_numba.export.prometheus import openmetrics_exposition

    class Io(MetricSet, name="io"):
        sent = Counter("io_sent", "Bytes sent", unit="bytes")
        latency = Histogram("io_latency", "Request latency", unit="seconds", range=(1e-6, 10))
        level = Gauge("io_fill_ratio", "Buffer fill", unit="ratio")

    assert (Io.sent.name, Io.latency.name, Io.level.name) == \
        ("io_sent_bytes_total", "io_latency_seconds", "io_fill_ratio")
    assert Counter("x_bytes_total", unit="bytes").name == "x_bytes_total"    # not doubled
    for bad in ("Seconds", "two words", "_s", 3):
        with pytest.raises(ValueError, match="unit"):
            Counter("x", unit=bad)
    m = Io.create(tmp_path / "io.metrics")
    m.sent.add(100)
    m.latency.observe(0.25)
    m.level.set(0.5)
    text = openmetrics_exposition(m)
    assert "# UNIT io_sent_bytes bytes" in text
    assert "# UNIT io_latency_seconds seconds" in text
    assert "# UNIT io_fill_ratio ratio" in text
    req = metrics_service_pb2.ExportMetricsServiceRequest.FromString(metrics_request(m))
    units = {x.name: x.unit for x in req.resource_metrics[0].scope_metrics[0].metrics}
    # OTLP names carry no Prometheus suffixes: the unit is metadata there
    assert units["io_sent"] == "By" and units["io_latency"] == "s"
    assert units["io_fill"] == "1" and units["io_invalid_records"] == ""
    # a file's layout keeps the units: a reader without the class sees them too
    fams = {f.name: f for f in attach_metrics(tmp_path / "io.metrics").collect().families()}
    assert fams["io_latency_seconds"].unit == "seconds" and fams["io_sent_bytes_total"].unit == "bytes"


def test_instances_told_apart_by_const_labels_merge_into_one_family_each(tmp_path):
    import pytest
    from prometheus_client import CollectorRegistry, generate_latest
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

    from engram_numba.export.otlp import metrics_request
    from engram_numba.export.prometheus import MetricSetCollector
    a = Shop(const_labels={"worker": "1"})
    b = Shop.create(tmp_path / "b.metrics", const_labels={"worker": 2})
    a.visits.add(3)
    b.visits.add(4)
    text = exposition(a, b)
    assert text.count("# TYPE visits_total counter") == 1
    assert text.count("# TYPE shop_invalid_records_total counter") == 1
    s = _samples(text)
    assert s[("visits_total", (("worker", "1"),))] == 3
    assert s[("visits_total", (("worker", "2"),))] == 4
    sold = [k for k in s if k[0] == "items_sold_total"]
    assert {dict(k[1])["worker"] for k in sold} == {"1", "2"} and all(len(k[1]) == 2 for k in sold)
    # the prometheus_client collector accepts them (it refuses duplicate series)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricSetCollector(a, b))
    assert _samples(generate_latest(registry).decode())[("visits_total", (("worker", "2"),))] == 4
    req = metrics_service_pb2.ExportMetricsServiceRequest.FromString(metrics_request(a, b))
    visits = [x for x in req.resource_metrics[0].scope_metrics[0].metrics if x.name == "visits"]
    assert len(visits) == 1 and sorted(p.as_int for p in visits[0].sum.data_points) == [3, 4]
    # a reader attaching the file gives its own labels
    reader = Shop.attach(tmp_path / "b.metrics", const_labels={"worker": "2b"})
    assert _samples(exposition(reader))[("visits_total", (("worker", "2b"),))] == 4
    # true duplicates and bad labels are refused
    with pytest.raises(ValueError, match="exported twice.*const_labels"):
        exposition(Shop(), Shop())
    with pytest.raises(ValueError, match="exported twice"):
        exposition(a, Shop(const_labels={"worker": "1"}))
    with pytest.raises(ValueError, match="already a label"):
        Shop(const_labels={"color": "x"})
    for bad in ({"le": "1"}, {"1x": "a"}, {"w": 1.5}, {"w": None}, "worker=1"):
        with pytest.raises(ValueError, match="const_labels"):
            Shop(const_labels=bad)


def test_metrics_commands_take_constant_labels(tmp_path):
    from .test_cli import run_cli
    m = Shop.create(tmp_path / "s.metrics")
    m.visits.add(2)
    r = run_cli("metrics", "show", "--attach", str(tmp_path / "s.metrics"), "--label", "worker=7",
                "--label", "zone=eu")
    assert r.returncode == 0, r.stderr
    assert _samples(r.stdout)[("visits_total", (("worker", "7"), ("zone", "eu")))] == 2
    r = run_cli("metrics", "show", "--attach", str(tmp_path / "s.metrics"), "--label", "9x=1")
    assert r.returncode == 2 and "invalid label name" in r.stderr
    r = run_cli("metrics", "serve", "--attach", str(tmp_path / "s.metrics"), "--attach",
                str(tmp_path / "s.metrics"), "--port", "0")
    assert r.returncode == 1 and "exported twice" in r.stderr and "Traceback" not in r.stderr


def test_snapshots_as_tidy_dataframes():
    import pandas as pd
    import pytest
    m = Shop(const_labels={"worker": "1"})
    colors, prices = _data(300)
    record_everything(m, colors, prices)
    snap = m.collect()
    df = snap.to_dataframe()
    assert list(df.columns[:3]) == ["metric", "kind", "worker"] and (df["worker"] == "1").all()
    sold = df[df.metric == "items_sold_total"].set_index("color")["value"]
    assert sold.to_dict() == m.sold.values()
    hist = df[df.metric == "price_euros"].iloc[0]
    h = m.price.read()
    assert hist["kind"] == "histogram" and hist["value"] == h.count
    assert hist["p50"] == h.quantile(0.5) and hist["sum"] == h.sum
    assert df[df.metric == "shop_invalid_records_total"]["value"].tolist() == [0]
    buckets = snap.to_dataframe(histograms="buckets")
    rows = buckets[buckets.metric == "price_euros"]
    assert rows["value"].sum() == h.count and (rows["lower"] <= rows["upper"]).all()
    assert list(snap.to_dataframe(quantiles=(0.25, 0.999)).columns[-2:]) == ["p25", "p99_9"]
    with pytest.raises(ValueError, match="histograms"):
        snap.to_dataframe(histograms="cdf")
    with pytest.raises(ValueError, match="quantiles"):
        snap.to_dataframe(quantiles=(1.5,))
    assert isinstance(m.to_dataframe(), pd.DataFrame)

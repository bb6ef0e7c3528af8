"""Prometheus protobuf exposition, with exponential histograms as native histograms.

The format Prometheus asks for first when native histograms are enabled
(``--enable-feature=native-histograms``, or ``scrape_protocols`` naming
``PrometheusProto``): a stream of ``io.prometheus.client.MetricFamily``
messages, each preceded by its length as a varint (content type
:data:`CONTENT_TYPE`).  It is rendered from the same snapshot families as the
text format (:mod:`..metrics.families`); only the encoding differs.

* counters -> ``COUNTER`` families, named with ``_total`` as in the text format
  (in this format the family name is the series name), gauges -> ``GAUGE``;
* exponential histograms -> ``HISTOGRAM`` with the native-histogram fields only:
  ``schema`` is the histogram's scale (the schemes are identical), the zero
  bucket is ``[-2**min_exponent, 2**min_exponent]``, and the buckets are sent
  as spans and deltas.  Prometheus numbers bucket ``(base**(i-1), base**i]`` as
  ``i``, OpenTelemetry (and :mod:`..metrics.buckets`) as ``i - 1``.  Once values
  above the range were recorded, the histogram goes out at a coarser schema
  that holds them exactly (0: a bucket per octave, or -4: 16 octaves a bucket,
  see :meth:`~..metrics.buckets.ExponentialBuckets.sparse`).  A histogram with
  no observation gets the no-op span ``(0, 0)``, which marks it as native.  No
  classic ``le`` buckets are sent: a Prometheus that does not store native
  histograms should scrape the text format;
* explicit histograms -> classic buckets (``cumulative_count``, ``upper_bound``).

The message classes are made by the ``protobuf`` library from a descriptor
built here field for field after Prometheus' ``client_model`` ``metrics.proto``
(proto2, the fields used here only), so no generated code ties the package to a
protobuf runtime version.  Needs ``protobuf`` (``pip install
'engram-numba[prometheus]'``).
"""

from __future__ import annotations

from functools import lru_cache

from ..metrics.buckets import ExponentialBuckets
from ..metrics.families import COUNTER, GAUGE, families_of
from ._protowire import read_varint, varint

__all__ = ["CONTENT_TYPE", "protobuf_exposition", "render_protobuf", "parse_protobuf"]

CONTENT_TYPE = ("application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; "
                "encoding=delimited")
PROTO_NAME = "io.prometheus.client.MetricFamily"

_COUNTER_TYPE, _GAUGE_TYPE, _HISTOGRAM_TYPE = 0, 1, 4

# (message, [(field, number, type, label, message type)]) after client_model's metrics.proto
_O, _R = "optional", "repeated"
_MESSAGES = [
    ("LabelPair", [("name", 1, "string", _O, None), ("value", 2, "string", _O, None)]),
    ("Gauge", [("value", 1, "double", _O, None)]),
    ("Counter", [("value", 1, "double", _O, None)]),
    ("Bucket", [("cumulative_count", 1, "uint64", _O, None),
                ("upper_bound", 2, "double", _O, None)]),
    ("BucketSpan", [("offset", 1, "sint32", _O, None), ("length", 2, "uint32", _O, None)]),
    ("Histogram", [("sample_count", 1, "uint64", _O, None),
                   ("sample_sum", 2, "double", _O, None),
                   ("bucket", 3, "message", _R, "Bucket"),
                   ("schema", 5, "sint32", _O, None),
                   ("zero_threshold", 6, "double", _O, None),
                   ("zero_count", 7, "uint64", _O, None),
                   ("negative_span", 9, "message", _R, "BucketSpan"),
                   ("negative_delta", 10, "sint64", _R, None),
                   ("positive_span", 12, "message", _R, "BucketSpan"),
                   ("positive_delta", 13, "sint64", _R, None)]),
    ("Metric", [("label", 1, "message", _R, "LabelPair"),
                ("gauge", 2, "message", _O, "Gauge"),
                ("counter", 3, "message", _O, "Counter"),
                ("timestamp_ms", 6, "int64", _O, None),
                ("histogram", 7, "message", _O, "Histogram")]),
    ("MetricFamily", [("name", 1, "string", _O, None), ("help", 2, "string", _O, None),
                      ("type", 3, "enum", _O, "MetricType"),
                      ("metric", 4, "message", _R, "Metric"),
                      ("unit", 5, "string", _O, None)]),
]
_ENUM = ("MetricType", [("COUNTER", 0), ("GAUGE", 1), ("SUMMARY", 2), ("UNTYPED", 3),
                        ("HISTOGRAM", 4), ("GAUGE_HISTOGRAM", 5)])


@lru_cache(maxsize=None)
def messages() -> dict:
    """The message classes by name (``MetricFamily``, ``Metric``, ``Histogram``, ...)."""
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError as exc:
        raise ImportError("the protobuf exposition needs protobuf: "
                          "pip install 'engram-numba[prometheus]'") from exc
    F = descriptor_pb2.FieldDescriptorProto
    types = {"string": F.TYPE_STRING, "double": F.TYPE_DOUBLE, "uint64": F.TYPE_UINT64,
             "uint32": F.TYPE_UINT32, "sint32": F.TYPE_SINT32, "sint64": F.TYPE_SINT64,
             "int64": F.TYPE_INT64, "message": F.TYPE_MESSAGE, "enum": F.TYPE_ENUM}
    labels = {_O: F.LABEL_OPTIONAL, _R: F.LABEL_REPEATED}
    package = "io.prometheus.client"
    proto = descriptor_pb2.FileDescriptorProto(name="engram_numba/io_prometheus_client.proto",
                                               package=package, syntax="proto2")
    enum = proto.enum_type.add(name=_ENUM[0])
    for name, number in _ENUM[1]:
        enum.value.add(name=name, number=number)
    for message, fields in _MESSAGES:
        m = proto.message_type.add(name=message)
        for name, number, kind, label, ref in fields:
            f = m.field.add(name=name, number=number, type=types[kind], label=labels[label])
            if ref is not None:
                f.type_name = f".{package}.{ref}"
            if kind in ("sint64",) and label == _R:
                f.options.packed = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
            for name, _ in _MESSAGES}


def _spans(offset: int, counts: list, span, deltas) -> None:
    """Buckets ``counts`` from absolute (OpenTelemetry) index ``offset`` as Prometheus
    spans and deltas; a gap of up to two empty buckets is sent as zeros inside a span
    (cheaper than a new span), a longer one starts a new span."""
    previous, end, i, n = 0, None, 0, len(counts)
    while i < n:
        if counts[i] == 0:
            i += 1
            continue
        j = i
        while j < n:
            if counts[j]:
                j += 1
                continue
            k = j
            while k < n and counts[k] == 0:
                k += 1
            if k == n or k - j > 2:
                break
            j = k
        index = offset + i + 1                   # Prometheus' number of bucket i
        span.add(offset=index if end is None else index - end, length=j - i)
        for c in counts[i:j]:
            deltas.append(c - previous)
            previous = c
        end = index + (j - i)
        i = j


def _histogram(M, h):
    scheme = h.spec.scheme
    out = M["Histogram"](sample_count=h.count, sample_sum=h.sum)
    if not isinstance(scheme, ExponentialBuckets):
        for le, n in h.cumulative():
            out.bucket.add(cumulative_count=n, upper_bound=le)
        return out
    schema, (pos_offset, pos), (neg_offset, neg) = scheme.sparse(h)
    out.schema = schema
    out.zero_threshold = scheme.zero_threshold
    out.zero_count = h.zero_count
    _spans(pos_offset, pos, out.positive_span, out.positive_delta)
    _spans(neg_offset, neg, out.negative_span, out.negative_delta)
    if not pos and not neg:
        out.positive_span.add(offset=0, length=0)
    return out


def render_protobuf(fams) -> bytes:
    """Families (see :mod:`..metrics.families`) as length-delimited ``MetricFamily`` messages."""
    M = messages()
    chunks = []
    for fam in fams:
        kind = _COUNTER_TYPE if fam.kind is COUNTER else \
            _GAUGE_TYPE if fam.kind is GAUGE else _HISTOGRAM_TYPE
        mf = M["MetricFamily"](name=fam.name, help=fam.help, type=kind)
        if fam.unit:
            mf.unit = fam.unit
        for labels, value in fam.points:
            metric = mf.metric.add()
            for k, v in zip(fam.label_names, labels):
                metric.label.add(name=k, value=v)
            if fam.kind is COUNTER:
                metric.counter.value = float(value)
            elif fam.kind is GAUGE:
                metric.gauge.value = float(value)
            else:
                metric.histogram.CopyFrom(_histogram(M, value))
        body = mf.SerializeToString()
        chunks.append(varint(len(body)))
        chunks.append(body)
    return b"".join(chunks)


def protobuf_exposition(*metric_sets) -> bytes:
    """The protobuf exposition of one or more metric sets (or their snapshots); the same
    families as :func:`~.prometheus.exposition`."""
    if not metric_sets:
        return b""
    fams, _ = families_of(metric_sets)
    return render_protobuf(fams)


def parse_protobuf(data: bytes) -> list:
    """The ``MetricFamily`` messages of a length-delimited stream (for tests and tools);
    raises ``ValueError`` for a truncated or malformed stream."""
    M = messages()
    out, pos = [], 0
    while pos < len(data):
        size, pos = read_varint(data, pos, "length prefix")
        if pos + size > len(data):
            raise ValueError(f"message of {size} bytes runs past the end of the stream")
        mf = M["MetricFamily"]()
        try:
            mf.ParseFromString(data[pos:pos + size])
        except Exception as exc:
            raise ValueError(f"malformed MetricFamily at byte {pos}: {exc}") from None
        out.append(mf)
        pos += size
    return out

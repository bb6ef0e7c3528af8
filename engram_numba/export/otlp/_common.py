"""What every OTLP signal shares: the proto classes, attributes, the OpenTelemetry
environment, the resource and scope envelope, and the exporter base that reads its
options from the environment and sends through :mod:`._transport`."""

from __future__ import annotations

import math
import os

from ..._version import __version__
from ._transport import Transport, partial_success

def proto():
    try:
        from opentelemetry.proto.common.v1 import common_pb2
        from opentelemetry.proto.metrics.v1 import metrics_pb2
        from opentelemetry.proto.resource.v1 import resource_pb2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("OTLP export needs: pip install 'engram-numba[otlp]'") from exc
    return common_pb2, metrics_pb2, resource_pb2


def attributes(common_pb2, items):
    out = []
    for key, value in items.items():
        if isinstance(value, bool):
            v = common_pb2.AnyValue(bool_value=value)
        elif isinstance(value, int):
            v = common_pb2.AnyValue(int_value=value)
        elif isinstance(value, float):
            v = common_pb2.AnyValue(double_value=value)
        else:
            v = common_pb2.AnyValue(string_value=str(value))
        out.append(common_pb2.KeyValue(key=key, value=v))
    return out


# -- the OpenTelemetry environment --------------------------------------------------------
# The variables of the OTLP exporter specification; an explicit argument wins.

_instance = {"id": None, "pid": None}


def instance_id() -> str:
    """``service.instance.id`` of this process: a random UUID, new in a forked child."""
    if _instance["pid"] != os.getpid():
        import uuid
        _instance["id"], _instance["pid"] = str(uuid.uuid4()), os.getpid()
    return _instance["id"]


def _env(name: str, kind: str):
    """``OTEL_EXPORTER_OTLP_<KIND>_<NAME>``, else ``OTEL_EXPORTER_OTLP_<NAME>`` (None if unset)."""
    for var in (f"OTEL_EXPORTER_OTLP_{kind.upper()}_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
        value = os.environ.get(var, "").strip()
        if value:
            return var, value
    return None, None


def _key_values(text: str, var: str) -> dict:
    """``k=v,k2=v2`` with percent-encoded values (the W3C baggage form the spec uses)."""
    from urllib.parse import unquote
    out = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{var}: expected key=value pairs, got {item!r}")
        out[unquote(key.strip())] = unquote(value.strip())
    return out


def resource_from_environment() -> dict:
    """``OTEL_RESOURCE_ATTRIBUTES`` with ``OTEL_SERVICE_NAME`` as ``service.name``."""
    attrs = _key_values(os.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""), "OTEL_RESOURCE_ATTRIBUTES")
    name = os.environ.get("OTEL_SERVICE_NAME", "").strip()
    if name:
        attrs["service.name"] = name
    return attrs


def envelope(service_name, resource_attributes):
    common_pb2, _, resource_pb2 = proto()
    attrs = {"service.name": service_name, "service.instance.id": instance_id(),
             "telemetry.sdk.name": "engram-numba",
             "telemetry.sdk.language": "python", "telemetry.sdk.version": __version__,
             **(resource_attributes or {})}
    resource = resource_pb2.Resource(attributes=attributes(common_pb2, attrs))
    scope = common_pb2.InstrumentationScope(name="engram_numba", version=__version__)
    return resource, scope


class OtlpExporter:
    kind = ""

    def __init__(self, endpoint: str | None = None, *, protocol: str | None = None,
                 headers: dict | None = None, compression: str | None = "default",
                 timeout: float | None = None, insecure: bool | None = None,
                 ca_file: str | None = None, service_name: str | None = None,
                 resource_attributes: dict | None = None):
        """Every option left out is taken from the OpenTelemetry environment, as the OTLP
        exporter specification names it (per signal first, e.g.
        ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT``, then ``OTEL_EXPORTER_OTLP_ENDPOINT``):
        ``_ENDPOINT``, ``_PROTOCOL`` (``grpc`` or ``http/protobuf``), ``_HEADERS``
        (``k=v,k=v``; explicit headers win per key), ``_TIMEOUT`` (ms), ``_COMPRESSION``
        (``gzip``/``none``), ``_INSECURE`` and ``_CERTIFICATE``; ``OTEL_SERVICE_NAME`` and
        ``OTEL_RESOURCE_ATTRIBUTES`` fill the resource under ``resource_attributes``.
        Defaults otherwise: grpc, gzip, 10 s."""
        proto()
        kind = self.kind
        full_url = False
        if endpoint is None:
            var, endpoint = _env("ENDPOINT", kind)
            if endpoint is None:
                raise ValueError(f"{type(self).__name__}: no endpoint: pass one, or set "
                                 f"OTEL_EXPORTER_OTLP_ENDPOINT")
            full_url = var == f"OTEL_EXPORTER_OTLP_{kind.upper()}_ENDPOINT"
        if protocol is None:
            var, value = _env("PROTOCOL", kind)
            protocol = {"grpc": "grpc", "http/protobuf": "http", None: "grpc"}.get(value)
            if protocol is None:
                raise ValueError(f"{var}={value!r}: supported are grpc and http/protobuf")
        var, value = _env("HEADERS", kind)
        headers = {**(_key_values(value, var) if value else {}), **(headers or {})}
        if timeout is None:
            var, value = _env("TIMEOUT", kind)
            try:
                timeout = float(value) / 1000.0 if value else 10.0
            except ValueError:
                timeout = None
            if timeout is None or not math.isfinite(timeout) or timeout <= 0:
                raise ValueError(f"{var}={value!r}: expected a positive number of "
                                 f"milliseconds") from None
        if compression == "default":
            var, value = _env("COMPRESSION", kind)
            if value not in (None, "gzip", "none"):
                raise ValueError(f"{var}={value!r}: supported are gzip and none")
            compression = None if value == "none" else "gzip"
        if insecure is None:
            insecure = (_env("INSECURE", kind)[1] or "").lower() == "true"
        if ca_file is None:
            ca_file = _env("CERTIFICATE", kind)[1]
        env = resource_from_environment()
        self.endpoint = endpoint
        self.service_name = service_name or env.pop("service.name", None)
        env.pop("service.name", None)
        self.resource_attributes = {**env, **(resource_attributes or {})} or None
        self.transport = Transport(endpoint, protocol, headers, compression, timeout, insecure,
                                    ca_file, full_url=full_url)

    def _send(self, body: bytes, deadline: float | None = None) -> None:
        partial_success(self.kind, self.transport.send(self.kind, body, deadline))

    def shutdown(self) -> None:
        self.transport.close()

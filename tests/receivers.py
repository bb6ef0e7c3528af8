"""Protocol peers for exporter tests: OTLP over gRPC and HTTP, and Loki's push API.

Each records what it received (decoded with the official classes) and answers
according to a script of responses, so tests can make it fail on purpose.
"""

import gzip
import json
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from .processes import free_port


class Script:
    """Responses to give, in order; then the default forever."""

    def __init__(self, default, responses=()):
        self.default = default
        self.responses = list(responses)
        self.lock = threading.Lock()

    def next(self):
        with self.lock:
            return self.responses.pop(0) if self.responses else self.default


class OtlpGrpcReceiver:
    """OTLP/gRPC collector built from the official service stubs."""

    def __init__(self, port=None, script=()):
        self.port = port or free_port()
        self.logs, self.metrics, self.traces, self.metadata = [], [], [], []
        self.script = Script(None, script)      # None = OK, "hang", else a grpc.StatusCode
        self.released = threading.Event()
        receiver = self

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request, context):
                return receiver._answer(request, context, receiver.logs,
                                        logs_service_pb2.ExportLogsServiceResponse())

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):
                return receiver._answer(request, context, receiver.metrics,
                                        metrics_service_pb2.ExportMetricsServiceResponse())

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):
                return receiver._answer(request, context, receiver.traces,
                                        trace_service_pb2.ExportTraceServiceResponse())

        self.server = grpc.server(futures.ThreadPoolExecutor(4))
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), self.server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self.server)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self.server)
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")

    def _answer(self, request, context, store, response):
        self.metadata.append(dict(context.invocation_metadata()))
        code = self.script.next()
        if code == "hang":
            self.released.wait(120)
            code = None
        if code is not None:
            context.abort(code, f"scripted {code.name}")
        store.append(request)
        return response

    @property
    def endpoint(self):
        return f"127.0.0.1:{self.port}"

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.released.set()
        self.server.stop(0)


class HttpReceiver:
    """Loopback HTTP server for OTLP/HTTP (/v1/logs, /v1/metrics) and Loki (/loki/api/v1/push).

    With ``tls=(certfile, keyfile)`` it serves HTTPS.
    """

    def __init__(self, port=None, script=(), tls=None):
        self.port = port or free_port()
        self.requests = []                     # (path, headers, body after gzip)
        self.script = Script((None, {}), script)  # (status or None, extra headers)
        self.problems = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                status, extra = receiver.script.next()
                receiver.requests.append((self.path, self.headers, body))   # case-insensitive
                if status is None:
                    status = receiver._check(self.path, self.headers, body)
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                message = b"" if status < 300 else b"scripted failure: " + str(status).encode()
                self.send_header("Content-Length", str(len(message)))
                self.end_headers()
                self.wfile.write(message)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.scheme = "http"
        if tls:
            import ssl
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"

    def _check(self, path, headers, body):
        if path in ("/v1/logs", "/v1/metrics", "/v1/traces"):
            if headers.get("Content-Type") != "application/x-protobuf":
                self.problems.append(f"content type {headers.get('Content-Type')}")
                return 415
            return 200
        if path == "/loki/api/v1/push":
            problem = loki_problem(headers, body)
            if problem:
                self.problems.append(problem)
                return 400
            return 204
        self.problems.append(f"unexpected path {path}")
        return 404

    @property
    def url(self):
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def logs(self):
        return [logs_service_pb2.ExportLogsServiceRequest.FromString(b)
                for p, _, b in self.requests if p == "/v1/logs"]

    def metrics(self):
        return [metrics_service_pb2.ExportMetricsServiceRequest.FromString(b)
                for p, _, b in self.requests if p == "/v1/metrics"]

    def traces(self):
        return [trace_service_pb2.ExportTraceServiceRequest.FromString(b)
                for p, _, b in self.requests if p == "/v1/traces"]

    def loki(self):
        return [json.loads(b) for p, _, b in self.requests if p == "/loki/api/v1/push"]

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def loki_problem(headers, body):
    """What is wrong with a push request against Loki's documented JSON format, or None."""
    if not headers.get("Content-Type", "").startswith("application/json"):
        return f"content type {headers.get('Content-Type')}"
    try:
        doc = json.loads(body)
    except ValueError as exc:
        return f"not JSON: {exc}"
    if set(doc) != {"streams"} or not isinstance(doc["streams"], list):
        return "top level must be {'streams': [...]}"
    for s in doc["streams"]:
        if set(s) != {"stream", "values"}:
            return f"stream keys {sorted(s)}"
        if not s["stream"] or not all(isinstance(k, str) and isinstance(v, str)
                                      for k, v in s["stream"].items()):
            return f"labels must be a non-empty map of strings: {s['stream']}"
        previous = -1
        for value in s["values"]:
            if not (isinstance(value, list) and len(value) == 2 and all(isinstance(x, str) for x in value)):
                return f"values must be [\"<unix ns>\", \"<line>\"]: {value!r}"
            ns = int(value[0])
            if ns < previous:
                return "values not sorted by time within a stream"
            previous = ns
    return None


class _LoopbackTcp:
    """A loopback TCP listener that hands each connection to ``_accepted(conn)`` on a
    thread of its own, until the ``with`` block ends."""

    def __init__(self, backlog=16):
        import socket
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _serve(self):
        import socket
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self._accepted(conn)

    def __enter__(self):
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.sock.close()


class MisbehavingServer(_LoopbackTcp):
    """A loopback TCP server that reads a request and answers badly.

    ``mode``: ``"trickle"`` sends a valid response one byte every ``interval``
    seconds; ``"garbage"`` sends a line that is not an HTTP status line;
    ``"silent"`` never answers; ``"close"`` closes the connection at once.
    """

    def __init__(self, mode, interval=0.5):
        super().__init__()
        self.mode, self.interval = mode, interval
        self.connections = 0

    def _accepted(self, conn):
        self.connections += 1
        threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        try:
            conn.settimeout(1.0)
            try:
                conn.recv(1 << 20)
            except OSError:
                pass
            if self.mode == "garbage":
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
            elif self.mode == "trickle":
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000:
                    if self.stop.wait(self.interval):
                        return
                    conn.sendall(bytes([byte]))
            elif self.mode == "silent":
                self.stop.wait(120)
        except OSError:
            pass
        finally:
            conn.close()


class RawPeer(_LoopbackTcp):
    """A loopback TCP peer that reads each HTTP request in full and answers it with a
    script of raw actions: ``("send", bytes)``, ``("sleep", seconds)``, ``("close",)``
    or ``("reset",)`` (an RST).  ``answers`` is a callable returning the script of the
    next connection (or a list, used in turn, the last one forever)."""

    def __init__(self, answers):
        super().__init__(backlog=64)
        if not callable(answers):
            scripts = list(answers)
            answers = lambda: scripts.pop(0) if len(scripts) > 1 else scripts[0]  # noqa: E731
        self.answers = answers
        self.requests = []

    def _accepted(self, conn):
        threading.Thread(target=self._answer, args=(conn, self.answers()), daemon=True).start()

    def _read_request(self, conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(1 << 16)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(1 << 16)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body

    def _answer(self, conn, script):
        import socket
        import struct
        try:
            conn.settimeout(5.0)
            self.requests.append(self._read_request(conn))
            for action in script:
                if action[0] == "send":
                    conn.sendall(action[1])
                elif action[0] == "sleep":
                    if self.stop.wait(action[1]):
                        return
                elif action[0] == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
                    return
                elif action[0] == "close":
                    return
            try:
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        except OSError:
            pass
        finally:
            conn.close()

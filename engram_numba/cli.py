"""``engram-numba`` command line (also ``python -m engram_numba``).

Exit codes: 0 success, 1 runtime failure (a missing or refused file, an
unreachable endpoint), 2 usage error (a bad option or value).  Errors are one
line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

# secrets for exporters, read from the environment (never shown in the process list)
PASSWORD_ENV = "ENGRAM_NUMBA_PASSWORD"
HEADERS_ENV = "ENGRAM_NUMBA_HEADERS"


class UsageError(Exception):
    """A combination of options that cannot work (exit code 2)."""


def _number(kind, low=None, high=None, low_open=False, what=""):
    """An argparse type: a finite number of ``kind`` within bounds."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        ok = value is not None and not (isinstance(value, float) and not math.isfinite(value))
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value <= high
        if not ok:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what
    return parse


port_number = _number(int, 0, 65535, what="a port number (0-65535)")
positive_int = _number(int, 1, what="a positive integer")
positive_seconds = _number(float, 0, low_open=True, what="a positive, finite number of seconds")
rate = _number(float, 0.0, 1.0, what="a sampling rate in [0, 1]")


DEFAULT_ROUNDS = 400


def _cmd_demo(args) -> int:
    from .engram.demo import run_demo
    rounds = args.rounds
    if rounds is None:          # default: 400, or one trial per round for fewer trials
        rounds = DEFAULT_ROUNDS if args.trials is None else min(DEFAULT_ROUNDS, args.trials)
        if rounds < 2:
            raise UsageError("--trials: at least 2 (the overhead needs two rounds)")
    elif args.trials is not None and args.trials < rounds:
        raise UsageError(f"--trials: at least --rounds ({rounds}): each round runs a "
                         f"slice of the trials")
    run_demo(args.out, nodes=args.nodes, trials=args.trials, duration=args.duration,
             rounds=rounds, threads=args.threads, seed=args.seed, serve=args.serve,
             port=args.port,
             metrics_path=args.metrics_path, trace_path=args.trace_path,
             figures=not args.no_figures, serve_after=args.serve)
    return 0


def _const_labels(args) -> dict:
    """--label K=V (repeatable): constant labels on every exported series."""
    import re
    labels = _pairs(args.label or [], "--label")
    for key in labels:
        if not re.match(r"^[a-zA-Z_][a-zA-Z0-9_]*$", key) or key.startswith("__"):
            raise UsageError(f"--label: invalid label name {key!r}")
    return labels


def _sources(args) -> list:
    """The sets named by --attach (files) and --dir (directories of per-process files)."""
    from .metrics import attach_metrics
    from .metrics.directory import MetricsDirectory
    attach = args.attach if isinstance(args.attach, list) else [args.attach] if args.attach else []
    dirs = getattr(args, "dir", None)
    dirs = dirs if isinstance(dirs, list) else [dirs] if dirs else []
    if not attach and not dirs:
        raise UsageError("give --attach PATH or --dir DIR")
    labels = _const_labels(args)
    sources = [attach_metrics(path, const_labels=labels) for path in attach]
    sources += [MetricsDirectory(d, const_labels=labels) for d in dirs]
    return sources


def _cmd_metrics_show(args) -> int:
    from .export.prometheus import exposition
    sources = _sources(args)
    if args.format == "json":
        (source,) = sources
        print(json.dumps(source.collect().to_dict(), indent=2))
    else:
        sys.stdout.write(exposition(*sources))
    return 0


def _cmd_metrics_compact(args) -> int:
    from .metrics.directory import MetricsDirectory
    done = MetricsDirectory(args.dir, compact=False).compact()
    print(f"{args.dir}: {done['compacted']} exited process file(s) moved to the archive, "
          f"{done['removed']} leftover(s) removed, {done['files']} file(s) left",
          file=sys.stderr)
    return 0


def _cmd_metrics_serve(args) -> int:
    from .export.server import MetricsServer
    sets = _sources(args)
    from .export.prometheus import exposition
    exposition(*sets)       # two files of one set with the same labels: refused before serving
    server = MetricsServer(*sets, host=args.host, port=args.port,
                           classic_scale=args.classic_scale)
    print(f"serving {server.url} ({len(sets)} metric set(s)); Ctrl-C to stop",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90', '90s', '5m', '1h', '2d' -> seconds."""
    text = text.strip()
    try:
        if text and text[-1] in _UNITS:
            value = float(text[:-1]) * _UNITS[text[-1]]
        else:
            value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 5m, 1h)") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"durations are positive, got {text!r}")
    return value


def parse_types(text: str) -> list:
    """Event type names (checked against the attached file's event set when it is read)."""
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected event type names, got {text!r}")
    return names


def _type_indexes(tracer, names, option: str = "--types") -> list:
    try:
        return [tracer.layout.type_of(n).index for n in names]
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _attach_tracer(path, writable=False):
    from .tracing import Tracer
    return Tracer.attach(path, writable=writable)


def parse_since(text: str):
    """A duration back from now (``30s``, ``5m``), or an instant: ISO 8601 with a time zone
    (``2026-11-29T10:00:00Z``) or ``@<unix seconds>``.  Returns a callable giving unix ns."""
    import datetime
    import time
    text = text.strip()
    if text.startswith("@"):
        try:
            instant = float(text[1:])
        except ValueError:
            raise argparse.ArgumentTypeError(f"not unix seconds: {text!r}") from None
        if not math.isfinite(instant):
            raise argparse.ArgumentTypeError(f"not unix seconds: {text!r}")
        return lambda: int(instant * 1e9)
    if "T" in text or text.count("-") >= 2:
        try:
            when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
        if when.tzinfo is None:
            raise argparse.ArgumentTypeError(f"give a time zone (Z or +hh:mm): {text!r}")
        return lambda: int(when.timestamp() * 1e9)
    seconds = parse_duration(text)
    return lambda: time.time_ns() - int(seconds * 1e9)


def _select(events, args, tracer):
    import numpy as np
    if getattr(args, "since", None) is not None:
        events = events[events["timestamp"] >= np.uint64(max(0, args.since()))]
    if getattr(args, "types", None):
        events = events[np.isin(events["event_type"], _type_indexes(tracer, args.types))]
    return events


def _output(args):
    return open(args.output, "wb") if getattr(args, "output", None) else sys.stdout.buffer


def _pairs(items, where: str) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{where} takes KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _headers(args) -> dict:
    """Request headers: $ENGRAM_NUMBA_HEADERS (K=V,K=V), then --header-file (a K=V per
    line), then --header; a later source wins for the same key.  Secrets such as
    tokens belong in the first two, which other users cannot read in the process list."""
    env = os.environ.get(HEADERS_ENV, "")
    out = _pairs([i for i in env.split(",") if i.strip()], f"${HEADERS_ENV}")
    if getattr(args, "header_file", None):
        try:
            with open(args.header_file, encoding="utf-8") as f:
                lines = [line.strip() for line in f]
        except OSError as exc:
            raise UsageError(f"--header-file: cannot read {args.header_file}: "
                             f"{exc.strerror}") from None
        out.update(_pairs([x for x in lines if x and not x.startswith("#")], "--header-file"))
    out.update(_pairs(args.header or [], "--header"))
    return out


def _deliver(send, what: str, timeout: float, attempts: int = 5) -> None:
    """Call ``send(deadline)`` with the delivery policy every exporter follows (see
    ``_delivery``): retryable failures retried with backoff and jitter, a receiver's
    Retry-After honoured but capped, nothing past ``timeout`` seconds from now, permanent
    failures at once.  Each retry is told on stderr, escaped."""
    import time

    from ._delivery import Backoff, deliver, printable
    deliver(send, what=what, deadline=time.monotonic() + timeout, attempts=attempts,
            backoff=Backoff(0.2, 10.0),
            on_retry=lambda message: print(printable(message), file=sys.stderr, flush=True))


def _timeout_of(exporter) -> float:
    transport = getattr(exporter, "transport", None)
    return transport.timeout if transport is not None else exporter.timeout


def _otlp_options(args) -> dict:
    """Options given on the command line; the OTLP exporters take the rest from the
    OpenTelemetry environment (OTEL_EXPORTER_OTLP_*, OTEL_SERVICE_NAME, ...)."""
    return dict(protocol=args.protocol, headers=_headers(args),
                compression=None if args.no_gzip else "default", timeout=args.timeout,
                insecure=args.insecure, ca_file=args.ca_file, service_name=args.service)


def _otlp_endpoint(args, kind: str):
    """--endpoint, else the OpenTelemetry environment's (checked here for a clear message)."""
    if args.endpoint:
        return args.endpoint
    if os.environ.get(f"OTEL_EXPORTER_OTLP_{kind.upper()}_ENDPOINT") or \
            os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    raise UsageError("--endpoint URL is needed (or OTEL_EXPORTER_OTLP_ENDPOINT)")


def _password(args) -> str:
    """--password, else the first line of --password-file, else $ENGRAM_NUMBA_PASSWORD."""
    if args.password is not None:
        return args.password
    if args.password_file is not None:
        try:
            with open(args.password_file, encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except OSError as exc:
            raise UsageError(f"--password-file: cannot read {args.password_file}: "
                             f"{exc.strerror}") from None
    return os.environ.get(PASSWORD_ENV, "")


def _cmd_trace_export_dir(args) -> int:
    from .export.chrome import merged_chrome
    from .export.json import merged_jsonl
    from .tracing.directory import TraceDirectory
    if args.format not in ("jsonl", "chrome", "otlp"):
        raise UsageError(f"--dir exports jsonl, chrome or otlp, not {args.format}")
    parts = TraceDirectory(args.dir).read(lambda events, tracer: _select(events, args, tracer))
    n = sum(int(events.size) for _, events in parts)
    if args.format == "otlp":
        from .export.otlp import OtlpLogExporter
        endpoint = _otlp_endpoint(args, "logs")
        for p, events in parts:
            exporter = OtlpLogExporter(endpoint, **_otlp_options(args), resource_attributes={
                "service.instance.id": p.instance_id, "process.pid": p.pid})
            exporter.bind(p.tracer)          # compiled before the deadline's clock starts
            for start in range(0, events.size, args.batch_size):
                batch = events[start:start + args.batch_size]
                _deliver(lambda deadline: exporter.export(batch, deadline=deadline),
                         "otlp export", exporter.transport.timeout)
            exporter.shutdown()
        print(f"sent {n} events of {len(parts)} process(es) to {endpoint}", file=sys.stderr)
        return 0
    body = json.dumps(merged_chrome(parts)).encode() if args.format == "chrome" \
        else merged_jsonl(parts)
    out = _output(args)
    out.write(body)
    out.flush()
    if args.output:
        out.close()
        print(f"wrote {n} events of {len(parts)} process(es) to {args.output}",
              file=sys.stderr)
    return 0


def _cmd_trace_export(args) -> int:
    from .export.json import events_to_document, events_to_jsonl
    if args.format == "loki" and not args.endpoint:
        raise UsageError("--format loki needs --endpoint URL")
    if args.format == "otlp":
        _otlp_endpoint(args, "logs")
    if args.dir:
        return _cmd_trace_export_dir(args)
    tracer = _attach_tracer(args.attach)
    events = _select(tracer.read(), args, tracer)
    if args.format in ("otlp", "loki"):
        if args.format == "otlp":
            from .export.otlp import OtlpLogExporter
            exporter = OtlpLogExporter(args.endpoint, **_otlp_options(args))
        else:
            from .export.loki import LokiExporter
            auth = (args.user, _password(args)) if args.user else None
            service = args.service or os.environ.get("OTEL_SERVICE_NAME") or tracer.layout.name
            exporter = LokiExporter(args.endpoint, service=service, tenant=args.tenant,
                                    basic_auth=auth, headers=_headers(args),
                                    compression=None if args.no_gzip else "gzip",
                                    timeout=args.timeout or 10.0,
                                    insecure=bool(args.insecure),
                                    ca_file=args.ca_file)
        # the encoder compiles now: --timeout bounds the delivery, not a first compile
        exporter.bind(tracer)
        for start in range(0, max(events.size, 1), args.batch_size):
            batch = events[start:start + args.batch_size]
            if batch.size:
                _deliver(lambda deadline: exporter.export(batch, deadline=deadline),
                         f"{args.format} export", _timeout_of(exporter))
        print(f"sent {events.size} events to {args.endpoint}", file=sys.stderr)
        return 0
    if args.format == "chrome":
        from .export.chrome import chrome_trace
        body = json.dumps(chrome_trace(events, tracer=tracer)).encode()
    else:
        body = events_to_document(events, tracer=tracer) if args.format == "json" \
            else events_to_jsonl(events, tracer=tracer)
    out = _output(args)
    out.write(body)
    out.flush()
    if args.output:
        out.close()
        print(f"wrote {events.size} events to {args.output}", file=sys.stderr)
    return 0


def _cmd_trace_stream(args) -> int:
    from .export.json import events_to_jsonl
    tracer = _attach_tracer(args.attach)
    if args.types:
        _type_indexes(tracer, args.types)             # a bad name is a usage error, at once
    out = sys.stdout.buffer
    try:
        for batch in tracer.follow(interval=args.interval):
            batch = _select(batch, args, tracer)
            if batch.size:
                out.write(events_to_jsonl(batch, tracer=tracer))
                out.flush()
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    return 0


def _cmd_trace_stats(args) -> int:
    tracer = _attach_tracer(args.attach)
    stats = tracer.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    t = stats["total"]
    print(f"rings in use: {len(stats['rings'])}, capacity {stats['capacity']} events each, "
          f"{stats['memory_bytes']:,} bytes")
    print(f"written {t['written']:,}  delivered {t['delivered']:,}  dropped {t['dropped']:,}  "
          f"pending {t['pending']:,}")
    print(f"utilization now {t['utilization']:.1f}%, peak {t['peak_utilization']:.1f}% "
          f"(the fullest ring at a drain; 100% means events were overwritten)")
    print(f"no free ring {stats['no_ring']:,}  invalid arguments {stats['invalid']:,}")
    if stats["lost"]:
        print(f"LOST {stats['lost']:,} events ({100 * stats['lost'] / max(t['written'], 1):.1f}% "
              f"of those written): dropped {t['dropped']:,} (overwritten before they were "
              f"read), no free ring {stats['no_ring']:,}, invalid {stats['invalid']:,}")
    for span in tracer.open_spans():
        print(f"  open span {span['type']} (id {span['span_id']:#x}) on ring {span['ring']}, "
              f"depth {span['depth']}")
    for r in stats["rings"]:
        print(f"  ring {r['ring']:>4} (thread {r['thread']}): written {r['written']:>12,}  "
              f"delivered {r['delivered']:>12,}  dropped {r['dropped']:>10,}  "
              f"pending {r['pending']:>8,}  now {r['utilization']:5.1f}%  "
              f"peak {r['peak_utilization']:5.1f}%")
    return 0


def _cmd_trace_config(args) -> int:
    tracer = _attach_tracer(args.attach, writable=bool(args.enable or args.disable
                                                         or args.sample_rate is not None))
    disable = _type_indexes(tracer, args.disable or [], "--disable")
    enable = _type_indexes(tracer, args.enable or [], "--enable")
    for t in disable:
        tracer.disable(t)
    if args.sample_rate is not None:
        targets = enable or [tracer.layout.type_of(n).index
                             for n, rate in tracer.sample_rates().items() if rate > 0]
        for t in targets:
            tracer.set_sample_rate(t, args.sample_rate)
    else:
        for t in enable:
            tracer.set_sample_rate(t, 1.0)
    rates = tracer.sample_rates()
    print(f"event set {tracer.event_set.set_name}")
    for t in tracer.layout.types:
        rate = rates[t.name]
        print(f"{t.name:16} {t.kind:5} {'on ' if rate > 0 else 'off'}  sample rate {rate:.6g}")
    return 0


def _cmd_metrics_push(args) -> int:
    import time

    from .export.otlp import OtlpMetricExporter
    sets = _sources(args)
    exporter = OtlpMetricExporter(_otlp_endpoint(args, "metrics"), **_otlp_options(args))
    pushes = 0
    try:
        while True:
            _deliver(lambda deadline: exporter.export(*sets, deadline=deadline),
                     "metrics push", exporter.transport.timeout)
            pushes += 1
            if not args.interval or (args.count and pushes >= args.count):
                break
            time.sleep(args.interval)
    except KeyboardInterrupt:
        pass
    print(f"pushed {len(sets)} metric set(s) {pushes} time(s) to {exporter.endpoint}",
          file=sys.stderr)
    return 0


def _add_transport_options(p, gzip_default=True):
    p.add_argument("--header", action="append", metavar="K=V",
                   help="extra request header (repeatable); for secrets prefer --header-file "
                        f"or ${HEADERS_ENV} (K=V,K=V)")
    p.add_argument("--header-file", metavar="FILE",
                   help="request headers, one K=V per line (# comments), e.g. "
                        "authorization=Bearer <token>")
    p.add_argument("--protocol", choices=["grpc", "http"],
                   help="OTLP transport (default: $OTEL_EXPORTER_OTLP_PROTOCOL, else grpc)")
    p.add_argument("--no-gzip", action="store_true", help="send uncompressed")
    p.add_argument("--insecure", action="store_true", default=None,
                   help="gRPC without TLS / https without certificate checks")
    p.add_argument("--ca-file", metavar="PEM", help="CA certificates for TLS")
    p.add_argument("--timeout", type=positive_seconds,
                   help="deadline of each push or batch, retries and waits included, seconds "
                        "(default: $OTEL_EXPORTER_OTLP_TIMEOUT, else 10)")
    p.add_argument("--service", help="service.name / Loki service label (default: "
                                     "$OTEL_SERVICE_NAME, else the set's name)")


_EXAMPLES = {
    "engram-numba": """\
  engram-numba demo                                   run the instrumented workload, write report/
  engram-numba metrics serve --attach app.metrics     serve a running program's metrics
  engram-numba trace stream --attach app.rings        follow its traced events
  engram-numba demo --help                            options of one command""",
    "demo": """\
  engram-numba demo                                   about 20 s of workload, figures in report/
  engram-numba demo --trials 200000 --threads 2       the same work every time
  engram-numba demo --serve --port 9464               with /metrics up while it runs""",
    "metrics": """\
  engram-numba metrics show --attach app.metrics --format json
  engram-numba metrics serve --attach a.metrics --attach b.metrics --port 9464
  engram-numba metrics push --attach app.metrics --endpoint localhost:4317 --insecure""",
    "show": """\
  engram-numba metrics show --attach app.metrics
  engram-numba metrics show --attach app.metrics --format json""",
    "serve": """\
  engram-numba metrics serve --attach app.metrics
  engram-numba metrics serve --attach a.metrics --attach b.metrics --port 0
  engram-numba metrics serve --attach app.metrics --classic-scale 1   classic le buckets at scale 1
  engram-numba metrics serve --dir /run/engram      every worker process, summed""",
    "compact": """\
  engram-numba metrics compact --dir /run/engram""",
    "push": """\
  engram-numba metrics push --attach app.metrics --endpoint localhost:4317 --insecure
  engram-numba metrics push --attach app.metrics --endpoint https://otel.example:4318 \\
      --protocol http --header-file otlp-headers.txt --interval 10s""",
    "trace": """\
  engram-numba trace export --attach app.rings --format jsonl --output events.jsonl
  engram-numba trace stream --attach app.rings --types priming
  engram-numba trace config --attach app.rings --enable priming --sample-rate 0.01""",
    "export": """\
  engram-numba trace export --attach app.rings --since 5m --output recent.jsonl
  engram-numba trace export --attach app.rings --format chrome --output trace.json
  engram-numba trace export --dir /run/engram-traces --output all-workers.jsonl
  engram-numba trace export --attach app.rings --format otlp --endpoint localhost:4317 --insecure
  ENGRAM_NUMBA_PASSWORD=... engram-numba trace export --attach app.rings --format loki \\
      --endpoint https://loki.example --user me""",
    "stream": """\
  engram-numba trace stream --attach app.rings
  engram-numba trace stream --attach app.rings --types priming,interference --interval 1""",
    "stats": """\
  engram-numba trace stats --attach app.rings
  engram-numba trace stats --attach app.rings --json""",
    "config": """\
  engram-numba trace config --attach app.rings                          show the thresholds
  engram-numba trace config --attach app.rings --disable interference
  engram-numba trace config --attach app.rings --enable priming --sample-rate 0.1""",
}


def _parser_options(name: str) -> dict:
    return dict(epilog="examples:\n" + _EXAMPLES[name],
                formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="engram-numba",
        description="Lock-free metrics and tracing for numba kernels.",
        **_parser_options("engram-numba"))
    from ._version import __version__
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the instrumented cognitive workload and report", **_parser_options("demo"))
    demo.add_argument("--out", default="report", metavar="DIR", help="report folder (default report/)")
    demo.add_argument("--nodes", type=_number(int, 2, what="a number of memories (>= 2)"),
                      default=20_000, help="memories in the graph (default 20,000)")
    demo.add_argument("--trials", type=positive_int,
                      help="recall trials, at least 2 (default: sized by --duration)")
    demo.add_argument("--duration", type=positive_seconds, default=20.0,
                      help="seconds of workload when --trials is not given (default 20)")
    demo.add_argument("--threads", type=positive_int,
                      help="numba threads (default: all cores; more than numba has is reduced, "
                           "with a note)")
    demo.add_argument("--rounds", type=_number(int, 2, what="a number of rounds (>= 2)"),
                      help=f"interleaved rounds of the overhead measurement (default "
                           f"{DEFAULT_ROUNDS}, or one per trial for fewer --trials)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    demo.add_argument("--serve", action="store_true",
                      help="serve /metrics while it runs, and after it until Ctrl-C")
    demo.add_argument("--port", type=port_number, default=9464, help="port for --serve")
    demo.add_argument("--metrics-path", metavar="PATH",
                      help="put the metrics in a file others can attach (metrics serve --attach)")
    demo.add_argument("--trace-path", metavar="PATH",
                      help="put the event rings in a file others can attach (trace stream --attach)")
    demo.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    demo.set_defaults(func=_cmd_demo, usage=demo.format_usage)

    metrics = sub.add_parser("metrics", help="read metric sets", **_parser_options("metrics")).add_subparsers(
        dest="metrics_command", required=True)
    show = metrics.add_parser("show", help="print a file-backed metric set", **_parser_options("show"))
    where = show.add_mutually_exclusive_group(required=True)
    where.add_argument("--attach", metavar="PATH", help="metric-set file")
    where.add_argument("--dir", metavar="DIR",
                       help="directory of per-process files (create_in / "
                            "$ENGRAM_NUMBA_METRICS_DIR): their sum")
    show.add_argument("--format", choices=["prometheus", "json"], default="prometheus",
                      help="Prometheus text (default) or the snapshot as JSON")
    show.add_argument("--label", action="append", metavar="K=V",
                      help="constant label on every series (repeatable), e.g. worker=3")
    show.set_defaults(func=_cmd_metrics_show, usage=show.format_usage)
    serve = metrics.add_parser("serve", help="serve file-backed metric sets on /metrics", **_parser_options("serve"))
    serve.add_argument("--attach", action="append", metavar="PATH",
                       help="metric-set file written by another process (repeatable)")
    serve.add_argument("--dir", action="append", metavar="DIR",
                       help="directory of per-process files (create_in / "
                            "$ENGRAM_NUMBA_METRICS_DIR), served as their sum and compacted "
                            "as processes exit (repeatable)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    serve.add_argument("--port", type=port_number, default=9464,
                       help="port (default 9464; 0 = any free)")
    serve.add_argument("--label", action="append", metavar="K=V",
                      help="constant label on every series (repeatable), e.g. worker=3")
    serve.add_argument("--classic-scale", type=_number(int, 0, 8, what="a scale in [0, 8]"),
                       metavar="S", help="text formats: export exponential histograms' classic "
                       "le buckets at this scale (2**S per power of two, at most each one's "
                       "scale; counts stay exact) instead of each one's declared classic_scale; "
                       "the protobuf format always carries every bucket")
    serve.set_defaults(func=_cmd_metrics_serve, usage=serve.format_usage)
    push = metrics.add_parser("push", help="push file-backed metric sets over OTLP", **_parser_options("push"))
    push.add_argument("--attach", action="append", metavar="PATH",
                      help="metric-set file written by another process (repeatable)")
    push.add_argument("--dir", action="append", metavar="DIR",
                      help="directory of per-process files, pushed as their sum (repeatable)")
    push.add_argument("--endpoint", "--otlp", dest="endpoint", metavar="URL",
                      help="OTLP endpoint: host:port (grpc) or http(s)://host:port (http); "
                           "default $OTEL_EXPORTER_OTLP_ENDPOINT; --otlp is the former name")
    push.add_argument("--interval", type=parse_duration, metavar="DURATION",
                      help="push again every DURATION until interrupted (default: once)")
    push.add_argument("--count", type=positive_int,
                      help="with --interval: stop after this many pushes")
    _add_transport_options(push)
    push.add_argument("--label", action="append", metavar="K=V",
                      help="constant label on every series (repeatable), e.g. worker=3")
    push.set_defaults(func=_cmd_metrics_push, usage=push.format_usage)
    compact = metrics.add_parser("compact", help="move exited processes' files into the "
                                 "directory's archive", **_parser_options("compact"))
    compact.add_argument("--dir", required=True, metavar="DIR",
                         help="directory of per-process files")
    compact.set_defaults(func=_cmd_metrics_compact, usage=compact.format_usage)

    trace = sub.add_parser("trace", help="read and steer file-backed event rings", **_parser_options("trace")).add_subparsers(
        dest="trace_command", required=True)

    def attach(p):
        p.add_argument("--attach", required=True, metavar="PATH", help="trace-ring file")

    export = trace.add_parser("export", help="write the events still held in the rings", **_parser_options("export"))
    where = export.add_mutually_exclusive_group(required=True)
    where.add_argument("--attach", metavar="PATH", help="trace-ring file")
    where.add_argument("--dir", metavar="DIR",
                       help="directory of per-process rings files (Tracer.create_in / "
                            "$ENGRAM_NUMBA_TRACE_DIR): every process's events in time order "
                            "(formats jsonl, chrome, otlp)")
    export.add_argument("--format", choices=["json", "jsonl", "otlp", "loki", "chrome"],
                        default="jsonl",
                        help="jsonl: one event per line; json: one batch document; chrome: "
                             "Trace Event JSON; otlp / loki: send to --endpoint")
    export.add_argument("--endpoint", metavar="URL", help="OTLP or Loki endpoint")
    export.add_argument("--batch-size", type=positive_int, default=5000,
                        help="events per request (default 5000)")
    export.add_argument("--tenant", help="Loki tenant (X-Scope-OrgID)")
    export.add_argument("--user", help="Loki basic-auth user")
    secret = export.add_mutually_exclusive_group()
    secret.add_argument("--password", help=f"Loki basic-auth password (visible to other users "
                                           f"in the process list: prefer --password-file or "
                                           f"${PASSWORD_ENV})")
    secret.add_argument("--password-file", metavar="FILE",
                        help="read the Loki basic-auth password from the first line of FILE")
    _add_transport_options(export)
    export.add_argument("--output", metavar="FILE", help="default: standard output")
    export.add_argument("--since", type=parse_since, metavar="WHEN",
                        help="only events from this on: a duration back from now (30s, 5m, 1h, "
                             "2d), an ISO 8601 time with zone, or @<unix seconds>")
    export.add_argument("--types", type=parse_types, metavar="T1,T2",
                        help="only these event types (priming,interference,...)")
    export.set_defaults(func=_cmd_trace_export, usage=export.format_usage)

    stream = trace.add_parser("stream", help="follow new events as JSON lines until interrupted", **_parser_options("stream"))
    attach(stream)
    stream.add_argument("--types", type=parse_types, metavar="T1,T2",
                        help="only these event types (default: all)")
    stream.add_argument("--interval", type=positive_seconds, default=0.2,
                        help="poll interval, seconds (default 0.2)")
    stream.set_defaults(func=_cmd_trace_stream, usage=stream.format_usage)

    stats = trace.add_parser("stats", help="written / delivered / dropped per ring", **_parser_options("stats"))
    attach(stats)
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(func=_cmd_trace_stats, usage=stats.format_usage)

    config = trace.add_parser("config", help="show or change the running program's tracing", **_parser_options("config"))
    attach(config)
    config.add_argument("--enable", type=parse_types, action="extend", metavar="T1,T2",
                        help="record these event types (repeatable)")
    config.add_argument("--disable", type=parse_types, action="extend", metavar="T1,T2",
                        help="stop recording these event types (repeatable)")
    config.add_argument("--sample-rate", type=rate, metavar="R",
                        help="rate in [0, 1] for the --enable'd types (default: all enabled)")
    config.set_defaults(func=_cmd_trace_config, usage=config.format_usage)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)          # usage errors: a message and exit code 2
    try:
        return args.func(args)
    except UsageError as exc:
        from ._delivery import printable
        # the usage of the command given (metrics serve ...), not of engram-numba
        sys.stderr.write(getattr(args, "usage", parser.format_usage)())
        print(f"engram-numba: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a runtime failure: one line, never a traceback
        from ._delivery import printable
        print(f"engram-numba: error: {printable(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

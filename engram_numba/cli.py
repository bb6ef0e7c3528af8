"""``engram-numba`` command line (also ``python -m engram_numba``)."""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_demo(args) -> int:
    from . import quickstart
    quickstart.run(threads=args.threads, points=args.points)
    return 0


def _cmd_metrics_show(args) -> int:
    from .export.prometheus import exposition
    from .metrics import attach_metrics
    metrics = attach_metrics(args.attach)
    if args.format == "json":
        print(json.dumps(metrics.snapshot(), indent=2))
    else:
        sys.stdout.write(exposition(metrics))
    return 0


def _cmd_metrics_serve(args) -> int:
    from .export.server import MetricsServer
    from .metrics import attach_metrics
    sets = [attach_metrics(path) for path in args.attach]
    server = MetricsServer(*sets, host=args.host, port=args.port)
    print(f"serving {server.url} ({len(sets)} metric set(s)); Ctrl-C to stop",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="engram-numba",
        description="Lock-free metrics and tracing for numba kernels.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="record from a threaded kernel and print the metrics")
    demo.add_argument("--threads", type=int, default=2, help="threads (default 2)")
    demo.add_argument("--points", type=int, default=2_000_000, help="points per thread")
    demo.set_defaults(func=_cmd_demo)

    metrics = sub.add_parser("metrics", help="read metric sets").add_subparsers(
        dest="metrics_command", required=True)
    show = metrics.add_parser("show", help="print a file-backed metric set")
    show.add_argument("--attach", required=True, metavar="PATH", help="metric-set file")
    show.add_argument("--format", choices=["prometheus", "json"], default="prometheus")
    show.set_defaults(func=_cmd_metrics_show)
    serve = metrics.add_parser("serve", help="serve file-backed metric sets on /metrics")
    serve.add_argument("--attach", required=True, action="append", metavar="PATH",
                       help="metric-set file written by another process (repeatable)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    serve.add_argument("--port", type=int, default=9464, help="port (default 9464; 0 = any free)")
    serve.set_defaults(func=_cmd_metrics_serve)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (OSError, ValueError) as exc:
        print(f"engram-numba: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

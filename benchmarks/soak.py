"""Soak: the reference workload, exported and scraped, against a flaky backend, for N minutes.

    python benchmarks/soak.py --minutes 30 [--output results.json]

The cognitive workload runs without pause on a worker thread, recording
metrics and traced events.  A TraceCollector exports the events as JSON Lines
(to a file truncated now and then, so the disk stays bounded) and over OTLP/HTTP
to a loopback receiver that goes down and comes back every few seconds.  A
scraper reads ``/metrics`` every second.  Every ``--sample`` seconds it prints
RSS, threads, open files, and the tracing and delivery counters; at the end the
RSS slope over the second half of the run (MB per hour), the growth of threads
and descriptors, and the accounting: for every ring ``written == delivered +
dropped`` and, for every exporter, ``drained == exported + dropped``, exactly.

Beside it, a directory of metric-set writers that come and go: processes (forked
from one helper) create their file, count a known number, live a few seconds
and exit, a third of them SIGKILLed; a reader reads the directory every second
(compacting as it goes) and times each reading.  At the end the directory's
total must equal what every writer counted, exactly; the figures are the
largest reading time and the number of files in the directory (at most and at
the end), next to the RSS and open descriptors of the reading process.
Exit status 1 when an invariant does not hold.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import header, machine, save  # noqa: E402

from engram_numba import CognitivePatternMetrics, CognitiveTracer, TraceCollector  # noqa: E402
from engram_numba import TracingConfig  # noqa: E402
from engram_numba.export import MetricsServer  # noqa: E402
from engram_numba.export.json import JsonLinesExporter  # noqa: E402
from engram_numba.export.otlp import OtlpLogExporter  # noqa: E402
from engram_numba.engram.workload import build_graph, run_trials  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


class FlakyReceiver:
    """An OTLP/HTTP receiver on a fixed loopback port that is down half of the time."""

    def __init__(self, period: float):
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.period = period
        self.received = 0
        self.outages = 0
        self._stop = threading.Event()
        self._server = None
        self._thread = threading.Thread(target=self._cycle, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _up(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _down(self):
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        self.outages += 1

    def _cycle(self):
        while not self._stop.is_set():
            self._up()
            if self._stop.wait(self.period):
                break
            self._down()
            self._stop.wait(self.period / 2)
        if self._server is not None:
            self._down()

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()


CHURN_HELPER = r"""
import os, signal, sys, time
from engram_numba import Counter, MetricSet
class Churn(MetricSet, name="churn"):
    hits = Counter("churn_hits", "Counted by writers that come and go")
warm = Churn()
warm.hits.add(1)
print("ready", flush=True)
children = {}
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "spawn":
        n, life, fate = int(args[0]), float(args[1]), args[2]
        pid = os.fork()
        if pid == 0:
            m = Churn.create_in(sys.argv[1])
            m.hits.add(n)
            os.write(1, b"counted %d %d\n" % (os.getpid(), n))
            time.sleep(life if fate == "exit" else 3600)
            os._exit(0)
        children[pid] = (time.monotonic() + life, fate)
    now = time.monotonic()
    for pid, (end, fate) in list(children.items()):
        if fate == "kill" and now >= end:
            os.kill(pid, signal.SIGKILL)
            children[pid] = (float("inf"), "killed")
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            del children[pid]
for pid in children:
    os.kill(pid, signal.SIGKILL)
"""


class DirectoryChurn:
    """Writers that come and go in a directory, and a reader that times its readings."""

    def __init__(self, directory: Path, alive: int = 4):
        from engram_numba.metrics.directory import MetricsDirectory
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.alive = alive
        self.helper = subprocess.Popen([sys.executable, "-c", CHURN_HELPER, str(directory)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.helper.stdout.readline().strip() == "ready"
        self.counted = 0
        self.started = {"exit": 0, "kill": 0}
        self.reader = MetricsDirectory(directory)
        self.readings = 0
        self.longest_ms = 0.0
        self.files_max = 0
        self.failures = []
        self._stop = threading.Event()
        self._rng = random.Random(5)
        self._threads = [threading.Thread(target=self._spawn, daemon=True),
                         threading.Thread(target=self._listen, daemon=True),
                         threading.Thread(target=self._read, daemon=True)]

    def _spawn(self):
        while not self._stop.wait(self._rng.uniform(0.2, 0.6)):
            fate = "kill" if self._rng.random() < 1 / 3 else "exit"
            self.started[fate] += 1
            self.helper.stdin.write(f"spawn {self._rng.randint(1, 1000)} "
                                    f"{self._rng.uniform(0.5, 4.0):.2f} {fate}\n")
            self.helper.stdin.flush()

    def _listen(self):
        for line in self.helper.stdout:
            if line.startswith("counted "):
                self.counted += int(line.split()[2])

    def total(self) -> int:
        for fam in self.reader.collect().families():
            if fam.name == "churn_hits_total":
                return sum(v for _, v in fam.points)
        return 0

    def _read(self):
        while not self._stop.wait(1.0):
            t = time.perf_counter()
            try:
                self.total()
            except Exception as exc:  # an invariant: readings never fail
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.longest_ms = max(self.longest_ms, (time.perf_counter() - t) * 1e3)
            self.readings += 1
            self.files_max = max(self.files_max, self.files())

    def files(self) -> int:
        return len(os.listdir(self.directory))

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> dict:
        self._stop.set()
        self._threads[0].join()
        self._threads[2].join()
        time.sleep(4.5)                          # the last writers end (exit, or are killed)
        self.helper.stdin.write("tick\n")
        self.helper.stdin.flush()
        self.helper.stdin.close()
        self.helper.wait(timeout=120)
        self._threads[1].join(timeout=60)
        total = self.total()
        return {"writers_exited": self.started["exit"], "writers_killed": self.started["kill"],
                "counted": self.counted, "read_total": total, "readings": self.readings,
                "longest_reading_ms": self.longest_ms, "files_max": self.files_max,
                "files_end": self.files(), "failures": self.failures[:5]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--sample", type=float, default=None, help="seconds between samples")
    ap.add_argument("--output", default="soak", help="JSON file (default results/soak.json)")
    ap.add_argument("--outage-period", type=float, default=4.0,
                    help="seconds the receiver stays up; it is then down for half as long")
    ap.add_argument("--until-scrapes", type=int, default=0,
                    help="after --minutes, go on until this many scrapes succeeded")
    ap.add_argument("--until-outages", type=int, default=0,
                    help="after --minutes, go on until the receiver went away this many times "
                         "and OTLP delivery resumed after the last of them")
    ap.add_argument("--guard-minutes", type=float, default=None,
                    help="stop anyway after this long (default: 10 times --minutes)")
    args = ap.parse_args(argv)
    seconds = args.minutes * 60
    guard = (args.guard_minutes or 10 * args.minutes) * 60
    sample_every = args.sample or max(1.0, seconds / 60)
    info = machine()
    header(f"soak, {args.minutes:g} minutes", info)

    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"engram-soak-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    jsonl = workdir / "events.jsonl"
    graph = build_graph(4000, seed=3)
    g = (graph.indptr, graph.indices, graph.weights)
    metrics = CognitivePatternMetrics()
    tracer = CognitiveTracer(TracingConfig(
        sample_rates={"priming": 0.01, "interference": 0.02, "reconsolidation": 0.05,
                      "false_memory": 0.5},
        ring_buffer_size=1 << 14, max_threads=16, export_interval_ms=250,
        export_batch_size=2000))
    progress = np.zeros(1, dtype=np.int64)
    run_trials(metrics, tracer, *g, 0, 64, 1, progress)          # compile
    receiver = FlakyReceiver(args.outage_period).start()
    collector = TraceCollector(tracer, [
        JsonLinesExporter(jsonl),
        OtlpLogExporter(receiver.url, protocol="http", timeout=2.0, compression="gzip"),
    ], metrics=metrics, max_queued_batches=32, backoff=(0.1, 2.0)).start()
    server = MetricsServer(metrics, collector.export_metrics).start()
    churn = DirectoryChurn(workdir / "churn").start()

    stop = threading.Event()
    scrapes = {"ok": 0, "failed": 0}

    def work():
        first = 0
        while not stop.is_set():
            run_trials(metrics, tracer, *g, first, 2000, 1, progress)
            first += 2000

    def scrape():
        while not stop.wait(1.0):
            try:
                with urllib.request.urlopen(server.url, timeout=10) as r:
                    r.read()
                scrapes["ok"] += 1
            except OSError:
                scrapes["failed"] += 1
            if jsonl.exists() and jsonl.stat().st_size > 200 * 2 ** 20:
                os.truncate(jsonl, 0)              # the exporter appends; keep the disk bounded

    worker = threading.Thread(target=work, name="soak-workload")
    scraper = threading.Thread(target=scrape, name="soak-scraper")
    start = time.monotonic()
    samples = []
    outage_mark = {}                # OTLP events delivered when the latest outage was seen
    worker.start()
    scraper.start()
    print(f"{'t (s)':>7} {'RSS MB':>8} {'threads':>8} {'fds':>5} {'trials':>12} {'written':>10} "
          f"{'dropped':>8} {'otlp ok':>9} {'otlp drop':>9} {'jsonl ok':>10} {'scrapes':>8} "
          f"{'dir files':>9} {'read ms':>8}")
    try:
        while True:
            elapsed = time.monotonic() - start
            ex = collector.stats()["exporters"]
            tot = tracer.stats()["total"]
            row = {"t": elapsed, "rss_mb": rss_mb(), "threads": threads(), "fds": open_files(),
                   "trials": int(progress[0]), "written": tot["written"],
                   "ring_dropped": tot["dropped"], "otlp_exported": ex["otlp"]["exported_events"],
                   "otlp_dropped": ex["otlp"]["dropped_events"],
                   "jsonl_exported": ex["jsonl"]["exported_events"], "scrapes": scrapes["ok"],
                   "dir_files": churn.files(), "dir_longest_ms": churn.longest_ms}
            samples.append(row)
            print(f"{elapsed:7.0f} {row['rss_mb']:8.1f} {row['threads']:8d} {row['fds']:5d} "
                  f"{row['trials']:12,} {row['written']:10,} {row['ring_dropped']:8,} "
                  f"{row['otlp_exported']:9,} {row['otlp_dropped']:9,} "
                  f"{row['jsonl_exported']:10,} {row['scrapes']:8,} {row['dir_files']:9,} "
                  f"{row['dir_longest_ms']:8.1f}", flush=True)
            # the conditions a run must see are driven until they hold, not assumed to fit
            # into --minutes on a loaded machine; the guard only bounds a run that hangs
            seen = (scrapes["ok"] >= args.until_scrapes
                    and receiver.outages >= args.until_outages
                    and (args.until_outages == 0
                         or ex["otlp"]["exported_events"] > outage_mark.get("exported", 0)))
            if receiver.outages > outage_mark.get("outages", 0):
                outage_mark.update(outages=receiver.outages,
                                   exported=ex["otlp"]["exported_events"])
            if (elapsed >= seconds and seen) or elapsed >= guard:
                break
            time.sleep(min(sample_every, max(1.0, seconds - elapsed)))
    finally:
        stop.set()
        worker.join()
        scraper.join()
    report = collector.stop(timeout=30)
    server.stop()
    receiver.stop()
    directory = churn.stop()

    # -- invariants and figures -----------------------------------------------------------
    stats = tracer.stats()
    problems = []
    for ring in stats["rings"]:
        if ring["written"] != ring["delivered"] + ring["dropped"] + ring["pending"]:
            problems.append(f"ring {ring['ring']}: {ring}")
    if stats["total"]["pending"]:
        problems.append(f"{stats['total']['pending']} events still in the rings after stop()")
    for name, p in report["exporters"].items():
        if p["exported"] + sum(p["dropped"].values()) + p["pending"] != report["drained_events"]:
            problems.append(f"exporter {name}: {p} vs drained {report['drained_events']}")
        if p["pending"]:
            problems.append(f"exporter {name}: {p['pending']} events pending after stop()")
    if directory["read_total"] != directory["counted"]:
        problems.append(f"directory: read {directory['read_total']} != counted "
                        f"{directory['counted']} by its writers")
    if directory["failures"]:
        problems.append(f"directory readings failed: {directory['failures']}")
    if report["drained_events"] != stats["total"]["delivered"]:
        problems.append(f"drained {report['drained_events']} != delivered "
                        f"{stats['total']['delivered']}")
    half = [s for s in samples if s["t"] >= samples[-1]["t"] / 2]
    if len(half) >= 2:
        t = np.array([s["t"] for s in half]) / 3600
        slope = float(np.polyfit(t, [s["rss_mb"] for s in half], 1)[0])
    else:
        slope = float("nan")
    summary = {
        "minutes": args.minutes, "trials": int(progress[0]),
        "rss_mb": {"start": samples[0]["rss_mb"], "end": samples[-1]["rss_mb"],
                   "slope_second_half_mb_per_hour": slope},
        "threads": {"start": samples[0]["threads"], "end": samples[-1]["threads"],
                    "max": max(s["threads"] for s in samples)},
        "open_files": {"start": samples[0]["fds"], "end": samples[-1]["fds"],
                       "max": max(s["fds"] for s in samples)},
        "tracing": {k: stats["total"][k] for k in ("written", "delivered", "dropped", "pending")}
        | {"no_ring": stats["no_ring"]},
        "delivery": report, "receiver": {"requests": receiver.received,
                                         "outages": receiver.outages},
        "scrapes": scrapes, "directory": directory, "problems": problems, "machine": info,
        "samples": samples,
    }
    print(f"\nRSS {samples[0]['rss_mb']:.1f} -> {samples[-1]['rss_mb']:.1f} MB, slope over the "
          f"second half {slope:+.2f} MB/h; threads {summary['threads']['start']} -> "
          f"{summary['threads']['end']} (max {summary['threads']['max']}); open files "
          f"{summary['open_files']['start']} -> {summary['open_files']['end']}")
    print(f"events written {stats['total']['written']:,} = delivered "
          f"{stats['total']['delivered']:,} + dropped {stats['total']['dropped']:,} + pending "
          f"{stats['total']['pending']:,}; no ring {stats['no_ring']:,}")
    for name, p in report["exporters"].items():
        print(f"  {name:6}: drained {report['drained_events']:,} = exported {p['exported']:,} "
              f"+ dropped {p['dropped']} + pending {p['pending']:,}")
    print(f"receiver: {receiver.received:,} requests over {receiver.outages} outages; scrapes "
          f"{scrapes['ok']:,} ok, {scrapes['failed']:,} failed")
    print(f"directory: {directory['writers_exited']:,} writers exited, "
          f"{directory['writers_killed']:,} killed; counted {directory['counted']:,}, read "
          f"{directory['read_total']:,}; {directory['readings']:,} readings, the longest "
          f"{directory['longest_reading_ms']:.1f} ms; files at most {directory['files_max']}, "
          f"at the end {directory['files_end']}")
    print("invariants: " + ("all hold" if not problems else "; ".join(problems)))
    print(f"saved {save(args.output, summary)}")
    import shutil
    shutil.rmtree(workdir)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""directory_scrape: one scrape of N per-process files, against prometheus_client's multiprocess mode.

Both sides hold the same metrics (the cognitive set: its counters, gauges and
histograms with the same labels and the same classic ``le`` bounds) and the
same values, in N files of one directory, and render the whole Prometheus text
once per scrape (gauges one series per process on both sides: our default
``multiprocess_mode="pid"``, prometheus_client's ``"liveall"``):

* engram-numba: ``exposition(MetricsDirectory(dir))`` (compaction check, lock,
  every file's net, one sum, the text) over N files written by ``create_in``;
* prometheus_client: ``generate_latest`` of a registry holding
  ``MultiProcessCollector(registry, dir)`` over N copies of one process's
  ``*_<pid>.db`` files (counter, gauge and histogram files per process).

Rounds alternate the two sides at every N; figures are medians.  The cost per
file is the slope of a least-squares line through the medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

import _harness as H
from engram_numba.engram.metrics import CognitivePatternMetrics
from engram_numba.export import exposition
from engram_numba.metrics.directory import MetricsDirectory
from engram_numba.metrics.kinds import COUNTER, GAUGE

STRENGTHS = np.linspace(0.01, 1.0, 100)


def fill(m) -> None:
    """The same values on both sides: every label combination of every metric touched."""
    for fam in m.collect().families():
        spec = fam.spec
        if spec is None:
            continue
        attr = spec.attr
        handle = getattr(m, attr, None)
        if handle is None or not hasattr(handle, "spec"):
            continue
        for labels, _ in fam.points:
            if spec.kind is COUNTER:
                handle.add(3, *labels)
            elif spec.kind is GAUGE:
                handle.set(0.5, *labels)
            else:
                for v in STRENGTHS[::10]:
                    handle.observe(float(v), *labels)


PROMETHEUS_WRITER = textwrap.dedent("""
    import json, sys
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    spec = json.load(open(sys.argv[1]))
    reg = CollectorRegistry()
    for m in spec:
        if m["kind"] == "counter":
            c = Counter(m["name"], m["help"], m["labels"], registry=reg)
            for lv in m["points"]:
                (c.labels(*lv) if lv else c).inc(3)
        elif m["kind"] == "gauge":
            g = Gauge(m["name"], m["help"], m["labels"], registry=reg,
                      multiprocess_mode="liveall")
            for lv in m["points"]:
                (g.labels(*lv) if lv else g).set(0.5)
        else:
            h = Histogram(m["name"], m["help"], m["labels"], registry=reg,
                          buckets=m["buckets"])
            for lv in m["points"]:
                for k in range(10):
                    (h.labels(*lv) if lv else h).observe(0.01 + 0.1 * k)
""")


def prometheus_files(directory: str, count: int) -> None:
    """``count`` processes' worth of prometheus_client multiprocess files (pid 0 .. count-1)."""
    import json
    fams = CognitivePatternMetrics().collect().families()
    spec = []
    for fam in fams:
        if fam.spec is None or not fam.fixed_labels:
            continue
        d = {"kind": fam.kind.name, "name": fam.base_name, "help": fam.help,
             "labels": list(fam.label_names), "points": [list(lv) for lv, _ in fam.points]}
        if fam.kind.name == "histogram":
            d["buckets"] = [b for b in fam.spec.scheme.le_bounds() if b != float("inf")]
        spec.append(d)
    path = os.path.join(directory, "spec.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=directory)
    subprocess.run([sys.executable, "-c", PROMETHEUS_WRITER, path], env=env, check=True)
    os.unlink(path)
    pid = None
    for name in os.listdir(directory):
        if name.endswith(".db"):
            pid = name.rsplit("_", 1)[1][:-3]
    for name in [n for n in os.listdir(directory) if n.endswith(f"_{pid}.db")]:
        prefix = name[:-len(f"_{pid}.db")]
        for k in range(count):
            shutil.copyfile(os.path.join(directory, name),
                            os.path.join(directory, f"{prefix}_{k}.db"))
        if not pid.isdigit() or int(pid) >= count:
            os.unlink(os.path.join(directory, name))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", default="1,16,64,256", help="file counts (default 1,16,64,256)")
    p.add_argument("--rounds", type=int, default=7, help="alternating rounds per count")
    p.add_argument("--quick", action="store_true", help="1 and 4 files, 2 rounds")
    p.add_argument("--output", default="directory_scrape", help="results/<name>.json")
    args = p.parse_args(argv)
    counts = [1, 4] if args.quick else [int(x) for x in args.files.split(",")]
    rounds = 2 if args.quick else args.rounds
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    info = H.machine()
    H.header("directory_scrape: one scrape of N process files", info)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for n in counts:
            ours = os.path.join(root, f"engram-{n}")
            theirs = os.path.join(root, f"prometheus-{n}")
            os.makedirs(theirs)
            sets = [CognitivePatternMetrics.create_in(ours) for _ in range(n)]
            for m in sets:
                fill(m)
            prometheus_files(theirs, n)
            directory = MetricsDirectory(ours)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=theirs)
            text_ours, text_theirs = exposition(directory), generate_latest(registry)
            times = {"engram-numba": [], "prometheus_client": []}
            for _ in range(rounds):
                for name, fn in (("engram-numba", lambda: exposition(directory)),
                                 ("prometheus_client", lambda: generate_latest(registry))):
                    t0 = time.perf_counter()
                    fn()
                    times[name].append((time.perf_counter() - t0) * 1e3)
            a = float(np.median(times["engram-numba"]))
            b = float(np.median(times["prometheus_client"]))
            rows.append({"files": n, "engram_numba_ms": a, "prometheus_client_ms": b,
                         "ratio": b / a, "engram_numba_bytes": len(text_ours),
                         "prometheus_client_bytes": len(text_theirs)})
            print(H.table(rows[-1:], list(rows[-1])), flush=True)
            for m in sets:
                m.close()
    print()
    print(H.table(rows, list(rows[0])))
    if len(rows) > 1:
        x = np.array([r["files"] for r in rows], dtype=float)
        for key in ("engram_numba_ms", "prometheus_client_ms"):
            slope, icpt = np.polyfit(x, [r[key] for r in rows], 1)
            print(f"{key[:-3]}: {slope:.3f} ms per file + {icpt:.2f} ms")
    path = H.save(args.output, {"machine": info, "rounds": rounds, "rows": rows})
    print(f"\nsaved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

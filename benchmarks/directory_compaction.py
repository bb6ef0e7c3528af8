"""The first reading of a metrics directory full of exited writers' files.

``N`` files of exited processes (copies of one writer's file under other
processes' names, as ``tests/test_directory_hostile.py`` makes them) are read by
one ``MetricsDirectory``: the first reading compacts them into the archive
within ``compact_budget`` (default 1 s) and still answers exactly; the next
readings find only the archive.  Printed per round: each reading's time, the
files left uncompacted and the exported total (which must equal N).

    python benchmarks/directory_compaction.py            # 3,000 files, 3 rounds
    python benchmarks/directory_compaction.py --files 10000 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from engram_numba import Counter, MetricSet
from engram_numba.export.prometheus import exposition
from engram_numba.metrics.directory import MetricsDirectory


class Small(MetricSet, name="small"):
    n = Counter("n", "hits")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}; {args.files} exited writers' files")
    warm = Path(tempfile.mkdtemp())          # the reading path's first compile, not timed
    try:
        Small.create_in(warm).close()
        exposition(MetricsDirectory(warm))
    finally:
        shutil.rmtree(warm)
    for _ in range(args.rounds):
        d = Path(tempfile.mkdtemp())
        try:
            m = Small.create_in(d)
            m.n.add(1)
            m.close()
            (name,) = [p for p in os.listdir(d) if p.endswith(".metrics")]
            start = name.split(".")[2]
            for i in range(args.files):       # pids above any real one: never running
                shutil.copyfile(d / name, d / f"small.{4_000_000 + i}.{start}.0.metrics")
            os.unlink(d / name)
            md = MetricsDirectory(d)
            times = []
            for _ in range(3):
                t = time.perf_counter()
                md.collect()
                times.append(time.perf_counter() - t)
            left = sum(1 for p in os.listdir(d) if p.endswith(".metrics") and ".archive." not in p)
            total = float(re.search(r"^n_total (\S+)", exposition(md), re.M).group(1))
            print("readings: " + ", ".join(f"{t * 1000:.0f} ms" for t in times)
                  + f"; files left {left}; total {total:.0f} (expected {args.files})")
        finally:
            shutil.rmtree(d)


if __name__ == "__main__":
    main()

"""Fuzzing of region files: damaged metric and trace files are refused or read safely.

Real files (a cognitive metric set, cognitive trace rings) are damaged in
every way a header can be wrong (each field set to boundary values), with
crafted descriptions whose checksum is right, with random bytes anywhere, and
truncated or extended at every size class.  A separate process attaches each
one and reads it (snapshot, exposition, ring reads, a write through a writable
attach): the file must be refused with a RegionError or read without leaving
its mapping.  Signals are counted: a crash is a failure, and the run goes on
with the next case.
"""

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engram_numba import CognitivePatternMetrics, CognitiveTracer, TracingConfig
from engram_numba._region import HEADER_DTYPE, HEADER_SIZE

WORKER = Path(__file__).resolve().parent / "region_fuzz_worker.py"

_BOUNDARIES = [0, 1, 7, 63, 64, 65, 127, 128, 129, 4095, 4096, 4097, 2 ** 31 - 1, 2 ** 31,
               2 ** 32 - 1, 2 ** 32, 2 ** 62, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1]


def _header(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw[:HEADER_SIZE], dtype=HEADER_DTYPE, count=1).copy()


def _with_header(raw: bytes, **fields) -> bytes:
    h = _header(raw)
    for k, v in fields.items():
        h[k] = v
    return h.tobytes() + raw[HEADER_SIZE:]


def _with_description(raw: bytes, mutate) -> bytes:
    """Rewrite the description JSON and fix its length and checksum (a crafted file)."""
    h = _header(raw)
    size, offset = int(h["description_size"][0]), int(h["data_offset"][0])
    desc = json.loads(raw[HEADER_SIZE:HEADER_SIZE + size])
    new = json.dumps(mutate(desc), sort_keys=True, separators=(",", ":")).encode()
    if HEADER_SIZE + len(new) > offset:
        return b""
    h["description_size"] = len(new)
    h["sha256"][0] = np.frombuffer(hashlib.sha256(new).digest(), np.uint8)
    body = bytearray(raw)
    body[:HEADER_SIZE] = h.tobytes()
    body[HEADER_SIZE:offset] = new + bytes(offset - HEADER_SIZE - len(new))
    return bytes(body)


def _set_path(d, path, value):
    for key in path[:-1]:
        d = d[key]
    d[path[-1]] = value
    return d


def _numeric_paths(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _numeric_paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _numeric_paths(v, prefix + (i,))
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield prefix


def cases(raw: bytes, seed: int):
    """Damaged variants of the region file ``raw`` (deterministic for a seed)."""
    rng = random.Random(seed)
    h = _header(raw)
    widths = {"version": 32, "kind": 32, "alignment": 32, "flags": 32,
              "description_size": 64, "data_offset": 64, "data_size": 64, "created_ns": 64}
    size = len(raw)
    extra = [size - 1, size, size + 1, int(h["data_offset"][0]) + 1, int(h["data_size"][0]) // 2]
    for field, bits in widths.items():
        for v in sorted(set(_BOUNDARIES + extra)):
            if v < 1 << bits:
                yield _with_header(raw, **{field: v})
    data = int(h["data_offset"][0])
    for v in (64, 128, 4096, int(h["data_size"][0]) // 2, int(h["data_size"][0]) - 64):
        yield _with_header(raw, data_size=v)[:data + v]     # shrunk consistently: header + file
    yield _with_header(raw, magic=b"ENGRAMNX")
    yield _with_header(raw, sha256=np.zeros(32, np.uint8))
    # crafted descriptions with a valid checksum
    desc = json.loads(raw[HEADER_SIZE:HEADER_SIZE + int(h["description_size"][0])])
    paths = list(_numeric_paths(desc))
    for path in rng.sample(paths, min(len(paths), 40)):
        for v in (0, -1, 1, 3, 2 ** 20, 2 ** 40, 2 ** 63, 1.5, "x", None, [], {}):
            yield _with_description(raw, lambda d, p=path, v=v: _set_path(d, p, v))
    yield _with_description(raw, lambda d: [])
    yield _with_description(raw, lambda d: "text")
    yield _with_description(raw, lambda d: {**d, "format": "other"})
    # random bytes: in the header, the description, and the data
    for _ in range(60):
        body = bytearray(raw)
        for _ in range(rng.choice([1, 4, 32])):
            body[rng.randrange(size)] = rng.randrange(256)
        yield bytes(body)
    data = int(h["data_offset"][0])
    for _ in range(40):                      # only the data: the header stays valid
        body = bytearray(raw)
        for _ in range(rng.choice([8, 256, 4096])):
            body[rng.randrange(data, size)] = rng.randrange(256)
        yield bytes(body)
    body = bytearray(raw)
    body[data:] = os.urandom(size - data)
    yield bytes(body)
    body[data:] = b"\xff" * (size - data)
    yield bytes(body)
    # truncated and extended at every size class
    for n in sorted({0, 1, 8, 127, 128, 129, HEADER_SIZE + int(h["description_size"][0]),
                     data - 1, data, data + 1, data + 64, (data + size) // 2, size - 64,
                     size - 8, size - 1}):
        if 0 <= n < size:
            yield raw[:n]
    for n in (1, 64, 4096, 1 << 20):
        yield raw + bytes(n)


def _run(kind, case_dir, n_cases):
    """Run every case in worker processes; returns (outcomes, crashed case indexes)."""
    outcomes, crashed, first = {}, [], 0
    while first < n_cases:
        proc = subprocess.run([sys.executable, str(WORKER), kind, str(case_dir), str(first)],
                              capture_output=True, text=True, timeout=900)
        started = None
        for line in proc.stdout.splitlines():
            word, _, rest = line.partition(" ")
            if word == "start":
                started = int(rest)
            elif word in ("refused", "read", "unexpected"):
                i, _, detail = rest.partition(" ")
                outcomes[int(i)] = (word, detail)
                started = None
        if proc.returncode == 0 and "done" in proc.stdout:
            break
        assert started is not None, f"worker failed outside a case: {proc.stderr[-2000:]}"
        crashed.append((started, proc.returncode, proc.stderr[-500:]))
        first = started + 1
    return outcomes, crashed


def _real_metrics(path):
    m = CognitivePatternMetrics.create(path)
    m.record_priming(0, 0.5)
    m.record_retention_improvement(-0.25)
    m.priming_node_pairs.set([((1, 2), 3)])
    m.close()


def _real_trace(path):
    tr = CognitiveTracer(TracingConfig(ring_buffer_size=64, max_threads=3, path=str(path)))
    for i in range(100):
        tr.trace_priming(i % 3, 0.5, i, i)
    tr.close()


@pytest.mark.parametrize("kind, make", [("metrics", _real_metrics), ("trace", _real_trace)])
def test_damaged_files_never_crash_and_are_refused_or_read_safely(tmp_path, kind, make):
    original = tmp_path / "original"
    make(original)
    raw = original.read_bytes()
    case_dir = tmp_path / "cases"
    case_dir.mkdir()
    n = 0
    for body in cases(raw, seed=1 if kind == "metrics" else 2):
        (case_dir / str(n)).write_bytes(body)
        n += 1
    outcomes, crashed = _run(kind, case_dir, n)
    unexpected = {i: d for i, (w, d) in outcomes.items() if w == "unexpected"}
    counts = {w: sum(1 for x, _ in outcomes.values() if x == w) for w in ("refused", "read")}
    print(f"{kind}: {n} cases, {counts['refused']} refused, {counts['read']} read safely, "
          f"{len(crashed)} crashed, {len(unexpected)} unexpected errors")
    assert not crashed, f"cases that crashed the process: {crashed[:5]}"
    assert not unexpected, f"cases with an unexpected exception: {list(unexpected.items())[:5]}"
    assert len(outcomes) == n
    assert counts["refused"] > n // 2 and counts["read"] > 20   # both paths were exercised

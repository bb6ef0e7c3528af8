"""Traces across processes: a rings file per process in one directory, read as one.

``Tracer.create_in(Events, DIR)`` (or ``$ENGRAM_NUMBA_TRACE_DIR``) names each
process's rings file ``<set>.<pid>.<start>.<n>.rings`` (pid, process start time
in clock ticks since boot, the process's n-th tracer of that set; see
:func:`.._process.new_rings_path`), so events keep the process that recorded
them; their ``thread`` field is the recording thread's OS id and ``ring`` its
ring in that file.  :class:`TraceDirectory` reads every file (a file still being
created is skipped until it is valid) and merges the events in time order;
``engram-numba trace export --dir DIR`` writes them as JSON Lines (each line
with ``pid`` and ``process_start``: :func:`..export.json.merged_jsonl`), as a
Chrome/Perfetto trace (a process per file: :func:`..export.chrome.merged_chrome`),
or sends them over OTLP with one resource per process
(``service.instance.id`` = ``<pid>.<start>``, ``process.pid``).

Only regular files are read (a symbolic link, a FIFO or a directory named like
a rings file is skipped and listed, never opened), and a file truncated after it
was attached is skipped instead of being read (which would raise SIGBUS).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from .. import _process
from .._region import RegionError, not_regular

__all__ = ["TRACE_DIRECTORY_ENV", "TraceDirectory", "new_path"]

TRACE_DIRECTORY_ENV = _process.TRACE_DIRECTORY_ENV
RINGS = _process.file_pattern("rings")
log = logging.getLogger(__name__)


def _resolve(directory) -> str:
    return _process.shared_directory(directory, TRACE_DIRECTORY_ENV)


def new_path(directory, event_set) -> str:
    """A new rings file name for this process in ``directory`` (created if missing)."""
    return _process.new_rings_path(directory, event_set.layout.name)


class Process:
    """One rings file of the directory: who wrote it and its attached tracer."""

    def __init__(self, path, match, tracer):
        self.path = path
        self.pid, self.start, self.n = int(match["pid"]), int(match["start"]), int(match["n"])
        self.tracer = tracer

    @property
    def instance_id(self) -> str:
        """``<pid>.<start>`` (``.<n>`` for a process's later tracers): unique per process."""
        base = f"{self.pid}.{self.start}"
        return base if self.n == 0 else f"{base}.{self.n}"


class TraceDirectory:
    """Every rings file in ``directory`` (default ``$ENGRAM_NUMBA_TRACE_DIR``)."""

    def __init__(self, directory=None):
        self.directory = _resolve(directory)
        if not os.path.isdir(self.directory):
            raise FileNotFoundError(f"no directory {self.directory}")
        self.skipped: list = []

    def processes(self) -> list:
        """The readable rings files, in (pid, start, n) order; unreadable ones are
        logged and listed in :attr:`skipped`."""
        from .tracer import Tracer
        out, self.skipped = [], []
        for name in sorted(os.listdir(self.directory)):
            m = RINGS.match(name)
            if m is None:
                continue
            path = os.path.join(self.directory, name)
            try:
                what = not_regular(os.lstat(path).st_mode)
                if what is not None:             # a link, a FIFO, a directory: never opened
                    raise RegionError(f"{path}: {what}, not a regular file")
                out.append(Process(path, m, Tracer.attach(path)))
            except FileNotFoundError:
                continue
            except Exception as exc:  # any odd entry is skipped on its own
                log.warning("%s: skipped: %s", name, exc)
                self.skipped.append(name)
        out.sort(key=lambda p: (p.pid, p.start, p.n))
        return out

    def read(self, select=None) -> list:
        """``[(process, events)]``: each file's events still in its rings, by time
        (``select(events, tracer)`` may filter them)."""
        out = []
        for p in self.processes():
            why = p.tracer._region.intact()      # truncated since attached: SIGBUS if read
            if why is not None:
                log.warning("%s: skipped: %s", os.path.basename(p.path), why)
                self.skipped.append(os.path.basename(p.path))
                continue
            events = p.tracer.read()
            if select is not None:
                events = select(events, p.tracer)
            out.append((p, events[np.argsort(events["timestamp"], kind="stable")]))
        return out

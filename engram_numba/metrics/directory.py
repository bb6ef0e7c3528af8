"""Directory mode: a file per process in one directory, one view of them all.

Workers of a pool (multiprocessing, Dask, Ray, MPI ranks) each record into a
file of their own in a shared directory; a reader (:class:`MetricsDirectory`,
``engram-numba metrics serve --dir DIR``) shows the sum::

    ServerMetrics.create_in("/run/engram")      # this process's file
    # or, with no code change in the workers:
    #   export ENGRAM_NUMBA_METRICS_DIR=/run/engram   ->  ServerMetrics() creates it

Files (``<set>`` is the set's name)::

    <set>.<pid>.<start>.<n>.metrics      a process's set: pid, start time in clock
                                         ticks since boot (see .._process), and n,
                                         the process's n-th set of that name
    <set>.archive.<layout>.metrics       what exited processes recorded, one per layout
    .engram-numba.lock                   readers share it, a compactor holds it alone

A new file is created under a temporary name and renamed once valid, so a
reader never sees a half-made one.  A forked child gets a file of its own (it
records nothing into its parent's).

Reading.  Counters, histograms and invalid records are added up over every file
(running, exited and the archive): see :mod:`.merge`.  Gauges come from running
processes only, combined by their ``multiprocess_mode``: ``"pid"`` one series
per process (label ``pid``; ``pid.n`` for a process's n-th set), ``"sum"``,
``"min"``, ``"max"``, or ``"latest"`` (the value of the last write, by the
time-stamp counter every write of such a gauge stores).  Top-k tables are
merged by key.

Compaction (:meth:`MetricsDirectory.compact`; by default before every reading)
moves the files of exited processes into the archive, one at a time, holding
the lock alone: the archive plus that file's counts are written to a temporary
file that replaces the archive in one rename, then the file is removed.  The
archive remembers the last file it absorbed, so a compactor killed between the
rename and the removal leaves nothing counted twice: the next one removes that
file without adding it.  A reader holds the lock shared, so it sees every file
either in the archive or on its own, never both and never neither.  The number
of files stays bounded by the running processes plus one archive per layout.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import time
from contextlib import contextmanager
from dataclasses import replace

import numpy as np

from .. import _process
from .._region import KIND_METRICS, Region, RegionError
from .families import families_dict, merge
from . import _record as R
from .kinds import GAUGE
from .merge import plan_of
from .snapshot import label_values

__all__ = ["DIRECTORY_ENV", "MetricsDirectory", "create_file", "directory_from_env"]

DIRECTORY_ENV = "ENGRAM_NUMBA_METRICS_DIR"
LOCK_NAME = ".engram-numba.lock"
LIVE = _process.file_pattern("metrics")
ARCHIVE = re.compile(rf"^(?P<set>{_process.SET_NAME})\.archive\.(?P<layout>[0-9a-f]{{16}})"
                     rf"\.metrics$")
CREATING = _process.file_pattern("metrics.creating")
ARCHIVE_TMP = re.compile(r"^.+\.archive\.[0-9a-f]{16}\.metrics\.\d+\.tmp$")
# an archive's words that a set's layout leaves unused (see .layout)
ARCHIVE_MARK_OFFSET = 16       # tag of the last file the archive absorbed (see _mark)
ARCHIVE_FILES_OFFSET = 24      # number of files absorbed

log = logging.getLogger(__name__)


def directory_from_env() -> str | None:
    value = os.environ.get(DIRECTORY_ENV, "").strip()
    return value or None


def _resolve(directory) -> str:
    return _process.shared_directory(directory, DIRECTORY_ENV)


def create_file(directory, set_name: str, layout) -> Region:
    """This process's new file for a set in ``directory`` (created if missing, mode 0700)."""
    final = _process.new_file_path(_resolve(directory), set_name, "metrics")
    tmp = final + ".creating"
    region = Region.create(tmp, KIND_METRICS, layout.size, layout.description, layout.alignment)
    region.publish()
    os.rename(tmp, final)
    region.path = final
    return region


@contextmanager
def _locked(directory: str, exclusive: bool):
    path = os.path.join(directory, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except PermissionError:
        if exclusive:
            raise
        fd = os.open(path, os.O_RDONLY)        # a reader without write access still shares it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)                        # releases the lock


def _mark(name: str) -> int:
    """A file name's nonzero 64-bit tag (what an archive remembers of the last file it took)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little") | 1


class _File:
    """A set file attached read-only, kept between readings."""

    __slots__ = ("name", "path", "set", "pid", "start", "n", "archive", "metrics", "inode",
                 "address", "mark")

    def __init__(self, directory, name, match, archive, inode):
        from .metric_set import attach_metrics
        self.name, self.path = name, os.path.join(directory, name)
        self.set, self.archive, self.inode = match["set"], archive, inode
        self.pid = 0 if archive else int(match["pid"])
        self.start = 0 if archive else int(match["start"])
        self.n = 0 if archive else int(match["n"])
        self.metrics = attach_metrics(self.path, writable=False)
        self.address = self.metrics._region.address
        self.mark = _mark(name)

    @property
    def layout(self):
        return self.metrics.layout

    @property
    def words(self) -> np.ndarray:
        return self.metrics._region.data.view(np.uint64)


    @property
    def created_ns(self) -> int:
        return self.metrics._region.created_ns


class DirectorySnapshot:
    """One reading of a directory: its families (what exporters consume).  Gauges with a
    ``pid`` label are marked as changing with the data (``fixed_labels=False``)."""

    def __init__(self, family_lists, timestamp_ns, files, running, skipped=()):
        self._lists = family_lists
        self.timestamp_ns = timestamp_ns
        self.files = files                  # set files read (the archives included)
        self.running = running              # running processes among their writers
        self.skipped = list(skipped)        # files that could not be read (logged)

    def families(self) -> list:
        if not self._lists:
            return []
        return self._lists[0] if len(self._lists) == 1 else merge(self._lists)

    def to_dict(self) -> dict:
        """Plain JSON values (see :func:`~.families.families_dict`)."""
        return {"timestamp_ns": self.timestamp_ns, "files": self.files,
                "running_processes": self.running, "skipped": self.skipped,
                "metrics": families_dict(self.families())}


class MetricsDirectory:
    """The sets of every process that records into ``directory`` (default:
    ``$ENGRAM_NUMBA_METRICS_DIR``), as one set of families.

    Pass it wherever a metric set goes: ``exposition(d)``, ``MetricsServer(d)``,
    ``MetricSetCollector(d)``, OTLP exporters.  ``const_labels`` are added to every
    series.  ``compact=True`` (default) moves exited processes' files into the
    directory's archive (one file per layout, their counts kept) before each
    reading; with ``False`` only :meth:`compact` does.
    """

    def __init__(self, directory=None, *, const_labels=None, compact: bool = True):
        from .metric_set import MetricSet
        self.directory = _resolve(directory)
        if not os.path.isdir(self.directory):
            raise FileNotFoundError(f"no directory {self.directory}")
        self.const_labels = MetricSet._check_const_labels(const_labels)
        self.compact_on_read = bool(compact)
        self._files: dict = {}
        self._skipped: set = set()
        self._watch = _process.Watcher()

    @property
    def render_key(self):
        """What renderers may cache sample prefixes under: the layouts read last time."""
        return ("directory", self.directory, self.const_labels,
                tuple(sorted({f.layout.hash for f in self._files.values()})))

    def _lock(self, exclusive: bool):
        """The directory's lock: shared by readers, held alone by a compactor."""
        return _locked(self.directory, exclusive)

    # -- reading ----------------------------------------------------------------

    def _scan(self):
        """The directory's set files, attached (cached across readings), and the names of
        those that could not be read (logged; they are left alone)."""
        seen, skipped = {}, []
        for name in os.listdir(self.directory):
            live = LIVE.match(name)
            archive = None if live else ARCHIVE.match(name)
            if live is None and archive is None:
                continue
            f = self._files.get(name)
            if f is not None and live is not None:
                seen[name] = f               # a process's file name is never reused
                continue
            try:
                inode = os.stat(os.path.join(self.directory, name)).st_ino
                if f is None or f.inode != inode:
                    f = _File(self.directory, name, live or archive, archive is not None, inode)
            except FileNotFoundError:
                continue                     # an exited process's file, just compacted
            except (RegionError, ValueError, OSError) as exc:
                if name not in self._skipped:
                    log.warning("%s: skipped: %s", name, exc)
                skipped.append(name)
                continue
            seen[name] = f
        self._files = seen
        self._skipped = set(skipped)
        return list(seen.values()), skipped

    def collect(self) -> DirectorySnapshot:
        """Read every file (compacting first, unless ``compact=False``)."""
        running: dict = {}
        if self.compact_on_read and os.access(self.directory, os.W_OK):
            self._compact(running)          # (a reader without write access only reads)
        with self._lock(exclusive=False):
            files, skipped = self._scan()
            now = time.time_ns()
            unknown = {(f.pid, f.start) for f in files if not f.archive} - running.keys()
            running.update(self._watch.check(unknown))
            groups: dict = {}
            for f in files:
                groups.setdefault(f.layout.hash, []).append(f)
            lists = [self._group(fs, running, now) for _, fs in sorted(groups.items())]
        return DirectorySnapshot(lists, now, len(files), sum(running.values()), skipped)

    def _group(self, files, running, now) -> list:
        from .snapshot import MetricSetSnapshot
        archives = [f for f in files if f.archive]
        if archives:    # a compactor that died before removing the last file it took
            taken = int(archives[0].words[ARCHIVE_MARK_OFFSET // 8])
            files = [f for f in files if f.archive or f.mark != taken]
        layout = files[0].layout
        plan = plan_of(layout)
        total = plan.combine(plan.nets([f.address for f in files]))
        invalid = plan.invalid_records([f.address for f in files])
        alive = sorted((f for f in files if not f.archive and running[(f.pid, f.start)]),
                       key=lambda f: (f.pid, f.n))
        values = plan.gauge_values([f.address for f in alive]) if alive else {}
        gauges = {}
        for m in plan.gauges:
            mode = m.spec.multiprocess_mode
            if mode in ("pid",) or not alive:
                continue
            rows = values[m.attr]
            if mode == "sum":
                gauges[m.attr] = rows.sum(axis=0)
            elif mode == "min":
                gauges[m.attr] = rows.min(axis=0)
            elif mode == "max":
                gauges[m.attr] = rows.max(axis=0)
            else:                                           # latest: the last stamped write
                stamps = np.array([[int(f.words[(m.shared_offset + k * m.shared_stride
                                                 + R.G_STAMP) // 8]) for k in range(m.spec.slots)]
                                   for f in alive], dtype=np.uint64)
                gauges[m.attr] = rows[stamps.argmax(axis=0), np.arange(m.spec.slots)]
        tables = plan.tables([f.address for f in files])
        words = plan.words_of(total, invalid, gauges, tables)
        snap = MetricSetSnapshot(files[0].metrics.set_name, layout, words, timestamp_ns=now,
                                 start_ns=min(f.created_ns for f in files),
                                 const_labels=self.const_labels)
        attr_of = {m.spec.name: m.attr for m in plan.gauges}
        c_values = tuple(v for _, v in self.const_labels)
        n_const = len(c_values)
        out = []
        for fam in snap.families():
            spec = fam.spec
            if spec is None or spec.kind is not GAUGE:
                out.append(fam)
            elif not alive:                     # gauges come from running processes only
                out.append(replace(fam, points=()))
            elif spec.multiprocess_mode == "pid":
                points = []
                rows = values[attr_of[spec.name]].tolist()
                for f, row in zip(alive, rows):
                    who = str(f.pid) if f.n == 0 else f"{f.pid}.{f.n}"
                    points.extend((c_values + (who,) + tuple(labels), v)
                                  for labels, v in zip(label_values(spec), row))
                names = fam.label_names[:n_const] + ("pid",) + fam.label_names[n_const:]
                out.append(replace(fam, label_names=names, points=tuple(points),
                                   fixed_labels=False))
            else:
                out.append(fam)
        return out

    # -- compaction -------------------------------------------------------------

    def compact(self) -> dict:
        """Move the files of exited processes into the archives; returns what it did:
        ``{"compacted": files absorbed, "removed": leftovers removed, "left": exited files
        left in place because their archive is unreadable (logged; they are still read and
        counted), "files": set files in the directory}``."""
        return self._compact({})

    def _compact(self, running: dict) -> dict:
        """:meth:`compact`, filling ``running`` with ``(pid, start) -> running?``."""
        from .metric_set import attach_metrics
        done = {"compacted": 0, "removed": 0, "left": 0}
        with self._lock(exclusive=True):
            names = sorted(os.listdir(self.directory))
            for name in names:
                stale = ARCHIVE_TMP.match(name)        # a compactor died writing it
                creating = CREATING.match(name)
                if creating and not _process.running(int(creating["pid"]),
                                                     int(creating["start"])):
                    stale = creating                   # its process died creating it
                if stale:
                    _unlink(os.path.join(self.directory, name))
                    done["removed"] += 1
            lives = [(name, (int(m["pid"]), int(m["start"])))
                     for name, m in ((n, LIVE.match(n)) for n in names) if m]
            running.update(self._watch.check({who for _, who in lives} - running.keys()))
            for name, who in lives:
                if running[who]:
                    continue
                path = os.path.join(self.directory, name)
                try:
                    src = attach_metrics(path, writable=False)
                except FileNotFoundError:
                    continue
                except RegionError:
                    continue                            # not ours to judge: left alone
                taken = self._absorb(src, name)
                done["left" if taken is None else "compacted" if taken else "removed"] += 1
                self._files.pop(name, None)
            done["files"] = sum(1 for n in os.listdir(self.directory)
                                if LIVE.match(n) or ARCHIVE.match(n))
        return done

    def _absorb(self, src, name):
        """Add one exited process's file to its archive, then remove it.  False when the
        archive had taken it already (a compactor died before removing it); None when the
        archive cannot be read (the file stays, and is read as it is)."""
        from .metric_set import attach_metrics
        layout = src.layout
        plan = plan_of(layout)
        archive_path = os.path.join(self.directory,
                                    f"{src.set_name}.archive.{layout.hash[:16]}.metrics")
        mark = _mark(name)
        arch = None
        if os.path.exists(archive_path):
            try:
                arch = attach_metrics(archive_path, writable=False)
                if arch.layout.description != layout.description:
                    raise RegionError("its layout is not that of the files it archives")
            except (RegionError, ValueError, OSError) as exc:
                log.error("%s: unreadable archive, exited processes' files stay as they are "
                          "until it is repaired or removed: %s", archive_path, exc)
                return None
            arch_words = arch._region.data.view(np.uint64)
            if int(arch_words[ARCHIVE_MARK_OFFSET // 8]) == mark:
                _unlink(src._region.path)
                return False
        addresses = [x._region.address for x in (src, arch) if x is not None]
        total = plan.combine(plan.nets(addresses))
        invalid = plan.invalid_records(addresses)
        tables = plan.tables(addresses)
        words = plan.words_of(total, invalid, None, tables)
        words[ARCHIVE_MARK_OFFSET // 8] = np.uint64(mark)
        absorbed = int(arch_words[ARCHIVE_FILES_OFFSET // 8]) if arch is not None else 0
        words[ARCHIVE_FILES_OFFSET // 8] = np.uint64(absorbed + 1)
        created = min(src._region.created_ns,
                      arch._region.created_ns if arch is not None else src._region.created_ns)
        tmp = f"{archive_path}.{os.getpid()}.tmp"
        _unlink(tmp)
        region = Region.create(tmp, KIND_METRICS, layout.size, layout.description,
                               layout.alignment)
        used = (layout.hot_offset + layout.copy_size) // 8     # the rest stays zero (sparse)
        region.data.view(np.uint64)[:used] = words[:used]
        region._header["created_ns"] = created
        region.publish()
        region.close()
        os.replace(tmp, archive_path)
        _unlink(src._region.path)
        return True


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

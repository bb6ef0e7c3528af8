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
    <set>.archive.<layout>.metrics.taken the files the archive took in its last step
                                         (only while a compactor removes them)
    .engram-numba.lock                   readers share it, a compactor holds it alone

A new file is created under a temporary name and renamed once valid, so a
reader never sees a half-made one; its writer holds an exclusive ``flock`` on
it for as long as it lives (see .._process: liveness by what a process holds,
right in any PID namespace; files of older writers, which hold none, are judged
by pid and start time).  A forked child gets a file of its own (it records
nothing into its parent's).

Reading.  Counters, histograms and invalid records are added up over every file
(running, exited and the archive): see :mod:`.merge`.  Gauges come from running
processes only, combined by their ``multiprocess_mode``: ``"pid"`` one series
per process (label ``pid``; ``pid.n`` for a process's n-th set), ``"sum"``,
``"min"``, ``"max"``, or ``"latest"`` (the value of the last write, by the
time-stamp counter every write of such a gauge stores).  Top-k tables are
merged by key.  Files of several versions of one set (a rolling upgrade that
adds a metric) are read together: a metric declared alike by several versions
is added up over all their files, the others come from the files that have
them; a metric declared differently by two versions is shown as the newest
version declares it (the other is reported).

Every entry is judged on its own: one that cannot be read (damaged, foreign,
truncated, of another set than its name says, a symbolic link, a directory, a
FIFO, a socket, unreadable) is skipped, logged once with the reason, listed in
the reading (:attr:`DirectorySnapshot.skipped`) and counted by the gauge
``engram_directory_skipped_files{directory}``; the rest are read.  Nothing
but regular files is ever opened, and nothing is opened in a way that can
block.  Files are read from copies made with ``pread`` (see .._region), never
through their mappings: a file that shrinks (truncated by someone), even
during a reading, is skipped with the reason instead of killing the reader
with SIGBUS.  A reader without write access (a read-only mount) reads without
compacting.

Compaction (:meth:`MetricsDirectory.compact`; by default before every reading,
for at most ``compact_budget`` seconds) moves the files of exited processes
into the archive of their layout, holding the lock alone, in bulk: up to 256
files at a time are added to the archive, written to a temporary file that
replaces the archive in one rename, and then removed.  Before that rename the
names of the files it takes are written to ``<archive>.taken`` together with a
tag that the new archive also holds, so a compactor killed between the rename
and the removals leaves nothing counted twice: readers skip the files the
archive holds, and the next compactor removes them without adding them.  A
reader holds the lock shared, so it sees every file either in the archive or on
its own, never both and never neither.  Files left for a later compaction (the
budget ran out) are read as they are, exactly.  The number of files stays
bounded by the running processes plus one archive per layout.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from dataclasses import replace

import numpy as np

from .. import _process
from .._region import FLAG_WRITER_LOCK, KIND_METRICS, Region, RegionError, not_regular, \
    open_regular, read_copy
from ..errors import LockUnavailable
from ._files import DIRECTORY_ENV, LOCK_NAME, create_file, directory_from_env
from ._files import locked as _locked, reason as _reason, resolve as _resolve, \
    unlink as _unlink
from .families import Family, families_dict, merge
from .kinds import GAUGE
from .merge import plan_of
from .snapshot import label_values

__all__ = ["DIRECTORY_ENV", "MetricsDirectory", "DirectorySnapshot", "create_file",
           "directory_from_env", "SKIPPED_FAMILY"]

LIVE = _process.file_pattern("metrics")
ARCHIVE = re.compile(rf"^(?P<set>{_process.SET_NAME})\.archive\.(?P<layout>[0-9a-f]{{16}})"
                     rf"\.metrics$")
TAKEN = re.compile(rf"^(?P<archive>{_process.SET_NAME}\.archive\.[0-9a-f]{{16}}\.metrics)"
                   rf"\.taken$")
CREATING = _process.file_pattern("metrics.creating")
ARCHIVE_TMP = re.compile(r"^.+\.archive\.[0-9a-f]{16}\.metrics(\.taken)?\.\d+\.tmp$")
# an archive's words that a set's layout leaves unused (see .layout)
ARCHIVE_MARK_OFFSET = 16       # tag of the last file (or batch of files) the archive absorbed
ARCHIVE_FILES_OFFSET = 24      # number of files absorbed
COMPACT_BATCH = 256            # files added to an archive in one rewrite
TAKEN_HEADER = "engram-numba taken 1"
MAX_TAKEN_BYTES = 1 << 20
SKIPPED_FAMILY = "engram_directory_skipped_files"
SKIPPED_HELP = ("Entries of a metrics directory that its last reading could not use "
                "(damaged, foreign, truncated or of another set than their name says, not "
                "regular files, an unusable lock file); each is logged once with the reason")

log = logging.getLogger(__name__)


def _mark(name: str) -> int:
    """A file name's nonzero 64-bit tag (what an archive remembers of the last file it took)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little") | 1


def _batch_mark(names) -> int:
    """The tag of a batch of files taken in one step (its names, sorted)."""
    return _mark("\n".join(sorted(names)) + "\n#batch")


class _File:
    """A set file as a reader knows it between readings: its name, layout and header.  It
    is read with :func:`~.._region.read_copy`, never mapped (a mapping would also hold a
    descriptor: a reader of 3,000 files would hold 3,000)."""

    __slots__ = ("name", "path", "set", "pid", "start", "n", "archive", "layout", "set_name",
                 "inode", "flags", "data_offset", "size", "alignment", "created_ns", "copy",
                 "mark", "dead", "closed")

    def __init__(self, directory, name, match, archive):
        from .metric_set import attach_metrics
        self.name, self.path = name, os.path.join(directory, name)
        self.set, self.archive = match["set"], archive
        self.pid = 0 if archive else int(match["pid"])
        self.start = 0 if archive else int(match["start"])
        self.n = 0 if archive else int(match["n"])
        m = attach_metrics(self.path, writable=False, follow_symlinks=False)
        try:
            if m.set_name != self.set:
                raise RegionError(f"{name}: holds set {m.set_name[:80]!r}, not the set its "
                                  f"name says")
            r = m._region
            self.layout, self.set_name = m.layout, m.set_name
            self.inode, self.flags, self.created_ns = r.inode, r.flags, r.created_ns
            self.data_offset, self.size, self.alignment = r.data_offset, r.size, r.alignment
        finally:
            m.close()                        # the mapping and the descriptor it holds
        self.copy = None                    # the data read for the current reading
        self.mark = _mark(name)
        self.dead = False                   # its writer ended (it never comes back)
        self.closed = False

    def load(self) -> None:
        """Read the file's data for this reading (a RegionError if it shrank or was
        replaced)."""
        self.copy = read_copy(self.path, self.inode, self.data_offset, self.size,
                              self.alignment)

    def shrunk(self, file_size: int) -> bool:
        return file_size < self.data_offset + self.size

    @property
    def address(self) -> int:
        return self.copy.ctypes.data

    @property
    def words(self) -> np.ndarray:
        return self.copy.view(np.uint64)

    def close(self):
        self.copy = None
        self.closed = True


class DirectorySnapshot:
    """One reading of a directory: its families (what exporters consume).  Gauges with a
    ``pid`` label are marked as changing with the data (``fixed_labels=False``)."""

    def __init__(self, families, timestamp_ns, files, running, skipped=(), problems=()):
        self._families = families
        self.timestamp_ns = timestamp_ns
        self.files = files                  # set files read (the archives included)
        self.running = running              # running processes among their writers
        self.skipped = list(skipped)        # entries that could not be read (logged)
        self.problems = dict(problems)      # entry -> why it was skipped, and other troubles

    def families(self) -> list:
        return list(self._families)

    def to_dict(self) -> dict:
        """Plain JSON values (see :func:`~.families.families_dict`)."""
        return {"timestamp_ns": self.timestamp_ns, "files": self.files,
                "running_processes": self.running, "skipped": self.skipped,
                "problems": self.problems, "metrics": families_dict(self.families())}


class MetricsDirectory:
    """The sets of every process that records into ``directory`` (default:
    ``$ENGRAM_NUMBA_METRICS_DIR``), as one set of families.

    Pass it wherever a metric set goes: ``exposition(d)``, ``MetricsServer(d)``,
    ``MetricSetCollector(d)``, OTLP exporters.  ``const_labels`` are added to every
    series.  ``compact=True`` (default) compacts exited processes' files before
    each reading, for at most ``compact_budget`` seconds (what is left is read as
    it is and compacted by later readings); with ``False`` only :meth:`compact`
    does.  See the module docstring.
    """

    def __init__(self, directory=None, *, const_labels=None, compact: bool = True,
                 compact_budget: float = 1.0):
        from .metric_set import MetricSet
        self.directory = _resolve(directory)
        if not os.path.isdir(self.directory):
            raise FileNotFoundError(f"no directory {self.directory}")
        self.const_labels = MetricSet._check_const_labels(const_labels)
        self.compact_on_read = bool(compact)
        if isinstance(compact_budget, bool) or not isinstance(compact_budget, (int, float)) \
                or not compact_budget > 0:
            raise ValueError(f"compact_budget must be a positive number of seconds, got "
                             f"{compact_budget!r}")
        self.compact_budget = float(compact_budget)
        self._files: dict = {}
        self._reported: dict = {}           # entry -> the reason last logged
        self._watch = _process.Watcher()

    @property
    def render_key(self):
        """What renderers may cache sample prefixes under: the layouts read last time."""
        return ("directory", self.directory, self.const_labels,
                tuple(sorted({f.layout.hash for f in self._files.values()})))

    def _lock(self, exclusive: bool):
        """The directory's lock: shared by readers, held alone by a compactor."""
        return _locked(self.directory, exclusive)

    def _log_problems(self, problems: dict, forget_others: bool) -> None:
        """Log each entry's problem once (again only when its reason changes)."""
        if forget_others:
            for entry in [e for e in self._reported if e not in problems]:
                del self._reported[entry]
        for entry, reason in problems.items():
            if self._reported.get(entry) != reason:
                log.warning("%s: skipped: %s", os.path.join(self.directory, entry), reason)
                self._reported[entry] = reason

    # -- files ------------------------------------------------------------------

    def _attached(self, name, match, archive, problems):
        """The entry ``name`` attached (cached while it is the same, intact file), or None
        with the reason in ``problems``; None without a reason: it is gone."""
        path = os.path.join(self.directory, name)
        f = self._files.get(name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self._drop(name)
            return None
        except OSError as exc:
            self._drop(name)
            problems[name] = _reason(exc)
            return None
        what = not_regular(st.st_mode)
        if what is not None:
            self._drop(name)
            problems[name] = f"{what}, not a regular file"
            return None
        if f is not None and f.inode != (st.st_dev, st.st_ino):
            self._drop(name)                 # replaced (an archive rewritten)
            f = None
        if f is not None:
            if f.shrunk(st.st_size):
                problems[name] = (f"shrank to {st.st_size} bytes since attached "
                                  f"({f.data_offset + f.size}): truncated by someone else")
                self._drop(name)
                return None
            return f
        try:
            f = _File(self.directory, name, match, archive)
        except FileNotFoundError:
            return None
        except Exception as exc:  # any odd entry: judged on its own, never the whole reading
            problems[name] = _reason(exc)
            return None
        self._files[name] = f
        return f

    def _drop(self, name):
        f = self._files.pop(name, None)
        if f is not None:
            f.close()

    def _alive(self, files) -> dict:
        """``{name: writer alive?}`` for live-named files: by the writer's lock where it
        holds one, else by pid and start time (see .._process)."""
        out, legacy = {}, []
        for f in files:
            if f.dead:
                out[f.name] = False
            elif f.flags & FLAG_WRITER_LOCK:
                out[f.name] = _process.held(f.path) is not False    # unknown: may be alive
            else:
                legacy.append(f)
        if legacy:
            running = self._watch.check({(f.pid, f.start) for f in legacy})
            for f in legacy:
                out[f.name] = running[(f.pid, f.start)]
        for f in files:
            if not out[f.name]:
                f.dead = True
        return out

    # -- reading ----------------------------------------------------------------

    def collect(self) -> DirectorySnapshot:
        """Read every file (compacting first, unless ``compact=False``).  No entry of the
        directory can make it fail: see the module docstring."""
        problems: dict = {}
        if self.compact_on_read and os.access(self.directory, os.W_OK):
            try:                             # (a reader without write access only reads)
                self._compact(budget=self.compact_budget, problems=problems)
            except LockUnavailable:
                pass                         # reported by the reading's own attempt
            except OSError as exc:           # e.g. a read-only mount that os.access missed
                log.debug("%s: not compacted: %s", self.directory, exc)
        with self._lock(exclusive=False) as lock_problem:
            if lock_problem:
                problems[LOCK_NAME] = lock_problem.split(": ", 1)[1]
            files = []
            taken_lists = {}
            for name in sorted(os.listdir(self.directory)):
                live = LIVE.match(name)
                archive = None if live else ARCHIVE.match(name)
                if live is None and archive is None:
                    journal = TAKEN.match(name)
                    if journal:
                        taken_lists[journal["archive"]] = name
                    continue
                f = self._attached(name, live or archive, archive is not None, problems)
                if f is not None:
                    files.append(f)
            seen = {f.name for f in files}
            for name in [n for n in self._files if n not in seen]:
                self._drop(name)
            now = time.time_ns()
            alive = self._alive([f for f in files if not f.archive])
            for f in files:                  # copies: a file truncated now is an error
                try:
                    f.load()
                except (RegionError, OSError) as exc:
                    problems[f.name] = _reason(exc)
                    self._drop(f.name)
            files = [f for f in files if not f.closed]
            files = self._without_taken(files, taken_lists, problems)
            fams = self._families(files, alive, now, problems)
            for f in files:
                f.copy = None
        self._log_problems(problems, forget_others=True)
        skipped = sorted(problems)
        fams.append(self._skipped_family(len(skipped), now))
        running = {(f.pid, f.start) for f in files if not f.archive and alive.get(f.name)}
        return DirectorySnapshot(fams, now, len(files), len(running), skipped, problems)

    def _without_taken(self, files, taken_lists, problems) -> list:
        """Drop files an archive has taken already (a compactor died before removing them)."""
        taken = set()
        for f in files:
            if not f.archive:
                continue
            mark = int(f.words[ARCHIVE_MARK_OFFSET // 8])
            taken |= {g.name for g in files if not g.archive and g.set == f.set
                      and g.mark == mark}
            journal = taken_lists.get(f.name)
            if journal is not None:
                names = self._read_taken(journal, mark, problems)
                taken |= names
        return [f for f in files if f.name not in taken]

    def _read_taken(self, journal: str, mark: int, problems=None) -> set:
        """The names in an archive's ``.taken`` journal if it is the archive's last step
        (its tag is the archive's), else an empty set."""
        path = os.path.join(self.directory, journal)
        try:
            fd = open_regular(path, os.O_RDONLY, follow_symlinks=False)
            try:
                raw = os.read(fd, MAX_TAKEN_BYTES + 1)
            finally:
                os.close(fd)
            lines = raw.decode("utf-8").splitlines()
            if len(raw) > MAX_TAKEN_BYTES or len(lines) < 2 or lines[0] != TAKEN_HEADER:
                raise ValueError("not a journal of taken files")
            tag = int(lines[1], 16)
        except FileNotFoundError:
            return set()
        except (OSError, RegionError, ValueError) as exc:
            if problems is not None:
                problems[journal] = _reason(exc)
            return set()
        return set(lines[2:]) if tag == mark else set()

    def _families(self, files, alive, now, problems) -> list:
        groups: dict = {}
        for f in files:
            groups.setdefault(f.layout.hash, []).append(f)
        readings = []
        for _, fs in sorted(groups.items()):
            try:
                readings.append(_Reading(fs, alive))
            except Exception as exc:  # a layout nobody can read: its files are reported
                for f in fs:
                    problems[f.name] = f"unreadable: {_reason(exc)}"
        by_set: dict = {}
        for r in readings:
            by_set.setdefault(r.set_name, []).append(r)
        out = []
        for name in sorted(by_set):
            rs = sorted(by_set[name], key=lambda r: (-r.newest, r.layout.hash))
            try:
                _fold(rs, problems)
                fams = [f for r in rs for f in r.families(self.const_labels, now)]
            except Exception as exc:  # never the whole reading
                for r in rs:
                    for f in r.files:
                        problems[f.name] = f"unreadable: {_reason(exc)}"
                continue
            out = _merge_tolerant(out, fams, problems)
        return out

    def _skipped_family(self, count: int, now: int) -> Family:
        names = tuple(k for k, _ in self.const_labels) + ("directory",)
        values = tuple(v for _, v in self.const_labels) + (self.directory,)
        return Family(SKIPPED_FAMILY, GAUGE, SKIPPED_HELP, names, ((values, count),),
                      timestamp_ns=now, start_ns=now)

    # -- compaction -------------------------------------------------------------

    def compact(self) -> dict:
        """Move the files of exited processes into the archives; returns what it did:
        ``{"compacted": files absorbed, "removed": leftovers removed, "left": exited files
        left in place because their archive is unreadable or cannot be written (logged;
        they are still read and counted), "files": set files in the directory}``."""
        problems: dict = {}
        done = self._compact(problems=problems)
        self._log_problems(problems, forget_others=False)
        done.pop("deferred", None)
        return done

    def _compact(self, budget: float | None = None, problems: dict | None = None) -> dict:
        """:meth:`compact`, stopping after ``budget`` seconds (the rest is ``deferred``)."""
        started = time.monotonic()
        problems = {} if problems is None else problems
        done = {"compacted": 0, "removed": 0, "left": 0, "deferred": 0}
        with self._lock(exclusive=True):
            names = sorted(os.listdir(self.directory))
            for name in names:
                stale = ARCHIVE_TMP.match(name)        # a compactor died writing it
                creating = CREATING.match(name)
                if creating and self._creator_gone(name, creating):
                    stale = creating                   # its process died creating it
                if stale and _unlink(os.path.join(self.directory, name)):
                    done["removed"] += 1
            for name in names:
                journal = TAKEN.match(name)
                if journal:
                    done["removed"] += self._finish_taken(name, journal["archive"])
            names = sorted(os.listdir(self.directory))
            files = []
            for name in names:
                m = LIVE.match(name)
                if m is not None:
                    f = self._attached(name, m, False, problems)
                    if f is not None:
                        files.append(f)
            alive = self._alive(files)
            exited: dict = {}
            for f in files:
                if not alive[f.name]:
                    exited.setdefault((f.set, f.layout.hash), []).append(f)
            steps = 0
            for (set_name, _), group in sorted(exited.items()):
                for i in range(0, len(group), COMPACT_BATCH):
                    batch = group[i:i + COMPACT_BATCH]
                    if steps and budget is not None and time.monotonic() - started > budget:
                        done["deferred"] += len(batch)
                        continue
                    steps += 1
                    taken, removed, left = self._absorb(set_name, batch)
                    done["compacted"] += taken
                    done["removed"] += removed
                    done["left"] += left
            done["files"] = sum(1 for n in os.listdir(self.directory)
                                if LIVE.match(n) or ARCHIVE.match(n))
        return done

    def _creator_gone(self, name, match) -> bool:
        """Whether a ``.creating`` file's process died making it.  Files are made under
        the shared lock, which a compactor holds alone: one whose writer's lock is free
        was left by a dead process; one without the writer-lock flag (an older writer, or
        one that died before writing the header) is judged by its pid as well."""
        path = os.path.join(self.directory, name)
        if _process.held(path) is not False:
            return False
        try:
            fd = open_regular(path, os.O_RDONLY, follow_symlinks=False)
            try:
                flags = int.from_bytes(os.pread(fd, 4, 20), "little")
            finally:
                os.close(fd)
        except (OSError, RegionError):
            flags = 0
        if flags & FLAG_WRITER_LOCK:
            return True
        return not _process.running(int(match["pid"]), int(match["start"]))

    def _finish_taken(self, journal: str, archive_name: str) -> int:
        """Finish (or forget) the step of a compactor that died: remove the files its
        archive took, then the journal; returns the files removed."""
        from .metric_set import attach_metrics
        mark = None
        try:
            arch = attach_metrics(os.path.join(self.directory, archive_name), writable=False,
                                  follow_symlinks=False)
            try:
                mark = int(arch._region.read_copy().view(np.uint64)[ARCHIVE_MARK_OFFSET // 8])
            finally:
                arch.close()
        except (OSError, ValueError):
            mark = None
        removed = 0
        if mark is not None:
            set_name = ARCHIVE.match(archive_name)["set"]
            for name in self._read_taken(journal, mark):
                m = LIVE.match(name)
                if m and m["set"] == set_name and _unlink(os.path.join(self.directory, name)):
                    self._drop(name)
                    removed += 1
        _unlink(os.path.join(self.directory, journal))
        return removed

    def _absorb(self, set_name: str, batch) -> tuple:
        """Add exited processes' files (one layout) to their archive, then remove them.
        Returns (files absorbed, files removed that the archive held already, files
        left because the archive cannot be read or written; logged)."""
        from .metric_set import attach_metrics
        layout = batch[0].layout
        plan = plan_of(layout)
        archive_name = f"{set_name}.archive.{layout.hash[:16]}.metrics"
        archive_path = os.path.join(self.directory, archive_name)
        arch = None
        try:
            if os.path.lexists(archive_path):
                arch = attach_metrics(archive_path, writable=False, follow_symlinks=False)
                if arch.layout.description != layout.description:
                    arch.close()
                    raise RegionError("its layout is not that of the files it archives")
            arch_words = None if arch is None else arch._region.read_copy().view(np.uint64)
        except (RegionError, ValueError, OSError) as exc:
            if arch is not None:
                arch.close()
            if self._reported.get(archive_name) != "unreadable archive":
                log.error("%s: unreadable archive, exited processes' files stay as they are "
                          "until it is repaired or removed: %s", archive_path, exc)
                self._reported[archive_name] = "unreadable archive"
            return 0, 0, len(batch)
        removed = 0
        if arch is not None:
            held = int(arch_words[ARCHIVE_MARK_OFFSET // 8])
            for f in [f for f in batch if f.mark == held]:    # taken by a dead compactor
                if _unlink(f.path):
                    removed += 1
                self._drop(f.name)
            batch = [f for f in batch if f.mark != held]
        loaded = []
        for f in batch:
            try:
                f.load()
                loaded.append(f)
            except (RegionError, OSError):   # shrunk or replaced: reported by readings
                pass
        batch = loaded
        if not batch:
            if arch is not None:
                arch.close()
            return 0, removed, 0
        names = [f.name for f in batch]
        mark = batch[0].mark if len(batch) == 1 else _batch_mark(names)
        addresses = [f.address for f in batch] + ([arch_words.ctypes.data] if arch else [])
        total = plan.combine(plan.nets(addresses))
        invalid = plan.invalid_records(addresses)
        tables = plan.tables(addresses)
        words = plan.words_of(total, invalid, None, tables)
        words[ARCHIVE_MARK_OFFSET // 8] = np.uint64(mark)
        absorbed = int(arch_words[ARCHIVE_FILES_OFFSET // 8]) if arch is not None else 0
        words[ARCHIVE_FILES_OFFSET // 8] = np.uint64(absorbed + len(batch))
        created = min([f.created_ns for f in batch]
                      + ([arch._region.created_ns] if arch is not None else []))
        if arch is not None:
            arch.close()
        journal = f"{archive_path}.taken"
        tmp = f"{archive_path}.{os.getpid()}.tmp"
        try:
            if len(batch) > 1:
                _write_atomically(journal, f"{TAKEN_HEADER}\n{mark:016x}\n"
                                  + "".join(n + "\n" for n in names))
            _unlink(tmp)
            region = Region.create(tmp, KIND_METRICS, layout.size, layout.description,
                                   layout.alignment)
            used = (layout.hot_offset + layout.copy_size) // 8  # the rest stays zero (sparse)
            region.data.view(np.uint64)[:used] = words[:used]
            region._header["created_ns"] = created
            region.publish()
            region.close()
            os.replace(tmp, archive_path)
        except OSError as exc:           # e.g. a set name too long for an archive's name
            _unlink(tmp)
            _unlink(journal)
            for f in batch:
                f.copy = None
            if self._reported.get(archive_name) != "archive not written":
                log.error("%s: cannot write the archive, exited processes' files stay as they "
                          "are: %s", archive_path, _reason(exc))
                self._reported[archive_name] = "archive not written"
            return 0, removed, len(batch)
        for f in batch:
            _unlink(f.path)
            self._drop(f.name)
        _unlink(journal)
        return len(batch), removed, 0


class _Reading:
    """The files of one layout read together: the words a snapshot is built from."""

    def __init__(self, files, alive):
        archives = [f for f in files if f.archive]
        self.files = files
        self.layout = files[0].layout
        self.plan = plan = plan_of(self.layout)
        self.set_name = files[0].set_name
        addresses = [f.address for f in files]
        self.total = plan.combine(plan.nets(addresses))
        self.invalid = plan.invalid_records(addresses)
        self.tables = plan.tables(addresses)
        self.alive = sorted((f for f in files if not f.archive and alive.get(f.name)),
                            key=lambda f: (f.pid, f.n, f.start))
        self.start_ns = min(f.created_ns for f in files)
        live = [f for f in files if not f.archive] or archives
        self.newest = max(f.created_ns for f in live)
        values = plan.gauge_values([f.address for f in self.alive]) if self.alive else {}
        self.gauges = {}       # attr -> per slot values (sum, min, max, latest)
        self.stamps = {}       # attr -> per slot stamp of the latest write (latest)
        self.rows = {}         # attr -> [(file, per slot values)] (pid)
        for m in plan.gauges:
            if not self.alive:
                continue
            rows = values[m.attr]
            combined = m.spec.combine(m, rows, self.alive)      # by its multiprocess_mode
            if combined is None:                                # pid: a series per process
                self.rows[m.attr] = list(zip(self.alive, rows.tolist()))
            else:
                self.gauges[m.attr], stamps = combined
                if stamps is not None:
                    self.stamps[m.attr] = stamps
        self.folded = set()    # attrs whose values went to another version's reading
        self.owns_invalid = True

    def by_name(self) -> dict:
        return {m.spec.name: m for m in self.layout.metrics.values()}

    def fold(self, other, mine, theirs) -> None:
        """Add ``other``'s metric ``theirs`` (declared as ``mine``) into this reading."""
        plan, n = self.plan, mine.block_bytes // 8
        a, b = mine.block_offset // 8, theirs.block_offset // 8
        here = np.arange(a, a + n)
        lane0 = np.isin(here, plan.lane0)
        extremes = np.isin(here, plan.extremes)
        x, y = self.total[a:a + n], other.total[b:b + n]
        out = x + y
        if lane0.any():
            out[lane0] = (x[lane0].view(np.float64) + y[lane0].view(np.float64)).view(np.uint64)
        if extremes.any():
            out[extremes] = np.maximum(x[extremes], y[extremes])
        self.total[a:a + n] = out
        attr, their = mine.attr, theirs.attr
        if mine.spec.kind is GAUGE:
            if their in other.rows:                             # pid
                self.rows[attr] = self.rows.get(attr, []) + other.rows[their]
            elif their in other.gauges:
                theirs_v = (other.gauges[their], other.stamps.get(their))
                if attr in self.gauges:
                    theirs_v = mine.spec.fold((self.gauges[attr], self.stamps.get(attr)),
                                              theirs_v)
                self.gauges[attr] = theirs_v[0]
                if theirs_v[1] is not None:
                    self.stamps[attr] = theirs_v[1]
        if their in other.tables:
            counts = dict(self.tables.get(attr, []))
            for key, c in other.tables[their]:
                counts[key] = counts.get(key, 0) + c
            self.tables[attr] = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        other.folded.add(their)

    def families(self, const_labels, now) -> list:
        from .snapshot import MetricSetSnapshot
        plan = self.plan
        words = plan.words_of(self.total, self.invalid, self.gauges, self.tables)
        snap = MetricSetSnapshot(self.set_name, self.layout, words, timestamp_ns=now,
                                 start_ns=self.start_ns, const_labels=const_labels)
        dropped = {self.layout.metrics[a].spec.name for a in self.folded}
        attr_of = {m.spec.name: m.attr for m in plan.gauges}
        c_values = tuple(v for _, v in const_labels)
        n_const = len(c_values)
        out = []
        for fam in snap.families():
            spec = fam.spec
            if spec is not None and spec.name in dropped:
                continue
            if spec is None:
                base = fam.name[:-len("_excluded_total")] if fam.name.endswith(
                    "_excluded_total") else None
                if base in dropped:
                    continue
                if fam.name == f"{self.set_name}_invalid_records_total" and not self.owns_invalid:
                    continue
                out.append(fam)
            elif spec.kind is not GAUGE:
                out.append(fam)
            elif spec.multiprocess_mode == "pid":
                points = []
                for f, row in self.rows.get(attr_of[spec.name], []):
                    who = str(f.pid) if f.n == 0 else f"{f.pid}.{f.n}"
                    points.extend((c_values + (who,) + tuple(labels), v)
                                  for labels, v in zip(label_values(spec), row))
                names = fam.label_names[:n_const] + ("pid",) + fam.label_names[n_const:]
                out.append(replace(fam, label_names=names, points=tuple(points),
                                   fixed_labels=False))
            elif attr_of[spec.name] not in self.gauges:     # from running processes only
                out.append(replace(fam, points=()))
            else:
                out.append(fam)
        return out


def _same_metric(a, b) -> bool:
    """Whether two versions declare a metric alike (its help text aside)."""
    da, db = dict(a.spec.describe()), dict(b.spec.describe())
    da.pop("help", None)
    db.pop("help", None)
    return da == db and a.slot_bytes == b.slot_bytes


def _fold(readings, problems) -> None:
    """Fold the readings of several versions of one set (newest first) into one another:
    each metric's values go to the newest version that declares it."""
    if len(readings) < 2:
        return
    owners: dict = {}
    for r in readings:
        for name, m in r.by_name().items():
            owner = owners.get(name)
            if owner is None:
                owners[name] = (r, m)
            elif _same_metric(owner[1], m):
                owner[0].fold(r, owner[1], m)
            else:
                r.folded.add(m.attr)
                for f in r.files:
                    problems.setdefault(
                        f.name, f"declares {name} differently from a newer version of set "
                                f"{r.set_name}: only the newer declaration is shown")
    first = readings[0]
    for r in readings[1:]:
        first.invalid += r.invalid
        r.owns_invalid = False


def _merge_tolerant(have: list, fams: list, problems: dict) -> list:
    """:func:`.families.merge` of two lists, leaving out (and reporting) a family of the
    second that cannot join the first (other sets exporting the same series)."""
    if not have:
        return list(fams)
    try:
        return merge([have, fams])
    except ValueError:
        pass
    out = list(have)
    for fam in fams:
        try:
            out = merge([out, [fam]])
        except ValueError as exc:
            problems.setdefault(fam.name, f"exported by two sets: {exc}")
    return out


def _write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    _unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)

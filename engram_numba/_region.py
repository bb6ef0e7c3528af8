"""Cache-line aligned memory regions, anonymous or file-backed.

Everything a kernel writes (metric values, trace rings) lives in a *region*: one
block of zeroed memory whose data starts on a cache-line boundary (64 bytes by
default, 128 for machines that prefetch line pairs).  Callers lay their values
out with padded strides so that independently written hot values never share a
line (no false sharing).

A region is either anonymous (process memory from numpy) or file-backed (a
shared memory map, e.g. under ``/dev/shm``) so that another process can attach
and read - or keep writing - the same values.  Because the memory is a shared
mapping, whatever a writer recorded survives the writer being killed.

File format (little-endian)::

    offset  size  field
    0       8     magic  b"ENGRAMNB"  (written last: a half-created file has none)
    8       4     format version (1)
    12      4     region kind (1 = metric set, 2 = trace rings)
    16      4     alignment in bytes (64 or 128)
    20      4     flags: bit 0 (FLAG_WRITER_LOCK) = the creating process holds an
                  exclusive flock on the file for as long as it lives (see
                  .._process: how a reader tells a live writer, in any PID namespace)
    24      8     description length in bytes
    32      8     data offset (a multiple of the alignment)
    40      8     data size in bytes
    48      32    SHA-256 of the description
    80      8     creation time, unix nanoseconds
    88      40    reserved, 0
    128     n     description: UTF-8 JSON written by the region's owner (the
                  layout of the data: names, kinds, offsets)
    data offset   data

Files are created with owner-only permissions (0600) and never overwritten.
Attaching opens nothing but a regular file, without blocking (a FIFO or a
device named like a region is refused, never waited on), validates every
header field against the file's real size before mapping any data, and refuses
truncated, foreign or mismatched files with a :class:`RegionError` that says
what is wrong.

A mapping outlives the checks made when it was attached: a file truncated
afterwards (a full disk, a careless ``: >``, a restore) turns every reading of
the pages past its new end into SIGBUS, which kills the process, and no check
made before a reading can rule out a truncation during it.  A reader of another
process's file therefore does not read the mapping: :meth:`Region.read_copy`
copies the data area with ``pread``, which returns short on a truncated file
instead of faulting (the kernel copies aligned words whole on x86-64 and arm64,
as a reader's own loads would).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import mmap
import os
import stat
import time

import numpy as np

from .errors import RegionError

__all__ = ["Region", "RegionError", "KIND_METRICS", "KIND_TRACE", "CACHE_LINE",
           "FLAG_WRITER_LOCK", "open_regular", "read_copy"]

CACHE_LINE = 64
MAGIC = b"ENGRAMNB"
FORMAT_VERSION = 1
HEADER_SIZE = 128
KIND_METRICS = 1
KIND_TRACE = 2
_KIND_NAMES = {KIND_METRICS: "metric set", KIND_TRACE: "trace rings"}
ALIGNMENTS = (64, 128)
FLAG_WRITER_LOCK = 1

HEADER_DTYPE = np.dtype({
    "names": ["magic", "version", "kind", "alignment", "flags", "description_size",
              "data_offset", "data_size", "sha256", "created_ns"],
    "formats": ["S8", "<u4", "<u4", "<u4", "<u4", "<u8", "<u8", "<u8", ("u1", 32), "<u8"],
    "offsets": [0, 8, 12, 16, 20, 24, 32, 40, 48, 80],
    "itemsize": HEADER_SIZE,
})


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def check_alignment(alignment: int) -> int:
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment must be one of {ALIGNMENTS} bytes, got {alignment!r}")
    return alignment


def description_hash(description: str) -> bytes:
    return hashlib.sha256(description.encode("utf-8")).digest()


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
               (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link"))


def not_regular(mode: int) -> str | None:
    """What a file of ``mode`` is when it is not a regular file, else None."""
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in _FILE_KINDS if test(mode)), "not a regular file")


def open_regular(path, flags: int, follow_symlinks: bool = True, mode: int = 0o600) -> int:
    """``os.open`` that never blocks and returns only a regular file's descriptor.

    A FIFO opened for reading would wait for a writer forever, so the file is
    opened with ``O_NONBLOCK`` (dropped again once it is known to be a regular
    file) and checked with ``fstat``; anything else raises :class:`RegionError`
    naming what it is.  ``follow_symlinks=False`` refuses a symbolic link.
    """
    flags |= os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise RegionError(f"{path}: a symbolic link (not followed here)") from None
        if exc.errno == errno.ENXIO:            # a FIFO without a reader, opened to write
            raise RegionError(f"{path}: a FIFO, not a regular file") from None
        raise
    try:
        what = not_regular(os.fstat(fd).st_mode)
        if what is not None:
            raise RegionError(f"{path}: {what}, not a regular file")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_copy(path, inode, data_offset: int, size: int, alignment: int) -> np.ndarray:
    """``size`` bytes of the file at ``path`` from ``data_offset``, read with ``pread`` into
    memory aligned like a mapping: a file truncated before or during the copy gives a
    :class:`RegionError` (a short read), never SIGBUS; so does another file at ``path``
    than the one attached (``inode``: its ``(st_dev, st_ino)``)."""
    raw = np.empty(size + alignment, dtype=np.uint8)
    start = (-raw.ctypes.data) % alignment
    buf = raw[start:start + size]
    try:
        fd = open_regular(path, os.O_RDONLY, follow_symlinks=False)
    except FileNotFoundError:
        raise RegionError(f"{path}: removed") from None
    try:
        st = os.fstat(fd)
        if inode is not None and (st.st_dev, st.st_ino) != tuple(inode):
            raise RegionError(f"{path}: replaced by another file since attached")
        view, done = memoryview(buf), 0
        while done < size:
            n = os.preadv(fd, [view[done:]], data_offset + done)
            if n <= 0:
                raise RegionError(f"{path}: shrank to {data_offset + done} bytes while "
                                  f"attached ({data_offset + size} expected): truncated by "
                                  f"someone else")
            done += n
    finally:
        os.close(fd)
    return buf


class Region:
    """A zeroed, aligned block of memory, anonymous or a file (a header with magic,
    version, kind, sizes and the layout description, then the data area).

    ``data`` is a uint8 view of the data area and ``address`` its address,
    which is what compiled kernels receive.
    """

    def __init__(self, *, kind, alignment, description, data, path=None, writable=True,
                 keepalive=None, created_ns=None, flags=0, inode=None):
        self.kind = kind
        self.alignment = alignment
        self.description = description
        self.data = data
        self.path = path
        self.writable = writable
        self.created_ns = created_ns if created_ns is not None else time.time_ns()
        self._keepalive = keepalive
        self._header = None
        self.flags = flags
        self.inode = inode                  # (st_dev, st_ino) of an attached file
        self.data_offset = None             # where the data area starts in the file
        self._lock_fd = None                # the writer's flock (FLAG_WRITER_LOCK)

    # -- construction ---------------------------------------------------------

    @classmethod
    def anonymous(cls, kind: int, size: int, description: str, alignment: int = CACHE_LINE):
        """Zeroed process memory whose data address is a multiple of ``alignment``."""
        check_alignment(alignment)
        size = round_up(max(int(size), alignment), alignment)
        raw = np.zeros(size + alignment, dtype=np.uint8)
        start = (-raw.ctypes.data) % alignment
        data = raw[start:start + size]
        return cls(kind=kind, alignment=alignment, description=description, data=data,
                   keepalive=raw)

    @classmethod
    def create(cls, path, kind: int, size: int, description: str, alignment: int = CACHE_LINE,
               hold_lock: bool = False):
        """Create a new file-backed region at ``path`` (mode 0600); never overwrites a file.

        ``hold_lock``: take an exclusive ``flock`` on the file at once and keep it
        until :meth:`close` or the process's end (the kernel releases it then, however
        the process ends), and say so in the header (:data:`FLAG_WRITER_LOCK`): how
        readers of a shared directory tell a live writer from a dead one."""
        check_alignment(alignment)
        path = os.fspath(path)
        desc = description.encode("utf-8")
        size = round_up(max(int(size), alignment), alignment)
        data_offset = round_up(HEADER_SIZE + len(desc), max(alignment, 4096))
        total = data_offset + size
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise FileExistsError(
                f"{path} already exists; attach to it, or remove it to start afresh") from None
        try:
            if hold_lock:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, total)
            mm = mmap.mmap(fd, total, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        if not hold_lock:
            os.close(fd)
        created = time.time_ns()
        header = np.frombuffer(mm, dtype=HEADER_DTYPE, count=1)
        header["version"] = FORMAT_VERSION
        header["kind"] = kind
        header["alignment"] = alignment
        header["flags"] = FLAG_WRITER_LOCK if hold_lock else 0
        header["description_size"] = len(desc)
        header["data_offset"] = data_offset
        header["data_size"] = size
        header["sha256"][0] = np.frombuffer(description_hash(description), dtype=np.uint8)
        header["created_ns"] = created
        mm[HEADER_SIZE:HEADER_SIZE + len(desc)] = desc
        data = np.frombuffer(mm, dtype=np.uint8, count=size, offset=data_offset)
        region = cls(kind=kind, alignment=alignment, description=description, data=data,
                     path=path, writable=True, keepalive=mm, created_ns=created,
                     flags=FLAG_WRITER_LOCK if hold_lock else 0)
        region._header = header
        region._lock_fd = fd if hold_lock else None
        return region

    def publish(self) -> None:
        """Mark a newly created file valid (write the magic) once its data is initialised."""
        if self._header is not None:
            self._header["magic"] = MAGIC
            self._keepalive.flush()

    @classmethod
    def attach(cls, path, kind: int, writable: bool = True, follow_symlinks: bool = True):
        """Map an existing region file after validating its header against the file.

        Only a regular file is opened (see :func:`open_regular`);
        ``follow_symlinks=False`` also refuses a symbolic link."""
        path = os.fspath(path)
        try:
            fd = open_regular(path, os.O_RDWR if writable else os.O_RDONLY, follow_symlinks)
        except FileNotFoundError:
            raise FileNotFoundError(f"no region file at {path}") from None
        try:
            st = os.fstat(fd)
            file_size = st.st_size
            raw = os.pread(fd, HEADER_SIZE, 0)
            if len(raw) < HEADER_SIZE:
                raise RegionError(f"{path}: {file_size} bytes is too short for a region header "
                                  f"({HEADER_SIZE} bytes); not an engram-numba region, or truncated")
            h = np.frombuffer(raw, dtype=HEADER_DTYPE, count=1)[0]
            if bytes(h["magic"]) != MAGIC:
                raise RegionError(f"{path}: not an engram-numba region (bad magic {bytes(h['magic'])!r})")
            if int(h["version"]) != FORMAT_VERSION:
                raise RegionError(f"{path}: format version {int(h['version'])} is not supported "
                                  f"(this build reads version {FORMAT_VERSION})")
            if int(h["kind"]) != kind:
                raise RegionError(
                    f"{path}: holds {_KIND_NAMES.get(int(h['kind']), 'kind %d' % int(h['kind']))}, "
                    f"expected {_KIND_NAMES.get(kind, kind)}")
            alignment = int(h["alignment"])
            if alignment not in ALIGNMENTS:
                raise RegionError(f"{path}: corrupt header (alignment {alignment})")
            dsize, doff, size = int(h["description_size"]), int(h["data_offset"]), int(h["data_size"])
            if HEADER_SIZE + dsize > doff or doff % alignment or size % alignment:
                raise RegionError(f"{path}: corrupt header (description {dsize} B, data at {doff}, "
                                  f"{size} B)")
            if doff + size > file_size:
                raise RegionError(f"{path}: truncated: header promises {doff + size} bytes, "
                                  f"file has {file_size}")
            desc_bytes = os.pread(fd, dsize, HEADER_SIZE)
            if hashlib.sha256(desc_bytes).digest() != bytes(h["sha256"]):
                raise RegionError(f"{path}: corrupt layout description (checksum mismatch)")
            try:
                description = desc_bytes.decode("utf-8")
                json.loads(description)
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                raise RegionError(f"{path}: unreadable layout description "
                                  f"({type(exc).__name__})") from None
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
            mm = mmap.mmap(fd, doff + size, mmap.MAP_SHARED, prot)
        finally:
            os.close(fd)
        data = np.frombuffer(mm, dtype=np.uint8, count=size, offset=doff)
        region = cls(kind=kind, alignment=alignment, description=description, data=data,
                     path=path, writable=writable, keepalive=mm,
                     created_ns=int(h["created_ns"]), flags=int(h["flags"]),
                     inode=(st.st_dev, st.st_ino))
        region.data_offset = doff
        return region

    # -- use ------------------------------------------------------------------

    @property
    def address(self) -> int:
        if self.data is None:
            raise ValueError("the region is closed")
        return self.data.ctypes.data

    @property
    def size(self) -> int:
        return 0 if self.data is None else self.data.size

    @property
    def closed(self) -> bool:
        return self.data is None

    @property
    def mapped_size(self) -> int:
        """Bytes of the file this region maps (header, description and data)."""
        keep = self._keepalive
        return len(keep) if isinstance(keep, mmap.mmap) and not keep.closed else 0

    def read_copy(self) -> np.ndarray:
        """A copy of the data area read from the file (:func:`read_copy`), never through
        the mapping.  For attached files only."""
        if self.path is None or self.data_offset is None or self.closed:
            raise RegionError("read_copy() needs a region attached from a file")
        return read_copy(self.path, self.inode, self.data_offset, self.data.size, self.alignment)

    def intact(self) -> str | None:
        """Why reading this file-backed region now could fault, or None if it cannot.

        The file at :attr:`path` must still be the file that was mapped and at
        least as long as the mapping: a file truncated since turns the reading of
        its lost pages into SIGBUS.  A file removed since (its pages stay valid)
        is not a problem.  Anonymous memory is always intact."""
        if self.path is None or self.closed or not isinstance(self._keepalive, mmap.mmap):
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"cannot be checked ({exc.strerror})"
        if self.inode is not None and (st.st_dev, st.st_ino) != self.inode:
            return None                      # replaced: the mapped file is unlinked, intact
        if st.st_size < self.mapped_size:
            return (f"shrank to {st.st_size} bytes while mapped ({self.mapped_size} bytes): "
                    f"truncated by someone else")
        return None

    def close(self) -> None:
        """Drop this object's references to the memory.

        The memory itself is released when the last view of it is gone, so a
        numpy view a caller still holds stays valid.  Kernels must not be
        running on a region being closed.
        """
        self.data = None
        self._header = None
        lock, self._lock_fd = self._lock_fd, None
        if lock is not None:
            os.close(lock)                  # releases the writer's flock
        keep, self._keepalive = self._keepalive, None
        if isinstance(keep, mmap.mmap):
            try:
                keep.close()
            except BufferError:
                pass  # still exported to a live view; unmapped when that goes

    def __del__(self):
        lock = getattr(self, "_lock_fd", None)
        if lock is not None:
            self._lock_fd = None
            try:
                os.close(lock)
            except OSError:
                pass

    def __repr__(self) -> str:
        where = self.path or "anonymous"
        state = "closed" if self.closed else f"{self.size} B at 0x{self.address:x}"
        return f"<Region {_KIND_NAMES.get(self.kind, self.kind)} {where} {state}>"

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
    20      4     reserved, 0
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
Attaching validates every header field against the file's real size before
mapping any data, and refuses truncated, foreign or mismatched files with a
:class:`RegionError` that says what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import time

import numpy as np

__all__ = ["Region", "RegionError", "KIND_METRICS", "KIND_TRACE", "CACHE_LINE"]

CACHE_LINE = 64
MAGIC = b"ENGRAMNB"
FORMAT_VERSION = 1
HEADER_SIZE = 128
KIND_METRICS = 1
KIND_TRACE = 2
_KIND_NAMES = {KIND_METRICS: "metric set", KIND_TRACE: "trace rings"}
ALIGNMENTS = (64, 128)

HEADER_DTYPE = np.dtype({
    "names": ["magic", "version", "kind", "alignment", "reserved0", "description_size",
              "data_offset", "data_size", "sha256", "created_ns"],
    "formats": ["S8", "<u4", "<u4", "<u4", "<u4", "<u8", "<u8", "<u8", ("u1", 32), "<u8"],
    "offsets": [0, 8, 12, 16, 20, 24, 32, 40, 48, 80],
    "itemsize": HEADER_SIZE,
})


class RegionError(ValueError):
    """A file is not a usable region: foreign, truncated, corrupt or of another layout."""


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def check_alignment(alignment: int) -> int:
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment must be one of {ALIGNMENTS} bytes, got {alignment!r}")
    return alignment


def description_hash(description: str) -> bytes:
    return hashlib.sha256(description.encode("utf-8")).digest()


class Region:
    """A zeroed, aligned block of memory, anonymous or a file (a header with magic,
    version, kind, sizes and the layout description, then the data area).

    ``data`` is a uint8 view of the data area and ``address`` its address,
    which is what compiled kernels receive.
    """

    def __init__(self, *, kind, alignment, description, data, path=None, writable=True,
                 keepalive=None, created_ns=None):
        self.kind = kind
        self.alignment = alignment
        self.description = description
        self.data = data
        self.path = path
        self.writable = writable
        self.created_ns = created_ns if created_ns is not None else time.time_ns()
        self._keepalive = keepalive
        self._header = None

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
    def create(cls, path, kind: int, size: int, description: str, alignment: int = CACHE_LINE):
        """Create a new file-backed region at ``path`` (mode 0600); never overwrites a file."""
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
            os.ftruncate(fd, total)
            mm = mmap.mmap(fd, total, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        os.close(fd)
        created = time.time_ns()
        header = np.frombuffer(mm, dtype=HEADER_DTYPE, count=1)
        header["version"] = FORMAT_VERSION
        header["kind"] = kind
        header["alignment"] = alignment
        header["description_size"] = len(desc)
        header["data_offset"] = data_offset
        header["data_size"] = size
        header["sha256"][0] = np.frombuffer(description_hash(description), dtype=np.uint8)
        header["created_ns"] = created
        mm[HEADER_SIZE:HEADER_SIZE + len(desc)] = desc
        data = np.frombuffer(mm, dtype=np.uint8, count=size, offset=data_offset)
        region = cls(kind=kind, alignment=alignment, description=description, data=data,
                     path=path, writable=True, keepalive=mm, created_ns=created)
        region._header = header
        return region

    def publish(self) -> None:
        """Mark a newly created file valid (write the magic) once its data is initialised."""
        if self._header is not None:
            self._header["magic"] = MAGIC
            self._keepalive.flush()

    @classmethod
    def attach(cls, path, kind: int, writable: bool = True):
        """Map an existing region file after validating its header against the file."""
        path = os.fspath(path)
        try:
            fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        except FileNotFoundError:
            raise FileNotFoundError(f"no region file at {path}") from None
        try:
            file_size = os.fstat(fd).st_size
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
        return cls(kind=kind, alignment=alignment, description=description, data=data,
                   path=path, writable=writable, keepalive=mm, created_ns=int(h["created_ns"]))

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

    def close(self) -> None:
        """Drop this object's references to the memory.

        The memory itself is released when the last view of it is gone, so a
        numpy view a caller still holds stays valid.  Kernels must not be
        running on a region being closed.
        """
        self.data = None
        self._header = None
        keep, self._keepalive = self._keepalive, None
        if isinstance(keep, mmap.mmap):
            try:
                keep.close()
            except BufferError:
                pass  # still exported to a live view; unmapped when that goes

    def __repr__(self) -> str:
        where = self.path or "anonymous"
        state = "closed" if self.closed else f"{self.size} B at 0x{self.address:x}"
        return f"<Region {_KIND_NAMES.get(self.kind, self.kind)} {where} {state}>"

"""A process's file in a metrics directory: its name, its creation, the directory's lock.

The writing side of directory mode (see :mod:`.directory`, which reads and
compacts): a set created with ``create_in(DIR)`` or under
``$ENGRAM_NUMBA_METRICS_DIR`` becomes ``<set>.<pid>.<start>.<n>.metrics`` (named
by :mod:`.._process`), made under a temporary name while the directory's lock
is held shared, so that no compactor judges a half-made file.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from contextlib import contextmanager

from .. import _process
from .._region import KIND_METRICS, Region, open_regular
from ..errors import LockUnavailable, RegionError

__all__ = ["DIRECTORY_ENV", "LOCK_NAME", "LockUnavailable", "create_file", "directory_from_env",
           "locked", "reason", "resolve", "unlink"]

DIRECTORY_ENV = _process.METRICS_DIRECTORY_ENV
LOCK_NAME = ".engram-numba.lock"

log = logging.getLogger(__name__)


def resolve(directory) -> str:
    return _process.shared_directory(directory, DIRECTORY_ENV)


def directory_from_env() -> str | None:
    value = os.environ.get(DIRECTORY_ENV, "").strip()
    return value or None


def create_file(directory, set_name: str, layout) -> Region:
    """This process's new file for a set in ``directory`` (created if missing, mode 0700),
    locked by this process for as long as it keeps it (see :mod:`.directory`)."""
    directory = resolve(directory)
    final = _process.new_file_path(directory, set_name, "metrics")
    tmp = final + ".creating"
    with locked(directory, exclusive=False):    # no compactor judges a half-made file
        region = Region.create(tmp, KIND_METRICS, layout.size, layout.description,
                               layout.alignment, hold_lock=True)
        try:
            region.publish()
            os.rename(tmp, final)
        except BaseException:
            region.close()
            unlink(tmp)
            raise
    region.path = final
    return region


@contextmanager
def locked(directory: str, exclusive: bool):
    """The directory's lock; yields None once held, or (shared only) the reason why it
    could not be taken: the reading goes on without it.  Exclusive raises
    :class:`LockUnavailable` instead."""
    path = os.path.join(directory, LOCK_NAME)
    fd, problem = None, None
    try:
        try:
            fd = open_regular(path, os.O_RDWR | os.O_CREAT, follow_symlinks=False)
        except OSError as exc:
            if exclusive or exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            try:                             # a reader without write access shares it
                fd = open_regular(path, os.O_RDONLY, follow_symlinks=False)
            except FileNotFoundError:        # and none exists: nobody can be compacting
                fd = None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    except (OSError, RegionError) as exc:
        if fd is not None:
            os.close(fd)
            fd = None
        problem = f"{LOCK_NAME}: unusable lock ({reason(exc)})"
        if exclusive:
            raise LockUnavailable(problem) from None
    try:
        yield problem
    finally:
        if fd is not None:
            os.close(fd)                    # releases the lock


def reason(exc) -> str:
    if isinstance(exc, RegionError):
        return str(exc).split(": ", 1)[-1] if ": " in str(exc) else str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def unlink(path) -> bool:
    """Remove a file (not a directory); False if there was none or it cannot be."""
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.debug("cannot remove %s: %s", path, exc)
        return False

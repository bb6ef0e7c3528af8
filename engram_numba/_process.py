"""Processes named by files: this process's identity, and whether a named one still runs.

A pid alone does not name a process: pids are reused, and a forked child keeps
nothing of its parent's but may get a pid a dead worker had.  A process is
therefore named by ``(pid, start)``, ``start`` being its start time in clock
ticks since boot (field 22 of ``/proc/<pid>/stat`` on Linux).  A process whose
pid is gone, whose pid now belongs to a process started at another time, or
that is a zombie (killed, not yet reaped) is not running.

Where ``/proc`` is missing, ``start`` is 0 and liveness falls back to
``kill(pid, 0)`` (pid reuse is then not detected).

A pid only means something in the PID namespace it was read in: a container
sharing the directory names its processes by pids this host gives to others,
or to nobody.  A file's writer is therefore judged by what it holds, not by
its name: a writer takes an exclusive ``flock`` on its own file when it creates
it and keeps it while it lives; the kernel releases it when the process ends,
however it ends (SIGKILL included), in whatever namespace it ran.  :func:`held`
asks whether a file's lock is held.  ``(pid, start)`` stays a hint, used only
for files whose writers took no lock (older writers).

A process's files in a shared directory (metric sets, trace rings) are named
``<set>.<pid>.<start>.<n>.<suffix>``, ``n`` counting the process's files of
that set: :func:`new_file_path` and :func:`file_pattern`.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import re
import stat

__all__ = ["identity", "start_time", "running", "held", "Watcher", "shared_directory",
           "new_file_path", "file_pattern", "METRICS_DIRECTORY_ENV", "TRACE_DIRECTORY_ENV",
           "new_rings_path"]

SET_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
METRICS_DIRECTORY_ENV = "ENGRAM_NUMBA_METRICS_DIR"   # a metric set's default directory
TRACE_DIRECTORY_ENV = "ENGRAM_NUMBA_TRACE_DIR"       # a tracer's default directory
_sequence = itertools.count()


def shared_directory(directory, env: str) -> str:
    """``directory``, else the environment variable ``env``; a ``ValueError`` for neither,
    or for a path that exists and is not a directory."""
    if directory is None:
        directory = os.environ.get(env, "").strip() or None
        if directory is None:
            raise ValueError(f"no directory: pass one, or set {env}")
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"{directory} is not a directory")
    return directory


def new_file_path(directory: str, set_name: str, suffix: str) -> str:
    """A path no file has yet for this process's next ``set_name`` file in ``directory``
    (created if missing, mode 0700)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    pid, start = identity()
    while True:
        path = os.path.join(directory, f"{set_name}.{pid}.{start}.{next(_sequence)}.{suffix}")
        if not os.path.exists(path):
            return path


def new_rings_path(directory, set_name: str) -> str:
    """A new rings file name for this process's tracer of ``set_name`` in ``directory``
    (default ``$ENGRAM_NUMBA_TRACE_DIR``; created if missing)."""
    return new_file_path(shared_directory(directory, TRACE_DIRECTORY_ENV), set_name, "rings")


def file_pattern(suffix: str) -> re.Pattern:
    """The names :func:`new_file_path` gives, with groups set, pid, start and n."""
    return re.compile(rf"^(?P<set>{SET_NAME})\.(?P<pid>\d+)\.(?P<start>\d+)\.(?P<n>\d+)"
                      rf"\.{re.escape(suffix)}$")

_identity: list = []


def _stat(pid: int):
    """(state, start ticks) of a process from /proc, None if there is none, False if no /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None if os.path.isdir("/proc/self") else False
    except OSError:
        return False
    # the command name (field 2) is in parentheses and may hold spaces or ')'
    rest = raw[raw.rfind(b")") + 2:].split()
    try:
        return rest[0].decode(), int(rest[19])
    except (IndexError, ValueError):
        return False


def start_time(pid: int) -> int | None:
    """``pid``'s start time in clock ticks since boot (0 without /proc; None: no such process)."""
    st = _stat(pid)
    if st is False:
        return 0
    return None if st is None else st[1]


def identity() -> tuple:
    """``(pid, start)`` of this process (refreshed in a forked child)."""
    pid = os.getpid()
    if not _identity or _identity[0][0] != pid:
        start = start_time(pid)
        _identity[:] = [(pid, start or 0)]
    return _identity[0]


def running(pid: int, start: int) -> bool:
    """Whether the process ``(pid, start)`` still runs (a zombie does not)."""
    st = _stat(pid)
    if st is None:
        return False
    if st is False:                        # no /proc: the pid alone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    state, started = st
    return state not in ("Z", "X") and (start == 0 or started == start)


def held(path) -> bool | None:
    """Whether some process holds an exclusive ``flock`` on the file at ``path`` (its
    writer, alive); False once no one does; None when that cannot be told (the file
    cannot be opened: the caller must then assume the writer may be alive).

    The test takes a shared lock without waiting and gives it back at once."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) \
        | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)                          # gives back the shared lock, if taken
    return False


class Watcher:
    """Whether many processes still run, checked cheaply again and again.

    The first check of a process reads ``/proc`` (:func:`running`); a running one
    is then held by a pidfd (Linux 5.3+), which names that very process (a reused
    pid is another process) and becomes readable when it exits, so later checks
    of all held processes are one ``poll``.  Processes not asked about any more
    are let go.  Without pidfds every check reads ``/proc``.
    """

    def __init__(self):
        self._fds: dict = {}

    def check(self, processes) -> dict:
        """``{(pid, start): running?}`` for the given processes."""
        import select
        processes = set(processes)
        for who in [w for w in self._fds if w not in processes]:
            os.close(self._fds.pop(who))
        ended = set()
        if self._fds:
            poller = select.poll()
            for fd in self._fds.values():
                poller.register(fd, select.POLLIN)
            ended = {fd for fd, _ in poller.poll(0)}
        out = {}
        for who in processes:
            fd = self._fds.get(who)
            if fd is not None:
                out[who] = fd not in ended
                continue
            alive = running(*who)
            out[who] = alive
            if alive and hasattr(os, "pidfd_open"):
                try:
                    fd = os.pidfd_open(who[0])
                except OSError:
                    continue
                if running(*who):            # still the same process once held
                    self._fds[who] = fd
                else:
                    os.close(fd)
                    out[who] = False
        for who in [w for w, fd in self._fds.items() if fd in ended]:
            os.close(self._fds.pop(who))
        return out

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

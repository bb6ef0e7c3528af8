import os
import threading

import numpy as np
import pytest
from numba import njit

from engram_numba import atomic_add, atomic_load


def free_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


needs_two_cpus = pytest.mark.skipif(
    free_cpus() < 2, reason="needs 2 free CPUs to make threads race (lost-update control)")


@njit(nogil=True)
def spin_barrier(flag, parties):
    """Every caller waits until `parties` callers arrived, so their loops overlap."""
    atomic_add(flag, 0, 1)
    while atomic_load(flag, 0) < parties:
        pass


def run_threads(fn, args_per_thread):
    """Run fn(*args) in one Python thread per args tuple; re-raise the first error."""
    errors = []

    def target(args):
        try:
            fn(*args)
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(a,)) for a in args_per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


@pytest.fixture
def barrier():
    return np.zeros(1, dtype=np.int64)


def run_isolated(code: str, timeout: float = 300.0):
    """Run Python ``code`` in a fresh interpreter; a crash (signal) cannot take pytest down.

    Returns the CompletedProcess; a negative returncode is the signal that killed it.
    """
    import subprocess
    import sys
    import textwrap
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout)

"""``progress(counter, total=...)``: a live progress bar for a long kernel.

A kernel cannot call Python while it runs, but it can count: ``m.done.inc()``
in the loop (or an ``atomic_add`` on a numpy array).  ``progress`` reads the
count from a thread of its own while the ``with`` block runs the kernel, and
shows it with ``tqdm`` when it is installed (in a notebook too), otherwise as
one line on stderr::

    with engram_numba.progress(m.done, total=n, desc="trials"):
        kernel(m, n)              # @njit(nogil=True): the reading thread needs the GIL

The kernel must release the GIL (``nogil=True``, or ``parallel=True``), or the
bar only moves when it returns.  The bar counts from the value at entry, so a
counter that already holds counts works as it is.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np

__all__ = ["progress"]


def _reader(counter):
    """A function returning the counter's current value."""
    if callable(getattr(counter, "value", None)) and not hasattr(counter, "total"):
        return lambda: counter.value()                  # a labelled child: m.x.labels(...)
    if hasattr(counter, "total") and hasattr(counter, "spec"):
        return lambda: counter.total                    # a counter: every label summed
    if isinstance(counter, np.ndarray):
        return lambda: int(counter.sum())
    if callable(counter):
        return counter
    raise TypeError(f"progress() reads a counter (m.<counter>, m.<counter>.labels(...)), a "
                    f"numpy array a kernel adds to, or a function returning a number; got "
                    f"{counter!r}")


class _PlainBar:
    """``[#########        ]  45.0%  450,000/1,000,000 trials  123,456/s``, on one line."""

    def __init__(self, total, desc, unit, file):
        self.total, self.desc, self.unit = total, desc, unit
        self.file = file if file is not None else sys.stderr
        self.live = bool(getattr(self.file, "isatty", lambda: False)())
        self.start = time.monotonic()
        self.last = -1.0
        self.n = 0
        self.postfix = ""

    def update(self, n: int, final: bool = False) -> None:
        self.n = n
        now = time.monotonic()
        if not final and now - self.last < (0.1 if self.live else 5.0):
            return
        self.last = now
        frac = min(1.0, n / self.total) if self.total else 0.0
        rate = n / max(now - self.start, 1e-9)
        bar = f"[{'#' * int(frac * 30):<30}] {frac:6.1%}  " if self.total else ""
        of = f"/{self.total:,}" if self.total else ""
        line = (f"{self.desc + ': ' if self.desc else ''}{bar}{n:,}{of} {self.unit}  "
                f"{rate:,.0f}/s{'  ' + self.postfix if self.postfix else ''}")
        if self.live:
            self.file.write("\r" + line + ("\n" if final else ""))
        else:
            self.file.write(line + "\n")
        self.file.flush()

    def close(self) -> None:
        self.update(self.n, final=True)


class _TqdmBar:
    def __init__(self, tqdm, total, desc, unit, file):
        self.bar = tqdm(total=total, desc=desc or None, unit=unit, file=file,
                        dynamic_ncols=True)
        self.n = 0

    @property
    def postfix(self):
        return ""

    @postfix.setter
    def postfix(self, text):
        if text:
            self.bar.set_postfix_str(text, refresh=False)

    def update(self, n: int, final: bool = False) -> None:
        if n > self.n:
            self.bar.update(n - self.n)
            self.n = n

    def close(self) -> None:
        self.bar.close()


class progress:
    """A context manager showing a live progress bar read from ``counter``.

    ``counter``: a metric set's counter (``m.done``: all its labels summed), one of its
    label combinations (``m.done.labels("ok")``), a numpy array a kernel adds to (its
    sum), or a function returning a number.  ``total``: the count at which the work is
    done (None: a count and a rate, no bar).  ``desc`` and ``unit`` label the bar;
    ``postfix`` is a function returning extra text shown after it; ``interval`` is how
    often the counter is read (seconds).  ``bar="tqdm"`` or ``"plain"`` forces a kind
    (default: tqdm when it is installed).  ``file``: where the plain bar (or tqdm)
    writes (default stderr).  ``done`` (after the block, or from inside it) is the
    count reached.
    """

    def __init__(self, counter, total: int | None = None, *, desc: str = "",
                 unit: str = "it", interval: float = 0.1, postfix=None, bar: str = "auto",
                 file=None):
        self._read = _reader(counter)
        if total is not None and (isinstance(total, bool) or not isinstance(total, (int, np.integer))
                                  or total < 0):
            raise ValueError(f"total must be a non-negative integer or None, got {total!r}")
        if not isinstance(interval, (int, float)) or isinstance(interval, bool) \
                or not 0 < interval < float("inf"):
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        if bar not in ("auto", "tqdm", "plain"):
            raise ValueError(f"bar must be 'auto', 'tqdm' or 'plain', got {bar!r}")
        self.total = None if total is None else int(total)
        self.desc, self.unit, self.interval = desc, unit, float(interval)
        self.postfix = postfix
        self.kind, self.file = bar, file
        self.done = 0
        self._bar = None
        self._stop = threading.Event()
        self._thread = None
        self._base = 0

    def _make_bar(self):
        tqdm = None
        if self.kind in ("auto", "tqdm"):
            try:
                from tqdm.auto import tqdm
            except ImportError:
                if self.kind == "tqdm":
                    raise ImportError("progress(bar='tqdm') needs tqdm: pip install tqdm") \
                        from None
        if tqdm is not None:
            return _TqdmBar(tqdm, self.total, self.desc, self.unit, self.file)
        return _PlainBar(self.total, self.desc, self.unit, self.file)

    def _sample(self, final: bool = False) -> None:
        self.done = max(0, int(self._read()) - self._base)
        if self.postfix is not None:
            self._bar.postfix = str(self.postfix())
        self._bar.update(self.done, final=final)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "progress":
        self._base = int(self._read())
        self._bar = self._make_bar()
        self._thread = threading.Thread(target=self._run, name="engram-numba-progress",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(final=True)
        self._bar.close()

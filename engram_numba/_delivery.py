"""How every exporter delivers: one policy for errors, waits, deadlines and a peer's words.

The trace collector's retries, ``engram-numba metrics push`` / ``trace export``
and the periodic push of :class:`~engram_numba.export.otlp.OtlpMetricExporter`
all follow these rules:

* **Errors.**  An export raises :class:`ExportError` for a failure that may pass
  (connection refused or reset, a timeout, HTTP 408, 429 and 5xx, the gRPC codes
  in :data:`RETRYABLE_GRPC`, an answer cut off or unreadable) and
  :class:`PermanentExportError` for one that retrying cannot fix (any other
  status, a refused certificate, data the receiver rejected).  Success is only
  what the whole answer says: a complete response with a success status and,
  for OTLP, no rejected records in its ``partial_success``.
* **Waits.**  Exponential backoff with jitter (:class:`Backoff`: each wait
  doubles up to a maximum, then a random fraction in [0.5, 1] of it is taken, so
  that many clients do not retry in step).  A peer's ``Retry-After`` (or gRPC
  ``RetryInfo``) lengthens a wait, parsed without ever raising
  (:func:`parse_retry_after`: seconds or an HTTP date; ``inf``, negative and
  unreadable values are ignored) and capped at :data:`MAX_RETRY_AFTER`.
* **Deadlines.**  A wait never ends past the caller's deadline: when the next
  attempt could not start before it, delivery gives up at once and says which
  header asked for how long (:func:`plan_retry`, :func:`deliver`).
* **A peer's words.**  Text that comes from the other end (a status line, a
  reason, an error message, a header) is shown only through :func:`escape`, so
  terminal escapes, carriage returns and line feeds never reach a terminal or a
  log line raw.

This module is below every other layer: the collector (``tracing``), the
exporters (``export``) and the command line all import it; the error types
live in :mod:`.errors` (re-exported here).
"""

from __future__ import annotations

import email.utils
import math
import random
import re
import time
from dataclasses import dataclass

from .errors import ExportError, PermanentExportError

__all__ = ["ExportError", "PermanentExportError", "RETRYABLE_HTTP", "RETRYABLE_GRPC",
           "MAX_RETRY_AFTER", "Backoff", "Retry", "deliver", "escape", "parse_retry_after",
           "plan_retry", "printable"]

RETRYABLE_HTTP = frozenset({408, 429} | set(range(500, 600)))
RETRYABLE_GRPC = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED", "ABORTED", "DEADLINE_EXCEEDED",
                            "CANCELLED", "OUT_OF_RANGE", "DATA_LOSS"})
MAX_RETRY_AFTER = 120.0          # seconds: a longer Retry-After is shortened to this
MAX_PEER_TEXT = 500              # characters of a peer's text shown


_DELTA = re.compile(r"^\s*(\d{1,12})(\.\d+)?\s*$")


def parse_retry_after(value, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds (``120``) or an HTTP
    date (``Wed, 21 Oct 2026 07:28:00 GMT``; one in the past is 0).  None for a value
    that is neither (``inf``, ``-1``, ``nan``, garbage); never raises."""
    if value is None:
        return None
    try:
        text = str(value)
    except Exception:
        return None
    if not text.strip() or len(text) > 200:
        return None
    m = _DELTA.match(text)
    if m:
        return float(m.group(1) + (m.group(2) or ""))
    try:
        when = email.utils.parsedate_to_datetime(text.strip())
        seconds = when.timestamp() - (time.time() if now is None else now)
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def escape(text, limit: int = MAX_PEER_TEXT) -> str:
    """A peer's text, safe to print: ``repr``-style escapes for every control or
    non-printable character (ESC, BEL, CR, LF, ...) and backslash, cut at ``limit``
    characters.  Bytes are decoded as UTF-8 (bad bytes escaped)."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        raw = bytes(text)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:           # not text: the bytes as Python shows them
            cut = len(raw) > limit
            return repr(raw[:limit])[2:-1] + ("..." if cut else "")
    elif not isinstance(text, str):
        text = str(text)
    cut = len(text) > limit
    out = repr(text[:limit])[1:-1]
    return out + ("..." if cut else "")


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` with control characters (tab aside) escaped (``\\x1b``, ``\\n``) but nothing
    else changed: a last guard for one-line messages printed on a terminal (a second pass
    changes nothing)."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(text))


class Backoff:
    """Exponential backoff with jitter: waits of ``initial``, doubling up to
    ``maximum``, each taken as a random fraction in [0.5, 1] of itself."""

    def __init__(self, initial: float = 0.1, maximum: float = 30.0, rng=None):
        if not (isinstance(initial, (int, float)) and isinstance(maximum, (int, float))
                and 0 < initial <= maximum < math.inf):
            raise ValueError(f"backoff must satisfy 0 < initial <= maximum < inf, got "
                             f"({initial!r}, {maximum!r})")
        self.initial, self.maximum = float(initial), float(maximum)
        self.current = 0.0
        self._rng = rng or random

    def next(self) -> float:
        """The next wait (and double the one after)."""
        self.current = min(self.maximum, max(self.initial, self.current * 2))
        return self.current * self._rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.current = 0.0


@dataclass(frozen=True)
class Retry:
    """What to do after a retryable failure: wait ``delay`` seconds, or give up
    (``delay`` None: the next attempt could not start before the deadline); ``note``
    says which header asked for what, and what was done about it."""

    delay: float | None
    note: str = ""


def plan_retry(exc, backoff: Backoff, deadline: float = math.inf,
               now: float | None = None) -> Retry:
    """The wait after the retryable failure ``exc``: the backoff's next wait, lengthened
    to the peer's ``Retry-After`` (capped at :data:`MAX_RETRY_AFTER`), and None past
    ``deadline`` (a ``time.monotonic()`` value)."""
    now = time.monotonic() if now is None else now
    delay = backoff.next()
    note = ""
    asked = getattr(exc, "retry_after", None)
    if isinstance(asked, bool) or not isinstance(asked, (int, float)) or \
            not math.isfinite(asked) or asked < 0:
        asked = None
    if asked is not None:
        header = getattr(exc, "retry_header", None)
        said = f"Retry-After {escape(header, 80)!r}" if header is not None else "the receiver"
        if asked > MAX_RETRY_AFTER:
            note = f"{said} asked for {asked:.0f} s, capped at {MAX_RETRY_AFTER:.0f} s"
            asked = MAX_RETRY_AFTER
        else:
            note = f"{said} asked for {asked:g} s"
        delay = max(delay, float(asked))
    left = deadline - now
    if delay >= left:
        why = note or f"backoff {delay:.2f} s"
        return Retry(None, f"{why}; past the deadline ({max(0.0, left):.1f} s left)")
    return Retry(delay, note)


def deliver(send, *, what: str, deadline: float, attempts: int = 5, backoff: Backoff | None = None,
            on_retry=None, sleep=time.sleep) -> int:
    """Call ``send(deadline)`` until it succeeds; returns the attempts made.

    A :class:`PermanentExportError` is raised as it is; a retryable failure is retried
    after :func:`plan_retry`'s wait (``on_retry(message)`` is told), up to ``attempts``
    attempts and never past ``deadline`` (``time.monotonic()``): then an
    :class:`ExportError` says what happened the last time and why delivery stopped.
    Anything else ``send`` raises is treated as retryable."""
    backoff = backoff or Backoff(0.2, 10.0)
    for attempt in range(1, attempts + 1):
        try:
            send(deadline)
            return attempt
        except PermanentExportError:
            raise
        except Exception as exc:  # retryable: any failure but a permanent one
            message = str(exc) if isinstance(exc, ExportError) else \
                f"{type(exc).__name__}: {escape(str(exc))}"
            if attempt == attempts:
                raise ExportError(f"{what} failed after {attempts} attempts: {message}",
                                  getattr(exc, "retry_after", None)) from None
            plan = plan_retry(exc, backoff, deadline)
            if plan.delay is None:
                tries = f"{attempt} attempt" + ("s" if attempt > 1 else "")
                raise ExportError(f"{what} failed after {tries}: {message}; not retried: "
                                  f"{plan.note}", getattr(exc, "retry_after", None)) from None
            if on_retry is not None:
                extra = f" ({plan.note})" if plan.note else ""
                on_retry(f"{what}: {message}; retrying in {plan.delay:.1f} s{extra}")
            sleep(plan.delay)
    raise AssertionError("unreachable")  # pragma: no cover

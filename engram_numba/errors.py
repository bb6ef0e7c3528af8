"""Every error type the library raises of its own, in one place.

Exporters, the collector, the command line and users catch them from here
(the modules that raise them also re-export them under their old names).

* :class:`ExportError` / :class:`PermanentExportError` - a delivery failed and
  is retried / cannot succeed (see :mod:`._delivery`, the policy);
* :class:`RegionError` - a file is not a usable region (:mod:`._region`);
* :class:`LockUnavailable` - a metrics directory's lock file cannot be used;
* :class:`KernelTypingError` - a kernel calls a recording method in a way that
  cannot compile.

Bad arguments from Python raise the built-in ``ValueError`` and ``TypeError``.
"""

from __future__ import annotations

__all__ = ["ExportError", "PermanentExportError", "RegionError", "LockUnavailable",
           "KernelTypingError"]


class ExportError(Exception):
    """An export failed; the batch is retried later.

    ``retry_after``: seconds the receiver asked to wait (None if it did not say);
    ``retry_header``: the header it said it with, as received (for messages)."""

    def __init__(self, message, retry_after: float | None = None,
                 retry_header: str | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.retry_header = retry_header


class PermanentExportError(ExportError):
    """An export failed in a way retrying cannot fix; the batch is dropped."""


class RegionError(ValueError):
    """A file is not a usable region: foreign, truncated, corrupt or of another layout."""


class LockUnavailable(OSError):
    """The directory's lock file cannot be used (so nobody can compact)."""


class KernelTypingError(TypeError):
    """A kernel calls a metric, event or kernel method in a way that cannot compile.

    Raised while numba types the kernel, with the message first: it names the metric
    (or event type, or method), what it takes, and the fix.  (numba's own
    ``TypingError`` would bury it under its account of every overload it tried.)
    """

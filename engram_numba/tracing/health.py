"""Where :class:`TopKeys` was first imported from; it lives in :mod:`engram_numba._topkeys`."""

from .._topkeys import TopKeys

__all__ = ["TopKeys"]

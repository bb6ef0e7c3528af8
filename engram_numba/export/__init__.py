"""Exporters: turn metric-set snapshots into the formats other tools read."""

from .prometheus import exposition

__all__ = ["exposition"]

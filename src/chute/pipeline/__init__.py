"""Overlapping reads with the consumer: worker threads and prefetch."""

from __future__ import annotations

from .prefetch import prefetch

__all__ = ["prefetch"]

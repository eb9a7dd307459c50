"""The engine between a dataset and its consumer: batch reads, worker threads or processes, prefetch."""

from __future__ import annotations

from chute.pipeline.prefetch import Lookahead

__all__ = ["Lookahead"]

"""The ``chute`` command: ``main`` (convert, inspect, verify, bench, demo), ``bench`` and ``demo``."""

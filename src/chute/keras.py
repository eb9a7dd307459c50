"""Keras helpers (imports Keras): :class:`BackupAndRestore` saves and restores a loader's position
with the model's backups, so a killed ``model.fit`` resumes mid-epoch exactly.

``loader.keras()`` gives the loader as a ``keras.utils.PyDataset`` (:class:`KerasDataset`).
"""

from ._require import require_adapter

_adapter = require_adapter("keras")
BackupAndRestore = _adapter.BackupAndRestore
KerasDataset = _adapter.KerasDataset

__all__ = ["BackupAndRestore", "KerasDataset"]

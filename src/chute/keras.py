"""Keras helpers (imports Keras): :class:`BackupAndRestore` saves and restores a loader's position
with the model's backups, so a killed ``model.fit`` resumes mid-epoch exactly; :class:`Doctor`
reports per epoch whether training waits for data, which stage limits, and what to change.

``loader.keras()`` gives the loader as a ``keras.utils.PyDataset`` (:class:`KerasDataset`).
"""

from chute._internal.require import framework

with framework("keras"):
    from chute.adapters.keras import BackupAndRestore, Doctor, KerasDataset

__all__ = ["BackupAndRestore", "Doctor", "KerasDataset"]

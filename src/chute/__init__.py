"""chute: feed training data to deep-learning models as fast as the hardware allows.

Importing chute imports numpy and nothing else; each framework is imported only when its adapter
(``loader.keras()``, ...) is first used, and pyarrow when the chute format is first used
(``chute.open``, ``chute.convert``).
"""

import importlib as _importlib

from chute._internal.version import VERSION as _VERSION
from chute.dataset import Dataset, concat, mix
from chute.errors import (
    ChuteError,
    ConversionError,
    DatasetExistsError,
    EmptyDatasetError,
    FormatError,
    MissingDependencyError,
    OptionError,
    OutOfRangeError,
    ReadError,
    RemoteError,
    SpecError,
    StallError,
    WorkerError,
)
from chute.images import decode, transforms
from chute.loader import Loader
from chute.options import BatchOptions, BlockShuffle, Bucket, Pad, PipelineOptions
from chute.order.epochs import epoch_order
from chute.order.world import World
from chute.remote.store import Remote
from chute.sources.arrays import from_arrays
from chute.sources.files import from_files, image_folder
from chute.sources.generator import from_generator
from chute.sources.sequence import from_sequence
from chute.spec import Field, Spec
from chute.telemetry.doctor import Diagnosis, diagnose

__version__ = _VERSION

__all__ = [
    "BatchOptions",
    "BlockShuffle",
    "Bucket",
    "ChuteError",
    "ConversionError",
    "Dataset",
    "DatasetExistsError",
    "Diagnosis",
    "EmptyDatasetError",
    "Field",
    "FormatError",
    "Loader",
    "MissingDependencyError",
    "OptionError",
    "OutOfRangeError",
    "Pad",
    "PipelineOptions",
    "ReadError",
    "Remote",
    "RemoteError",
    "Spec",
    "SpecError",
    "StallError",
    "WorkerError",
    "World",
    "__version__",
    "concat",
    "convert",
    "decode",
    "diagnose",
    "epoch_order",
    "from_arrays",
    "from_files",
    "from_generator",
    "from_sequence",
    "from_table",
    "image_folder",
    "inspect",
    "mix",
    "open",
    "transforms",
    "verify",
]

# Public names whose modules import pyarrow: loaded on first use, so `import chute` stays light.
_LAZY = {
    "convert": ("chute.conversion.converter", "convert"),
    "open": ("chute.stored", "open_dataset"),
    "verify": ("chute.stored", "verify_dataset"),
    "inspect": ("chute.cli.inspect", "inspect"),
    "from_table": ("chute.sources.table", "from_table"),
}


def __getattr__(name: str) -> object:
    if name == "keras":  # chute.keras: the Keras callbacks (imports Keras)
        return _importlib.import_module("chute.keras")
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(_importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'chute' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

"""chute: feed training data to deep-learning models as fast as the hardware allows.

Importing chute imports numpy and nothing else; each framework is imported only when its adapter
(``loader.keras()``, ...) is first used, and pyarrow when the chute format is first used
(``chute.open``, ``chute.convert``).
"""

import importlib as _importlib

from . import decode, transforms
from .batching import Bucket, Pad
from .dataset import Dataset
from .doctor import Diagnosis, diagnose
from .errors import (
    ChuteError,
    ConversionError,
    EmptyDatasetError,
    FormatError,
    MissingDependencyError,
    OptionError,
    OutOfRangeError,
    ReadError,
    RemoteError,
    SpecError,
    WorkerError,
)
from .loader import Loader
from .mix import mix
from .options import BatchOptions, BlockShuffle, PipelineOptions
from .order import epoch_order
from .remote.store import Remote
from .sources import from_arrays
from .sources.files import from_files, image_folder
from .sources.sequence import from_sequence
from .spec import Field, Spec
from .stream import Stream, StreamLoader, from_generator
from .views import concat
from .world import World

__version__ = "0.1.0"

__all__ = [
    "BatchOptions",
    "BlockShuffle",
    "Bucket",
    "ChuteError",
    "ConversionError",
    "Dataset",
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
    "Stream",
    "StreamLoader",
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
    "convert": ("chute.converter", "convert"),
    "open": ("chute.format.reader", "open_dataset"),
    "verify": ("chute.format.reader", "verify_dataset"),
    "inspect": ("chute.format.inspect", "inspect"),
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

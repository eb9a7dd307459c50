"""chute: feed training data to deep-learning models as fast as the hardware allows.

Importing chute imports numpy and nothing else; each framework is imported only when its adapter
(``loader.keras()``, ...) is first used.
"""

from .dataset import Dataset
from .errors import (
    ChuteError,
    EmptyDatasetError,
    MissingDependencyError,
    OptionError,
    OutOfRangeError,
    SpecError,
)
from .loader import Loader
from .options import BatchOptions, PipelineOptions
from .order import epoch_order
from .sources import from_arrays
from .spec import Field, Spec

__version__ = "0.1.0"

__all__ = [
    "BatchOptions",
    "ChuteError",
    "Dataset",
    "EmptyDatasetError",
    "Field",
    "Loader",
    "MissingDependencyError",
    "OptionError",
    "OutOfRangeError",
    "PipelineOptions",
    "Spec",
    "SpecError",
    "__version__",
    "epoch_order",
    "from_arrays",
]

"""A loader's handles for the frameworks: ``loader.keras()``, ``.torch()``, ``.tf()``, ``.jax()``.

Each imports its adapter module (and so its framework) only when called; a framework that is not
installed gives an error naming the ``pip install 'chute[...]'`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from .._require import require_adapter
from ..options import check_int

if TYPE_CHECKING:
    from ..loader import Loader
    from .jax import JaxBatches
    from .keras import KerasDataset
    from .torch import TorchBatches

__all__ = ["FrameworkHandles"]


class FrameworkHandles:
    """The :class:`chute.Loader` methods that hand its batches to a framework."""

    def keras(self, x: Any = None, y: Any = None, sample_weight: Any = None) -> KerasDataset:
        """This loader as a ``keras.utils.PyDataset`` for ``fit``, ``evaluate`` and ``predict``.

        Batches go to Keras as they are: ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``,
        with dicts feeding layers by name.  For datasets of named fields, ``x``, ``y`` and
        ``sample_weight`` pick the fields: a name, a list of names (a dict keyed by them), or a
        dict ``{layer_name: field_name}``.
        """
        return require_adapter("keras").KerasDataset(self._loader(), x=x, y=y, sample_weight=sample_weight)

    def torch(
        self, pin_memory: bool = False, device: Any = None, nested: bool = False, whole: bool = False
    ) -> TorchBatches:
        """This loader's batches as torch tensors (an ``IterableDataset``; one epoch per loop).

        Zero-copy from numpy where possible; ``pin_memory=True`` pins them, ``device=`` moves them;
        ``nested=True`` makes ragged fields ``torch.nested`` tensors (else pad them with ``pad=``);
        ``whole=True`` makes a loop left part-way a peek (for validation: see ``TorchBatches``).
        Where a ``DataLoader`` is required, use ``DataLoader(loader.torch(), batch_size=None)``.
        """
        return require_adapter("torch").TorchBatches(
            self._loader(), pin_memory=pin_memory, device=device, nested=nested, whole=whole
        )

    def tf(self, prefetch: int = 2) -> Any:
        """This loader as a ``tf.data.Dataset`` of batches whose element spec comes from chute's spec.

        Each iteration of the dataset is the loader's next epoch; it feeds ``model.fit`` and works
        under ``tf.distribute`` (auto-sharding off: chute splits data between ranks itself).
        """
        return require_adapter("tf").dataset(
            self._loader(), prefetch=check_int("prefetch", prefetch, minimum=0)
        )

    def jax(self, device_prefetch: int = 2, sharding: Any = None, device: Any = None) -> JaxBatches:
        """This loader's batches as ``jax.Array``, put on the device ``device_prefetch`` batches ahead.

        With ``sharding`` (a ``jax.sharding.Sharding``) each batch is a global array across its devices.
        """
        return require_adapter("jax").JaxBatches(
            self._loader(), device_prefetch, sharding=sharding, device=device
        )

    def _loader(self) -> Loader:
        return cast("Loader", self)  # (a mixin of Loader alone)

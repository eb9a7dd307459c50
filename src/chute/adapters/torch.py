"""PyTorch: a loader's batches as torch tensors, zero-copy from numpy where possible.

``loader.torch()`` is an ``IterableDataset`` of whole batches, so it can go straight into a
training loop, Lightning or Accelerate, and into ``DataLoader(loader.torch(), batch_size=None)``
where a DataLoader object is required.  chute does the parallel work: a DataLoader around it must
keep ``num_workers=0`` (each DataLoader worker would replay the whole epoch, duplicating data).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any, Optional

import numpy as np
import torch

from chute.adapters import on_arrays
from chute.adapters.contract import LoaderLike
from chute.errors import OptionError, explain

__all__ = ["TorchBatches"]


class TorchBatches(torch.utils.data.IterableDataset):
    """The batches of a :class:`chute.Loader` as torch tensors, one epoch per iteration.

    Numeric fields become tensors sharing memory with the batch's numpy arrays (a read-only array,
    e.g. a slice of a read-only memory map, is copied first); text and bytes become lists of
    ``str`` and ``bytes``, as the ``DataLoader``'s default collate gives; ragged fields stay as
    they are (or become nested tensors with ``nested=True``).  ``pin_memory=True`` pins the
    tensors for fast, asynchronous copies to an accelerator; ``device=`` moves them there
    (``non_blocking`` when pinned).

    An iteration serves the rest of the loader's current epoch.  Left part-way (a ``break``,
    Lightning's ``limit_train_batches``), the loader stays where it was left, so the next iteration
    carries on with the batches not yet seen: for training, every sample is seen once an epoch and
    ``state_dict()`` is exact.  With ``whole=True`` an iteration left part-way is a peek and changes
    nothing: each iteration is the whole epoch, as a ``DataLoader``'s is.  Use it for validation,
    which Lightning samples before training (``num_sanity_val_steps``).
    """

    def __init__(
        self,
        loader: LoaderLike,
        pin_memory: bool = False,
        device: Optional[Any] = None,
        nested: bool = False,
        whole: bool = False,
    ) -> None:
        super().__init__()
        self._loader = loader
        self._nested = nested
        self._whole = whole
        self._device = None if device is None else torch.device(device)
        self._pin = pin_memory and _accelerator_present()
        if pin_memory and not self._pin:
            warnings.warn(
                "chute: pin_memory=True has no effect without an accelerator (no CUDA/XPU/MPS device "
                "found); batches stay in ordinary memory",
                stacklevel=3,
            )

    @property
    def loader(self) -> LoaderLike:
        return self._loader

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[Any]:
        info = torch.utils.data.get_worker_info()
        if info is not None and info.num_workers > 1:
            raise OptionError(
                explain(
                    "loader.torch() inside a DataLoader with num_workers=0",
                    f"num_workers={info.num_workers}: each worker would replay the whole epoch",
                    "Use DataLoader(loader.torch(), batch_size=None) and give the chute loader "
                    "workers= instead; chute reads in parallel itself.",
                )
            )
        spec = self._loader.spec
        ragged = [i for i, f in enumerate(spec.fields) if f.kind == "ragged"] if self._nested else []
        began = self._loader.position()
        batches = iter(self._loader)
        finished = False
        try:
            for batch in batches:
                batch = on_arrays(spec, batch, self._tensor)
                if ragged:
                    leaves = spec.flatten(batch)
                    for i in ragged:
                        leaves[i] = self._nested_tensor(leaves[i])
                    batch = spec.unflatten(leaves)
                yield batch
            finished = True
        finally:
            if not finished:
                batches.close()  # type: ignore[attr-defined]
                if self._whole:
                    self._loader.rewind(began)

    def _nested_tensor(self, rows: np.ndarray) -> Any:
        """Ragged rows as one ``torch.nested`` tensor (jagged layout, each row copied once)."""
        tensor = torch.nested.nested_tensor(
            [torch.from_numpy(np.array(r)) for r in rows], layout=torch.jagged
        )
        return tensor.to(self._device) if self._device is not None else tensor

    def _tensor(self, leaf: np.ndarray) -> Any:
        if leaf.dtype.kind in "US":  # text and bytes: torch has no tensor of them; a list, as
            return leaf.tolist()  # the DataLoader's default collate gives
        if not leaf.flags.writeable:
            leaf = leaf.copy()  # torch may write into what it shares: never into the source's memory
        tensor = torch.from_numpy(leaf)
        if self._pin:
            tensor = tensor.pin_memory()
        if self._device is not None:
            tensor = tensor.to(self._device, non_blocking=self._pin)
        return tensor


def _accelerator_present() -> bool:
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "is_available"):
        return bool(accelerator.is_available())
    return bool(torch.cuda.is_available())

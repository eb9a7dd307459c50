"""PyTorch: a loader's batches as torch tensors, zero-copy from numpy where possible.

``loader.torch()`` is an ``IterableDataset`` of whole batches, so it can go straight into a
training loop, Lightning or Accelerate, and into ``DataLoader(loader.torch(), batch_size=None)``
where a DataLoader object is required.  chute does the parallel work: a DataLoader around it must
keep ``num_workers=0`` (each DataLoader worker would replay the whole epoch, duplicating data).
"""

from __future__ import annotations

import time
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

    A batch that a ``collate=`` function made of other objects than arrays is handed over as it
    is (its arrays in tuples and dicts become tensors), as a ``DataLoader`` hands over what its
    ``collate_fn`` returns.

    An iteration serves the rest of the loader's current epoch.  Left part-way (a ``break``,
    Lightning's ``limit_train_batches``), the loader stays where it was left, so the next iteration
    carries on with the batches not yet seen: for training, every sample is seen once an epoch and
    ``state_dict()`` is exact.  With ``whole=True`` iterating changes nothing: each iteration is
    the whole current epoch, read by batch number (ahead, by the loader's workers) without moving
    the loader, and two iterations at once are independent, as two over a ``DataLoader`` are.  Use
    it for validation, which Lightning samples before training (``num_sanity_val_steps``).
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

    @property
    def class_names(self) -> Optional[list[str]]:
        """The loader's class names (label ``i`` is ``class_names[i]``), or None."""
        return self._loader.class_names

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
        batches = _whole_epoch(self._loader) if self._whole else iter(self._loader)
        try:
            for batch in batches:
                batch = on_arrays(spec, batch, self._tensor)
                if ragged:
                    leaves = spec.flatten(batch)
                    for i in ragged:
                        leaves[i] = self._nested_tensor(leaves[i])
                    batch = spec.unflatten(leaves)
                yield batch
        finally:  # (left part-way: the loader stops its reads)
            batches.close()  # type: ignore[attr-defined]

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


def _whole_epoch(loader: LoaderLike) -> Iterator[Any]:
    """The loader's current epoch from its first batch, fetched by number: the position stays."""
    epoch, number = loader.epoch, 0
    while number < loader.batches_in_epoch:
        asked = time.perf_counter()
        batch, ready = loader.fetch(number, epoch)
        if number >= loader.batches_in_epoch:  # a generator's epoch, found to end before it
            return
        loader.record_delivery(number, time.perf_counter() - asked, 0.0, ready)
        yield batch
        number += 1


def _accelerator_present() -> bool:
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "is_available"):
        return bool(accelerator.is_available())
    return bool(torch.cuda.is_available())

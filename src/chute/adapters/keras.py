"""Keras 3: a loader as a ``keras.utils.PyDataset`` (any backend: tensorflow, jax, torch).

chute does the parallel work itself, so the PyDataset asks Keras for no workers of its own: no
thread or process pool is started or rebuilt per epoch, and no batch is pickled.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
import types
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

import keras

from chute.adapters.contract import LoaderLike
from chute.adapters.tf_threads import serving
from chute.errors import OptionError, SpecError, explain
from chute.spec import Spec

__all__ = ["BackupAndRestore", "KerasDataset"]

# Loaders whose batches Keras asked for out of order (fit's shuffle=True): BackupAndRestore refuses
# them, as the position it saves would not be the batches trained.
_REORDERED: weakref.WeakSet[LoaderLike] = weakref.WeakSet()
# Loaders a BackupAndRestore saves: a stream's endless epoch is then a very long one for Keras (an
# epoch of unknown length that ends early is taken by Keras as the length of every later epoch).
_BACKED_UP: weakref.WeakSet[LoaderLike] = weakref.WeakSet()
# The batches Keras's pass may read, in an epoch restored part-way through steps_per_epoch.
_PASS_LIMIT: weakref.WeakKeyDictionary[LoaderLike, int] = weakref.WeakKeyDictionary()

Arrange = Callable[[Any], Any]


class KerasDataset(keras.utils.PyDataset):
    """A :class:`chute.Loader` behind Keras's PyDataset contract.

    ``ds[i]`` is the loader's batch ``i`` of its current epoch, with no side effect, so the batch
    Keras peeks at to build a model, or prefetches and drops, costs nothing.  The loader moves to
    its next epoch at a Keras ``on_epoch_end`` only once Keras has asked for every batch of the
    epoch: a ``steps_per_epoch`` shorter than the data carries the epoch over into the next Keras
    epoch instead of skipping samples, and ``fit(shuffle=True)``, which reorders batch numbers
    with Keras's own seed (``keras.utils.set_random_seed``), still sees every sample exactly once.

    A generator's loader (``loader.in_order``) can only be read in order: whatever number Keras
    asks for, it is handed the generator's next batch, so ``fit(shuffle=True)`` trains in the
    generator's order, as Keras's own generator path does, and no batch is read twice or skipped.
    The batches Keras reads to build the model (or learn the shapes) and then drops by resetting
    its iterator are handed out again.  A generator with no ``length``/``steps`` is an endless
    dataset for Keras (``num_batches`` None): give ``fit`` its ``steps_per_epoch``.
    """

    def __init__(self, loader: LoaderLike, x: Any = None, y: Any = None, sample_weight: Any = None) -> None:
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=1)
        self._loader = loader
        self._arrange = arrangement(loader.spec, x, y, sample_weight)
        self._lock = threading.Lock()
        self._asked: tuple[int, set[int]] = (loader.epoch, set())
        self._last_index = -1  # to notice Keras reordering batches (fit(shuffle=True))
        self._handed = 0.0  # when the last batch was handed to Keras (for loader.stats())
        # A generator's loader: its batches in order, whatever number is asked, from the position
        # where Keras's pass began (to hand them out again if Keras drops the pass).
        self._in_order: Any = None
        self._pass_began = loader.position()

    @property
    def loader(self) -> LoaderLike:
        return self._loader

    @property
    def class_names(self) -> Optional[list[str]]:
        """The loader's class names (label ``i`` is ``class_names[i]``), or None."""
        return self._loader.class_names

    def __len__(self) -> int:
        return self._loader.batches_in_epoch

    @property
    def num_batches(self) -> int | None:
        """Batches in the loader's current epoch (fewer in an epoch restored part-way); None for a
        generator's epochs of no given length (endless for Keras: cut by ``steps_per_epoch``)."""
        limit = _PASS_LIMIT.get(self._loader)
        if not self._loader.length_known:
            if limit is not None:
                return limit
            return sys.maxsize if self._loader in _BACKED_UP else None
        batches = self._loader.batches_in_epoch
        return batches if limit is None else min(batches, limit)

    def __getitem__(self, index: int) -> Any:
        serving(self._loader)  # (on the TensorFlow backend, from tf.data's thread: see tf_threads)
        if self._loader.in_order:
            return self._arrange(self._next_in_order())
        asked = time.perf_counter()
        epoch = self._loader.epoch
        batch, ready = self._loader.fetch(index, epoch)
        got = time.perf_counter()
        consumed = asked - self._handed if self._handed else 0.0
        self._loader.record_delivery(index, got - asked, consumed, ready)
        with self._lock:
            if self._asked[0] != epoch:
                self._asked = (epoch, set())
            self._asked[1].add(index)
            if index not in (0, self._last_index, self._last_index + 1):
                _REORDERED.add(self._loader)
            self._last_index = index
        out = self._arrange(batch)
        self._handed = time.perf_counter()
        return out

    def _next_in_order(self) -> Any:
        """A generator's next batch, through the loader's own iteration (which reads ahead, and
        moves on at each epoch's end)."""
        with self._lock:
            if self._in_order is None:
                self._in_order = self._batches_in_order()
            return next(self._in_order)

    def _batches_in_order(self) -> Any:
        while True:
            yield from self._loader

    def on_epoch_end(self) -> None:
        self._handed = 0.0  # evaluation and callbacks between epochs are not training steps
        dropped = _keras_drops_the_pass()
        limited = not dropped and _PASS_LIMIT.pop(self._loader, None) is not None
        if self._loader.in_order:
            with self._lock:
                if dropped and self._loader.position() != self._pass_began:
                    if self._in_order is not None:
                        self._in_order.close()
                        self._in_order = None
                    self._loader.rewind(self._pass_began)  # peeked, not trained: hand them out again
                self._pass_began = self._loader.position()
            return
        with self._lock:
            if dropped:  # what Keras read to build the model or learn the shapes
                self._asked = (self._loader.epoch, set())
                self._last_index = -1
                return
            epoch, asked = self._asked
            if epoch != self._loader.epoch:
                return
            if len(asked) == self._loader.batches_in_epoch:
                self._loader.on_epoch_end()
                self._asked = (epoch + 1, set())
            elif limited and asked:  # a restored epoch's pass, cut short: Keras's next pass asks
                # from 0 again for the rest of the loader's epoch
                _, start, _ = self._loader.position()
                self._loader.load_state_dict(self._loader.state_at((epoch, start, len(asked))))
                self._asked = (self._loader.epoch, set())
                self._last_index = -1


def _keras_drops_the_pass() -> bool:
    """Whether Keras calls ``on_epoch_end`` from ``EpochIterator.reset``: it drops its iterator
    and what was read from it since the pass began (the batch read to build the model before
    training; on TensorFlow, the two read to learn the shapes), and starts reading afresh."""
    frame: Optional[types.FrameType] = sys._getframe(2)
    for _ in range(4):
        if frame is None:
            return False
        if frame.f_code.co_name == "reset" and type(frame.f_locals.get("self")).__name__.endswith(
            "EpochIterator"
        ):
            return True
        frame = frame.f_back
    return False


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """``keras.callbacks.BackupAndRestore`` that also saves the loader's position, and restores it.

    Use it in place of Keras's (same arguments, the loader first), with ``shuffle=False`` in
    ``fit`` (chute shuffles; Keras reordering batch numbers would make the position inexact, and is
    refused)::

        model.fit(loader.keras(), epochs=10, shuffle=False,
                  callbacks=[chute.keras.BackupAndRestore(loader, "backup/", save_freq=100)])

    Whenever Keras saves the weights (every ``save_freq`` batches, or each epoch), the loader's
    state after the batches trained so far goes beside them (``chute-loader.json``).  Each backup
    (weights, Keras's epoch, the loader's state) is written whole into a fresh ``backup-NNNNNN``
    directory and then named by one atomic rename of the ``latest`` file, so a run killed at any
    moment (SIGKILL, SIGTERM, Ctrl-C, even mid-save) leaves the previous backup intact and
    consistent; Keras's own callback writes weights and epoch in place, one file after the other.
    When a killed ``fit`` is started again, Keras restores the weights and its epoch and chute its
    position: the interrupted epoch goes on with the batches that were not trained yet (Keras is
    told that epoch is shorter: with ``steps_per_epoch``, the steps it had left), and the following
    epochs are whole, so the batches trained across both runs are those of an uninterrupted run,
    whenever it was stopped (at a batch, in validation, at an epoch's end).  A generator's loader
    (``chute.from_generator``, endless or not) resumes the same way, by reading its generator
    again up to the position saved.
    """

    STATE = "chute-loader.json"
    LATEST = "latest"  # the name of the newest complete backup directory

    def __init__(self, loader: LoaderLike, backup_dir: str, **options: Any) -> None:
        super().__init__(backup_dir, **options)
        self._loader = loader
        self._origin = loader.position()  # where this fit's training began (after a restore)
        self._first = 0  # batches of the origin's epoch left at the origin
        self._trained = 0  # batches trained since the origin
        self._in_epoch = 0  # batches trained in Keras's current epoch, in this run
        self._offset = 0  # batches of Keras's current epoch trained before the restore
        self._quiet: Any = None
        _BACKED_UP.add(loader)

    def on_train_begin(self, logs: Any = None) -> None:
        self._offset = 0
        super().on_train_begin(logs)  # (restores the weights, Keras's epoch and the loader's state)
        self._origin = self._loader.position()
        self._first = self._loader.batches_in_epoch - self._origin[2]
        self._trained = self._in_epoch = 0
        steps = self._steps()
        if self._offset and steps is not None:
            # The restored epoch has steps_per_epoch minus those trained left, although its data
            # goes on (the loader's epoch, which steps_per_epoch carries over, or a stream's).
            _PASS_LIMIT[self._loader] = steps - self._offset
        loader = self._loader
        if self._offset or (loader.length_known and loader.batches_in_epoch < len(loader)):
            # Keras counts a whole epoch's steps in the restored epoch; it ends sooner, as it
            # should: hush the "input ran out of data" warning Keras gives for that, for this epoch.
            self._quiet = warnings.catch_warnings()
            self._quiet.__enter__()
            warnings.filterwarnings("ignore", message="Your input ran out of data")

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._current_epoch = epoch  # (Keras's callback counts from 0 again in a restored run)
        self._in_epoch = 0

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if self._loader in _REORDERED:
            raise OptionError(
                explain(
                    "batches asked for in order, so the position saved is the batches trained",
                    "Keras reordering the loader's batches (model.fit's shuffle=True, its default)",
                    "Call model.fit(..., shuffle=False): chute already shuffles every epoch (shuffle=True "
                    "on the loader).",
                )
            )
        # (with steps_per_execution, Keras reports the last of the steps it ran)
        self._trained += batch + 1 - self._in_epoch
        self._in_epoch = batch + 1
        super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if self._quiet is not None:  # the short, restored epoch is over
            self._quiet.__exit__(None, None, None)
            self._quiet = None
        self._in_epoch = self._offset = 0  # (a backup from here on is at Keras's next epoch)
        _PASS_LIMIT.pop(self._loader, None)
        super().on_epoch_end(epoch, logs)

    def _steps(self) -> Optional[int]:
        """Keras's steps per epoch (``steps_per_epoch``, or the loader's length), if known."""
        steps = self.params.get("steps") if self.params else None
        return int(steps) if steps else None

    def _position(self) -> tuple[tuple[int, int, int], bool]:
        """The loader's position after the batches trained, and whether that ends an epoch."""
        epoch, start, step = self._origin
        trained = self._trained
        if not self._loader.length_known:  # (a generator's endless epoch: never ends)
            return (epoch, start, step + trained), False
        if trained < self._first:
            return (epoch, start, step + trained), False
        trained -= self._first
        full = len(self._loader)
        return (epoch + 1 + trained // full, 0, trained % full), trained % full == 0

    def _save_model(self) -> None:
        previous = self._latest()
        folder = f"backup-{int(previous[7:]) + 1 if previous else 0:06d}"
        self._use(folder)
        shutil.rmtree(os.path.join(self.backup_dir, folder), ignore_errors=True)  # a half-written one
        os.makedirs(os.path.join(self.backup_dir, folder))
        position, at_epoch_end = self._position()
        steps, in_epoch = self._steps(), self._offset + self._in_epoch
        # Keras's epoch is over once its steps are trained, or its data ran out (the loader's epoch
        # ended): a run stopped after that, before Keras's on_epoch_end (validation, callbacks),
        # resumes at Keras's next epoch instead of training this one again.
        done = self._in_epoch > 0 and (at_epoch_end or (steps is not None and in_epoch >= steps))
        # (Keras's own count of the epochs begun, set by its callback)
        current: int = self._current_epoch
        self._current_epoch = current + done
        try:
            super()._save_model()
        finally:
            self._current_epoch = current
        with open(self._state_path, "w") as f:
            saved = {"loader": self._loader.state_at(position), "keras_epoch_steps": 0 if done else in_epoch}
            json.dump(saved, f)
        partial = os.path.join(self.backup_dir, f"{self.LATEST}.tmp")
        with open(partial, "w") as f:
            f.write(folder)
        os.replace(partial, os.path.join(self.backup_dir, self.LATEST))  # the backup is complete
        if previous:
            shutil.rmtree(os.path.join(self.backup_dir, previous), ignore_errors=True)

    def _latest(self) -> str | None:
        try:
            with open(os.path.join(self.backup_dir, self.LATEST)) as f:
                name = f.read().strip()
        except FileNotFoundError:
            return None
        return name if name.startswith("backup-") and name[7:].isdigit() else None

    def _use(self, folder: str) -> None:
        """Point Keras's paths (and the loader state's) into one backup directory."""
        where = os.path.join(self.backup_dir, folder)
        self._weights_path = os.path.join(where, "latest.weights.h5")
        self._training_metadata_path = os.path.join(where, "training_metadata.json")
        self._prev_weights_path = f"{self._weights_path}.bkp"
        self._prev_training_metadata_path = f"{self._training_metadata_path}.bkp"
        self._state_path = os.path.join(where, self.STATE)

    def _load_model(self) -> None:
        latest = self._latest()
        if latest is None:  # nothing saved yet (or only a backup that never completed)
            return
        self._use(latest)
        super()._load_model()
        if not os.path.exists(self._state_path):
            return
        with open(self._state_path) as f:
            saved = json.load(f)
        self._loader.load_state_dict(saved["loader"])
        self._offset = int(saved["keras_epoch_steps"])  # (the restored epoch's steps already trained)


class Doctor(keras.callbacks.Callback):
    """The bottleneck doctor for ``model.fit``: at each epoch's end, how much of the time training
    waited for data, samples/s, the limiting stage and what to change (:func:`chute.diagnose`).

    The figures go into Keras's logs (``input_waiting_fraction``, ``input_samples_per_s``, so
    ``History``, ``CSVLogger`` and ``TensorBoard`` listed after it record them); the line is
    printed with ``print_fn`` unless ``verbose=False``; every epoch's :class:`Diagnosis` is kept in
    ``history`` (``d.to_dict()`` / ``d.to_json()`` to export).
    """

    def __init__(
        self, loader: LoaderLike, verbose: bool = True, print_fn: Callable[[str], Any] = print
    ) -> None:
        super().__init__()
        self.loader, self.verbose, self.print_fn = loader, verbose, print_fn
        self.history: list[Any] = []

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.loader.stats(reset=True)  # the epoch's figures only

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        from chute.telemetry.doctor import diagnose

        diagnosis = diagnose(self.loader, epoch)
        self.history.append(diagnosis)
        if logs is not None:
            logs["input_waiting_fraction"] = diagnosis.waiting_fraction
            logs["input_samples_per_s"] = diagnosis.samples_per_s
        if self.verbose:
            self.print_fn(str(diagnosis))


def arrangement(spec: Spec, x: Any, y: Any, sample_weight: Any) -> Arrange:
    """How a loader batch becomes the ``(x, y, sample_weight)`` structure Keras takes."""
    if x is None:
        if y is not None or sample_weight is not None:
            raise SpecError(
                explain(
                    "x together with y or sample_weight", "y or sample_weight without x", "Also pass x=..."
                )
            )
        treedef = spec.treedef
        if isinstance(treedef, tuple) and not 1 <= len(treedef) <= 3:
            raise SpecError(
                explain(
                    "samples of (x,), (x, y) or (x, y, sample_weight) for Keras",
                    f"a tuple of {len(treedef)} parts {spec.structure}",
                    "Name the parts: loader.keras(x=[...], y=..., sample_weight=...).",
                )
            )
        return _identity
    if sample_weight is not None and y is None:
        raise SpecError(
            explain("y together with sample_weight", "sample_weight without y", "Also pass y=...")
        )
    pickers = [_picker(spec, part) for part in (x, y, sample_weight) if part is not None]

    def arrange(batch: Any) -> tuple[Any, ...]:
        leaves = spec.flatten(batch)
        return tuple(pick(leaves) for pick in pickers)

    return arrange


def _identity(batch: Any) -> Any:
    return batch


def _picker(spec: Spec, selector: Any) -> Callable[[list[Any]], Any]:
    position = {name: i for i, name in enumerate(spec.names)}

    def where(name: Any) -> int:
        if name not in position:
            spec.field(str(name))  # raises the SpecError that lists the names
        return position[name]

    if isinstance(selector, str):
        i = where(selector)
        return lambda leaves: leaves[i]
    if isinstance(selector, Mapping):
        pairs = [(str(key), where(name)) for key, name in selector.items()]
    elif isinstance(selector, Sequence):
        pairs = [(str(name), where(name)) for name in selector]
    else:
        raise SpecError(
            explain(
                "a field name, a list of names or a dict {layer_name: field_name}",
                f"{selector!r} of type {type(selector).__name__}",
                f"Choose among the fields {list(spec.names)}.",
            )
        )
    return lambda leaves: {key: leaves[i] for key, i in pairs}

"""Loading a JPEG folder batch by batch: chute against the decode ceiling and its peers.

Generates ``--images`` JPEGs of 96-160 px in 10 class folders, then measures, in one run and
alternating (medians of ``--repeats``): read, decode, resize to 64x64, random flip, float32,
batch 128, shuffled.

- ceiling: the single-core rate of the same decode + resize, times the cores, over the epoch's
  images (their bytes in memory), measured again just before each loader is: the host's speed
  drifts by up to 25% within seconds, so each loader is also given against the ceiling measured
  seconds before it (the median of those ratios), besides the ratio of the medians;
- the whole job by hand: read, decode + resize into a batch, flip and float32, one process, one
  reused buffer, times the cores, also measured just before each loader: the job's own cost, so a
  loader's ratio to it is what its engine (workers, hand-over, order) costs on top;
- chute as its guide says: ``image_folder(root, size=(64, 64)).map_batch(augment)`` where
  ``augment`` is ``chute.transforms.random_flip`` (in place) then ``to_float`` on the whole batch
  (images are decoded straight into the batch, in the shared memory it travels in); process and
  thread workers, and inline (``workers=0``, one core);
- chute with a per-sample map as users first write it (``image[:, ::-1]`` and float32 per image);
- torch DataLoader, 2 workers, over an ImageFolder-style Dataset using Pillow (what users write),
  and over one using chute's decoder and OpenCV's flip (the fastest per-sample code);
- Keras PyDataset with workers=2, threads and processes (on Keras's torch backend's adapter);
- tf.data with AUTOTUNE and ``image_dataset_from_directory``, if TensorFlow is installed;
- time to the first batch for chute (after one image is decoded, so the decoders are imported: the
  first `import cv2` of a process can take ~1 s from a cold disk cache, in any loader).

Each measurement is the second of two epochs in a row: loaders that read ahead across epochs
(chute) are timed in their steady state.  chute's loader is made for each measurement and closed
after it, so its read-ahead into a third epoch is not running while the next ceiling is measured.

    python benchmarks/images.py [--images 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

import chute
from chute.images.codecs import decode_image, encode_jpeg
from chute.pipeline.arena import ALIGN, arena, batch_array
from chute.sources.files import read_file

SIZE, BATCH = (64, 64), 128


def make_folder(root: str, images: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(images):
        side = int(rng.integers(96, 161))
        folder = os.path.join(root, f"class{i % 10}")
        os.makedirs(folder, exist_ok=True)
        y, x = np.mgrid[0:side, 0:side]
        pixels = np.stack([(x * 3 + i) % 256, (y * 2 + i) % 256, (x + y) % 256], axis=-1).astype(np.uint8)
        with open(os.path.join(folder, f"{i:06d}.jpg"), "wb") as f:
            f.write(encode_jpeg(pixels, quality=90))


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1], in one pass (every pipeline below uses it)."""
    return np.multiply(image, np.float32(1 / 255), dtype=np.float32)


def decode_flip(sample: tuple[bytes, np.int64], rng: np.random.Generator) -> tuple[np.ndarray, np.int64]:
    """chute's per-sample map: decode (reduced-scale), resize, random flip, float32."""
    data, label = sample
    image = decode_image(data, SIZE)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    return to_float(image), label


def augment(batch: tuple[np.ndarray, np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """chute's batch map: random flip (in place: the images were decoded for this batch) and
    float32, each one vectorised op on the whole batch."""
    images, labels = batch
    return chute.transforms.to_float(chute.transforms.random_flip(images, rng, out=images)), labels


def decode_cv2_flip(data: bytes) -> np.ndarray:
    """torch's strongest per-sample code: chute's decoder, OpenCV's flip (contiguous, 1.6 us)."""
    import cv2

    image = decode_image(data, SIZE)
    return cv2.flip(image, 1) if np.random.random() < 0.5 else image


def pillow_decode(data: bytes) -> np.ndarray:
    """What users write: Pillow open, convert, resize, to numpy."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB").resize((SIZE[1], SIZE[0]), Image.Resampling.BILINEAR))


def count(batches: Iterable[Any]) -> int:
    return sum(len(batch[1]) for batch in batches)


def chute_runner(
    root: str, workers: int, worker_type: str = "thread", per_sample: bool = False
) -> Callable[[], float]:
    """chute's rate: a loader made for the measurement, its second epoch timed, then closed, so its
    read-ahead into the next epoch stops before whatever is measured next (a ceiling, say)."""
    if per_sample:
        data = chute.image_folder(root, decode=False).map(decode_flip)
    else:
        data = chute.image_folder(root, size=SIZE).map_batch(augment)

    def measure() -> float:
        options = dict(shuffle=True, seed=0, workers=workers, prefetch=8, worker_type=worker_type)
        with data.loader(BATCH, **options) as loader:  # type: ignore[arg-type]
            return second_epoch(lambda: count(loader))

    return measure


def second_epoch(run: Callable[[], int]) -> float:
    """Images/s of ``run``'s second epoch in a row (the first warms pools and the page cache)."""
    run()
    start = time.perf_counter()
    images = run()
    return images / (time.perf_counter() - start)


def tf_runners(root: str) -> dict[str, Callable[[], float]]:
    """tf.data with AUTOTUNE, and keras.utils.image_dataset_from_directory, if TensorFlow is here."""
    try:
        import tensorflow as tf
    except ImportError:
        return {}

    def load(path: Any, label: Any) -> tuple[Any, Any]:
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        image = tf.image.resize(image, SIZE)
        image = tf.image.random_flip_left_right(image)
        return tf.cast(image, tf.float32) / 255.0, label

    ds = chute.image_folder(root, decode=False)
    paths, labels = ds.source.paths, ds.source.labels  # type: ignore[attr-defined]
    pipeline = (
        tf.data.Dataset.from_tensor_slices((paths, labels))
        .shuffle(len(paths), seed=0)
        .map(load, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(BATCH)
        .prefetch(tf.data.AUTOTUNE)
    )
    folder = tf.keras.utils.image_dataset_from_directory(
        root, image_size=SIZE, batch_size=BATCH, shuffle=True, seed=0, verbose=False
    )
    return {
        "tf.data, map(num_parallel_calls=AUTOTUNE)": lambda: second_epoch(
            lambda: count(pipeline.as_numpy_iterator())
        ),
        "keras image_dataset_from_directory": lambda: second_epoch(lambda: count(folder.as_numpy_iterator())),
    }


def torch_runner(
    paths: list[str], labels: list[int], decode: Callable[[bytes], np.ndarray]
) -> Callable[[], float]:
    import torch
    from torch.utils.data import DataLoader, Dataset

    class Folder(Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return len(paths)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            with open(paths[i], "rb") as f:
                image = decode(f.read())  # (decode_cv2_flip flips itself)
            if decode is pillow_decode and np.random.random() < 0.5:
                image = image[:, ::-1]
            return torch.from_numpy(to_float(image)), labels[i]

    loader = DataLoader(Folder(), batch_size=BATCH, shuffle=True, num_workers=2, persistent_workers=True)
    return lambda: second_epoch(lambda: count(loader))


def keras_runner(paths: list[str], labels: list[int], processes: bool) -> Callable[[], float]:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    from keras.src.trainers.data_adapters import get_data_adapter

    class Folder(keras.utils.PyDataset):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(workers=2, use_multiprocessing=processes)
            self.order = np.random.permutation(len(paths))

        def __len__(self) -> int:
            return -(-len(paths) // BATCH)

        def __getitem__(self, b: int) -> tuple[np.ndarray, np.ndarray]:
            idx = self.order[b * BATCH : (b + 1) * BATCH]
            images = []
            for i in idx:
                with open(paths[i], "rb") as f:
                    image = pillow_decode(f.read())
                images.append(image[:, ::-1] if np.random.random() < 0.5 else image)
            return to_float(np.stack(images)), np.asarray(labels)[idx]

    adapter = get_data_adapter(x=Folder(), shuffle=False)

    def epoch() -> int:
        adapter.on_epoch_begin()
        total = count(adapter.get_numpy_iterator())
        adapter.on_epoch_end()
        return total

    return lambda: second_epoch(epoch)


def ceiling(blobs: list[bytes], cores: int) -> float:
    """The single-core decode + resize rate over ``blobs`` (the epoch's images, in memory), times
    the cores: as many images as an epoch, so it is measured over as long a time as chute is."""
    start = time.perf_counter()
    for blob in blobs:
        decode_image(blob, SIZE)
    return cores * len(blobs) / (time.perf_counter() - start)


def whole_job(paths: list[str], cores: int) -> float:
    """The whole job done by hand in one process, times the cores: read, decode + resize into a
    batch, flip and float32 (chute's transforms), batch by batch in a shuffled order, every batch
    built in one reused buffer (no allocation, no page faults): what the loader adds to this is
    its own cost (workers, hand-over, order, stats), the rest is the job's."""
    order = np.random.default_rng(0).permutation(len(paths))
    buffer = bytearray(BATCH * SIZE[0] * SIZE[1] * 3 * 5 + 4 * ALIGN)  # uint8 pixels + float32 copy
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for first in range(0, len(order), BATCH):
        with arena(buffer):
            rows = order[first : first + BATCH].tolist()
            images = batch_array((len(rows), *SIZE, 3), np.dtype(np.uint8))
            for row, index in enumerate(rows):
                decode_image(read_file(paths[index]), SIZE, images[row])
            augment((images, None), rng)
    return cores * len(order) / (time.perf_counter() - start)


def pooled_median(measured: dict[str, list[float]]) -> float:
    """The median of every rate in ``measured`` (a reference measured before each loader)."""
    return statistics.median(rate for values in measured.values() for rate in values)


def paired_medians(rates: dict[str, list[float]], references: dict[str, list[float]]) -> dict[str, float]:
    """Each loader's median ratio to the reference measured just before each of its rates."""
    return {
        name: statistics.median(r / c for r, c in zip(values, references[name], strict=True))
        for name, values in rates.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    root = tempfile.mkdtemp(prefix="chute-images-")
    try:
        make_folder(root, args.images)
        ds = chute.image_folder(root, decode=False)
        paths, labels = ds.source.paths, ds.source.labels.tolist()  # type: ignore[attr-defined]
        folder = chute.image_folder(root, size=SIZE).map_batch(augment)
        with open(paths[0], "rb") as f:  # imports the decoders (OpenCV: up to ~1 s from a cold disk
            decode_image(f.read(), SIZE)  # cache), a one-time cost of the process, not of a loader
        start = time.perf_counter()
        next(iter(folder.loader(BATCH, shuffle=True, seed=0, workers=2)))
        first_batch = time.perf_counter() - start
        start = time.perf_counter()
        next(iter(folder.loader(BATCH, shuffle=True, seed=0, workers=2, worker_type="process")))
        first_batch_processes = time.perf_counter() - start
        runners = {
            "chute, 2 process workers, batch transforms": chute_runner(root, 2, "process"),
            "chute, 2 thread workers, batch transforms": chute_runner(root, 2),
            "chute, inline (workers=0), batch transforms": chute_runner(root, 0),
            "chute, 2 process workers, per-sample map (numpy flip)": chute_runner(
                root, 2, "process", per_sample=True
            ),
            "chute, 2 thread workers, per-sample map (numpy flip)": chute_runner(root, 2, per_sample=True),
            "torch DataLoader, Pillow dataset (what users write), 2 workers": torch_runner(
                paths, labels, pillow_decode
            ),
            "torch DataLoader, chute's decoder + OpenCV flip, 2 workers": torch_runner(
                paths, labels, decode_cv2_flip
            ),
            "Keras PyDataset, Pillow, 2 threads": keras_runner(paths, labels, processes=False),
            "Keras PyDataset, Pillow, 2 processes": keras_runner(paths, labels, processes=True),
            **tf_runners(root),
        }
        blobs = []
        for path in paths:
            with open(path, "rb") as f:
                blobs.append(f.read())
        rates: dict[str, list[float]] = {name: [] for name in runners}
        ceilings: dict[str, list[float]] = {name: [] for name in runners}  # each measured just before
        wholes: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.repeats):
            for name, measure in runners.items():
                ceilings[name].append(ceiling(blobs, cores))
                wholes[name].append(whole_job(paths, cores))
                rates[name].append(measure())
        medians = {name: statistics.median(values) for name, values in rates.items()}
        top, job = pooled_median(ceilings), pooled_median(wholes)
        # the host's speed drifts by +-25% over seconds: each rate against the reference measured
        # seconds before it, over as many images, is the steadier figure (median of those ratios)
        adjacent, whole = paired_medians(rates, ceilings), paired_medians(rates, wholes)
        what = f"{args.images:,} JPEGs of 96-160 px -> 64x64, flip, float32, batch {BATCH}"
        print(f"\n{what}; medians of {args.repeats}")
        print(
            f"time to the first batch (chute, 2 workers, decoders already imported): threads "
            f"{first_batch:.2f} s, processes {first_batch_processes:.2f} s\n"
        )
        print(
            "| loader | images/s | x ceiling | x the ceiling measured just before | x the whole job by "
            "hand, measured just before |\n|---|---:|---:|---:|---:|"
        )
        print(f"| decode + resize ceiling (1 core x {cores}) | {top:,.0f} | 1.00 | 1.00 | |")
        print(
            f"| the whole job by hand: read, decode + resize, flip, float32 (1 core x {cores}) | "
            f"{job:,.0f} | {job / top:.2f} | | 1.00 |"
        )
        for name in runners:
            print(
                f"| {name} | {medians[name]:,.0f} | {medians[name] / top:.2f} | {adjacent[name]:.2f} "
                f"| {whole[name]:.2f} |"
            )
        best = max((name for name in runners if name.startswith("chute, 2 ")), key=medians.__getitem__)
        chute_rate = medians[best]
        users = medians["torch DataLoader, Pillow dataset (what users write), 2 workers"]
        same = medians["torch DataLoader, chute's decoder + OpenCV flip, 2 workers"]
        print(
            f"\nchute (best of its 2-worker pipelines) / ceiling: {chute_rate / top:.2f}; "
            f"/ the ceiling measured just before it: {adjacent[best]:.2f} (target >= 0.8); "
            f"/ the whole job by hand in one process a core: {whole[best]:.2f}"
        )
        print(f"chute / torch as users write it: {chute_rate / users:.2f} (target >= 2)")
        print(f"chute / torch with chute's decoder and flip: {chute_rate / same:.2f} (target >= 1.2)")
        tf_rate = medians.get("tf.data, map(num_parallel_calls=AUTOTUNE)")
        if tf_rate:
            print(f"chute / tf.data AUTOTUNE: {chute_rate / tf_rate:.2f} (target >= 1)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

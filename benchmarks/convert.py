"""Converting an image folder (decode + resize + re-encode) with 1 and 2 worker processes.

Makes ``--images`` JPEGs of about 256x256 in class sub-folders, then, in one run and alternating,
converts them with ``chute.convert(image_folder(..., size=(160, 160), jpeg_quality=90))`` using
1 and 2 workers (target: 2 workers >= 1.6x one worker on 2 cores), next to the single-core decode
rate of the same decoder (decode only, no resize or encode) as the ceiling per core.

    python benchmarks/convert.py [--images 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

import numpy as np

import chute
from chute.images.codecs import decode_image, encode_jpeg


def make_folder(root: str, images: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    base = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    for i in range(images):
        folder = os.path.join(root, f"class{i % 10}")
        os.makedirs(folder, exist_ok=True)
        pixels = np.roll(base, i * 7, axis=(0, 1)) // 2 + rng.integers(0, 64, (256, 256, 3), dtype=np.uint8)
        path = os.path.join(folder, f"{i:06d}.jpg")
        with open(path, "wb") as f:
            f.write(encode_jpeg(pixels, quality=90))
        paths.append(path)
    return paths


def decode_rate(paths: list[str]) -> float:
    blobs = [open(p, "rb").read() for p in paths]  # noqa: SIM115 - read once, outside the timing
    start = time.perf_counter()
    for blob in blobs:
        decode_image(blob)
    return len(blobs) / (time.perf_counter() - start)


def convert_rate(root: str, out: str, workers: int) -> float:
    source = chute.image_folder(root, size=(160, 160), jpeg_quality=90)
    start = time.perf_counter()
    chute.convert(source, out, workers=workers, overwrite=True, progress=False)
    return len(source) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="chute-convert-")
    try:
        paths = make_folder(os.path.join(root, "photos"), args.images)
        rates: dict[str, list[float]] = {"decode": [], "1": [], "2": []}
        for _ in range(args.repeats):  # alternated, so the machine's drift touches all alike
            rates["decode"].append(decode_rate(paths))
            for workers in ("1", "2"):
                rates[workers].append(
                    convert_rate(os.path.join(root, "photos"), os.path.join(root, "o.chute"), int(workers))
                )
        decode, one, two = (statistics.median(rates[k]) for k in ("decode", "1", "2"))
        what = f"{args.images:,} JPEGs of 256x256 -> 160x160, re-encoded at quality 90"
        print(f"\n{what}; medians of {args.repeats}\n")
        print("| measurement | images/s | ratio |\n|---|---:|---:|")
        print(f"| decode only, one core (ceiling per core) | {decode:,.0f} | |")
        print(f"| chute.convert, 1 worker process | {one:,.0f} | {one / decode:.2f} of decode |")
        print(
            f"| chute.convert, 2 worker processes | {two:,.0f} | {two / one:.2f}x 1 worker (target >= 1.6) |"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

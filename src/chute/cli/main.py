"""The ``chute`` command line."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Optional

from chute.errors import ChuteError, FormatError, explain

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from chute.cli.demo import run_demo

    result = run_demo(epochs=args.epochs, seed=args.seed)
    print(f"final validation accuracy: {result.val_accuracy:.3f}")
    print(f"fit: {args.epochs} epochs in {result.fit_seconds:.1f} s")
    print(f"loader throughput, iterated directly: {result.loader_samples_per_s:,.0f} samples/s")
    if result.val_accuracy < 0.9:
        print("validation accuracy is below 0.9: something is wrong", file=sys.stderr)
        return 1
    return 0


def _convert(args: argparse.Namespace) -> int:
    from chute.conversion.converter import convert

    if args.engine == "ray":
        return _convert_ray(args)
    ds = convert(
        _source(args.src, args.resize, args.jpeg_quality),
        args.dst,
        workers=args.workers,
        shard_size=args.shard_size,
        resume=args.resume,
        overwrite=args.overwrite,
        on_error=args.on_error,
        progress=True,
    )
    classes = "" if ds.class_names is None else f" of {len(ds.class_names)} classes"
    print(f"wrote {len(ds):,} samples{classes} to {args.dst}")
    return 0


def _convert_ray(args: argparse.Namespace) -> int:
    """The conversion as Ray tasks: on the cluster at RAY_ADDRESS, else a local one of --workers CPUs."""
    from chute._internal.require import require
    from chute.conversion.ray import convert_source_ray

    ray = require("ray", "for --engine ray", "pip install 'chute[ray]'")
    dataset = _dataset(args.src, args.resize, args.jpeg_quality)
    if not ray.is_initialized():
        ray.init(num_cpus=args.workers or None, include_dashboard=False, log_to_driver=False)
    ds = convert_source_ray(dataset, args.dst, shard_size=args.shard_size, overwrite=args.overwrite)
    print(f"wrote {len(ds):,} samples to {args.dst} with Ray")
    return 0


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, received {text!r}") from None


def _bench(args: argparse.Namespace) -> int:
    from chute.cli.bench import BenchOptions, bench, format_table, plot, shuffle_table

    ds = _dataset(args.path, args.resize, None)
    if args.shuffle_quality:
        print(shuffle_table(ds, args.batch_size))
        return 0
    compare = tuple(name for name in args.compare.split(",") if name) if args.compare else ()
    unknown = set(compare) - {"torch", "tf", "keras"}
    if unknown:
        raise ChuteError(
            explain("--compare names from torch, tf, keras", sorted(unknown), "Use e.g. --compare torch,tf.")
        )
    options = BenchOptions(args.batch_size, args.workers, args.prefetch, compare, args.seconds)
    result = bench(ds, options, say=lambda text: print(text, file=sys.stderr))
    print(f"{args.path}: {len(ds):,} samples, batch {args.batch_size}, {args.seconds:g} s budget")
    print(format_table(result))
    if args.plot:
        plot(result, args.plot)
        print(f"plot written to {args.plot}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from chute.cli.inspect import inspect

    print(inspect(args.path, samples=args.samples))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from chute.stored import verify_dataset

    manifest = verify_dataset(args.path, progress=True)
    fields = len(manifest.spec.fields)
    print(
        f"{args.path}: OK, {len(manifest.shards)} shard(s), {manifest.rows:,} rows, every checksum matches; "
        f"{fields} fields of numbers, bytes and text: nothing in it is unpickled or evaluated"
    )
    return 0


_RESIZE = "image folders: decode and resize to HEIGHTxWIDTH pixels (height first, as size=(h, w))"


def _size(text: str) -> tuple[int, int]:
    """``HxW`` (height first, as ``image_folder(size=(h, w))`` and Keras's ``image_size``)."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected HEIGHTxWIDTH such as 128x160, received {text!r}"
        ) from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"expected a positive HEIGHTxWIDTH, received {text!r}")
    return height, width


def _source(text: str, resize: Optional[tuple[int, int]], jpeg_quality: Optional[int]) -> object:
    """A CLI source: an image folder, a chute dataset, a .npy/.npz file, or a Parquet/CSV table."""
    import os

    import numpy as np

    from chute.format import MANIFEST
    from chute.remote.store import is_url
    from chute.sources.arrays import from_arrays
    from chute.sources.files import image_folder

    if is_url(text):
        from chute.stored import open_dataset

        return open_dataset(text)
    if os.path.isdir(text) and not os.path.isfile(os.path.join(text, MANIFEST)):
        return image_folder(text, size=resize, jpeg_quality=jpeg_quality)

    if text.endswith(".npy"):
        return from_arrays(np.load(text, mmap_mode="r"))
    if text.endswith(".npz"):
        with np.load(text) as arrays:
            return from_arrays({name: arrays[name] for name in arrays.files})
    if os.path.isdir(text):
        from chute.stored import open_dataset

        return open_dataset(text)
    return text


def _dataset(text: str, resize: Optional[tuple[int, int]], jpeg_quality: Optional[int]) -> Any:
    """A CLI source as a Dataset with random access (a table is loaded with ``from_table``)."""
    from chute.dataset import Dataset
    from chute.sources.table import from_table

    source = _source(text, resize, jpeg_quality)
    return source if isinstance(source, Dataset) else from_table(str(source))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chute", description="Fast training-data loading.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train a small Keras model on built-in digits through chute")
    demo.add_argument("--epochs", type=int, default=15)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)

    convert = commands.add_parser(
        "convert", help="convert an image folder, a table, arrays or a chute dataset to the chute format"
    )
    convert.add_argument(
        "src", help="an image folder (root/<class>/<image>), a .parquet/.csv table, .npy/.npz, or a dataset"
    )
    convert.add_argument("dst")
    convert.add_argument("--workers", type=int, default=0)
    convert.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="ray: parallel Ray tasks (RAY_ADDRESS or local)",
    )
    convert.add_argument("--shard-size", default="256MB")
    convert.add_argument("--resume", action="store_true", help="keep the shards a killed run finished")
    convert.add_argument("--overwrite", action="store_true")
    convert.add_argument("--on-error", choices=("raise", "skip"), default="raise")
    convert.add_argument(
        "--resize",
        type=_size,
        default=None,
        help=_RESIZE + "; stored as pixels (without it: the files' encoded bytes, decoded when read)",
    )
    convert.add_argument(
        "--jpeg-quality",
        type=int,
        default=None,
        help="image folders: store the (resized) images as JPEG",
    )
    convert.set_defaults(run=_convert)

    bench = commands.add_parser(
        "bench", help="measure the loader on your data: settings, ceiling, peers, a recommendation"
    )
    bench.add_argument("path", help="an image folder, a chute dataset, .npy/.npz, or a .parquet/.csv table")
    bench.add_argument("--batch-size", type=int, default=128)
    bench.add_argument("--workers", type=_ints, default=(0, 1, 2), help="worker counts to try, e.g. 0,2,4")
    bench.add_argument("--prefetch", type=_ints, default=(2, 8), help="prefetch depths to try, e.g. 2,8")
    bench.add_argument("--compare", default="", help="peers to measure too: torch,tf,keras (if installed)")
    bench.add_argument("--seconds", type=float, default=30.0, help="the whole run's time budget")
    bench.add_argument("--resize", type=_size, default=None, help=_RESIZE)
    bench.add_argument("--plot", default=None, help="write throughput and stage breakdown to this PNG")
    bench.add_argument("--shuffle-quality", action="store_true", help="report each shuffle mode's quality")
    bench.set_defaults(run=_bench)

    inspect = commands.add_parser("inspect", help="show a dataset's spec, rows, shards and a few samples")
    inspect.add_argument("path")
    inspect.add_argument("--samples", type=int, default=3)
    inspect.set_defaults(run=_inspect)

    verify = commands.add_parser("verify", help="recompute every checksum; exit 1 naming a bad shard")
    verify.add_argument("path")
    verify.set_defaults(run=_verify)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except FormatError as error:
        print(f"chute: {error}", file=sys.stderr)
        return 1
    except ChuteError as error:
        print(f"chute: {error}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())

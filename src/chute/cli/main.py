"""The ``chute`` command line.

Exit status: 0 success; 1 a chute error about the data or the run (a missing or damaged file, an
existing destination, a sample that fails, a missing optional package), printed as one message
that says what to do; 2 a usage error (an unknown option or a bad value, from argparse);
130 interrupted (Ctrl-C); 141 its output closed early (``chute inspect ... | head``), quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Optional

from chute.cli.messages import Flag, as_flags, printable
from chute.cli.paths import KINDS, dataset, source
from chute.errors import ChuteError

__all__ = ["main"]

OK, FAILED, USAGE, INTERRUPTED, CLOSED_PIPE = 0, 1, 2, 130, 141


def _demo(args: argparse.Namespace) -> int:
    from chute.cli.demo import run_demo

    result = run_demo(epochs=args.epochs, seed=args.seed)
    print(f"final validation accuracy: {result.val_accuracy:.3f}")
    print(f"fit: {args.epochs} epochs in {result.fit_seconds:.1f} s")
    print(f"loader throughput, iterated directly: {result.loader_samples_per_s:,.0f} samples/s")
    if result.val_accuracy < 0.9:
        print("chute: validation accuracy is below 0.9: something is wrong", file=sys.stderr)
        return FAILED
    return OK


def _convert(args: argparse.Namespace) -> int:
    from chute.conversion.converter import convert

    if args.engine == "ray":
        return _convert_ray(args)
    ds = convert(
        source(args.src, "SRC", args.resize, args.jpeg_quality),
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
    return OK


def _convert_ray(args: argparse.Namespace) -> int:
    """The conversion as Ray tasks: on the cluster at RAY_ADDRESS, else a local one of --workers CPUs."""
    from chute._internal.require import require
    from chute.conversion.ray import convert_source_ray

    ray = require("ray", "for --engine ray", "pip install 'chute[ray]'")
    found = dataset(args.src, "SRC", args.resize, args.jpeg_quality)
    if not ray.is_initialized():
        ray.init(num_cpus=args.workers or None, include_dashboard=False, log_to_driver=False)
    ds = convert_source_ray(found, args.dst, shard_size=args.shard_size, overwrite=args.overwrite)
    print(f"wrote {len(ds):,} samples to {args.dst} with Ray")
    return OK


def _bench(args: argparse.Namespace) -> int:
    from chute.cli.bench import BenchOptions, bench, format_table, plot, shuffle_table

    if args.plot:  # before a run of --seconds, not after it
        _check_plot(args.plot)
    ds = dataset(args.path, "PATH", args.resize)
    if args.shuffle_quality:
        print(shuffle_table(ds, args.batch_size))
        return OK
    options = BenchOptions(args.batch_size, args.workers, args.prefetch, args.compare, args.seconds)
    result = bench(ds, options, say=lambda text: print(text, file=sys.stderr))
    print(f"{args.path}: {len(ds):,} samples, batch {args.batch_size}, {args.seconds:g} s budget")
    print(format_table(result))
    if args.plot:
        plot(result, args.plot)
        print(f"plot written to {args.plot}")
    return OK


def _check_plot(path: str) -> None:
    from chute._internal.require import require
    from chute.errors import OptionError, explain

    require("matplotlib", "for --plot", "pip install 'chute[plot]'")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OptionError(
            explain(
                "--plot FILE in an existing directory", f"{path!r}: {folder} does not exist", "Create it."
            )
        )


def _inspect(args: argparse.Namespace) -> int:
    from chute.cli.inspect import inspect

    print(inspect(args.path, samples=args.samples))
    return OK


def _verify(args: argparse.Namespace) -> int:
    from chute.stored import verify_dataset

    manifest = verify_dataset(args.path, progress=True)
    fields = len(manifest.spec.fields)
    print(
        f"{args.path}: OK, {len(manifest.shards)} shard(s), {manifest.rows:,} rows, every checksum matches; "
        f"{fields} fields of numbers, bytes and text: nothing in it is unpickled or evaluated"
    )
    return OK


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, received {text!r}") from None
    if min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected numbers of 0 or more, received {text!r}")
    return values


_PEERS = ("torch", "tf", "keras")


def _peers(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = sorted(set(names) - set(_PEERS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"expected names from {', '.join(_PEERS)}, received {', '.join(unknown)}: "
            "use e.g. --compare torch,tf"
        )
    return names


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


# Each flag's keyword in chute's Python API, or None where the flag has none.  The library's
# messages name keywords (on_error='skip'); the terminal shows them as these flags
# (--on-error skip).  A test checks every flag of the parser below is here.
KEYWORDS: dict[str, Optional[str]] = {
    "--epochs": "epochs",
    "--seed": "seed",
    "--workers": "workers",
    "--engine": None,
    "--shard-size": "shard_size",
    "--resume": "resume",
    "--overwrite": "overwrite",
    "--on-error": "on_error",
    "--resize": "size",
    "--jpeg-quality": "jpeg_quality",
    "--batch-size": "batch_size",
    "--prefetch": "prefetch",
    "--compare": None,
    "--seconds": None,
    "--plot": None,
    "--shuffle-quality": None,
    "--samples": None,
    "--version": None,
}
_RESIZE = "image folders: decode and resize to HxW pixels, height first (as size=(h, w) in Python)"


class _Help(argparse.HelpFormatter):
    """Each option's default after its help (``off`` for a switch); an indented line of a
    description or epilog (an example command) is kept as written, the rest wrapped."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS or "default:" in text:
            return text
        if action.default is False:
            return f"{text} (default: off)"
        return f"{text} (default: {'none' if action.default in (None, '') else '%(default)s'})"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        fill = super()._fill_text
        return "\n".join(
            indent + line if line.startswith(" ") else fill(line, width, indent) for line in text.splitlines()
        )


def _command(commands: Any, name: str, summary: str, description: str, example: str) -> Any:
    return commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=f"Example:\n  {example}",
        formatter_class=_Help,
    )


def _demo_parser(commands: Any) -> None:
    demo = _command(
        commands,
        "demo",
        "train a small Keras model on built-in digits through chute",
        "Train a small Keras model on scikit-learn's bundled digits through chute loaders and print "
        "the accuracy and the loader's speed (needs: pip install 'chute[demo]').",
        "chute demo --epochs 5",
    )
    demo.add_argument("--epochs", type=int, default=15, metavar="N", help="epochs to train")
    demo.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the shuffle and the model")
    demo.set_defaults(run=_demo)


def _convert_parser(commands: Any) -> None:
    convert = _command(
        commands,
        "convert",
        "convert an image folder, a table, arrays or a chute dataset to the chute format",
        "Convert SRC into a chute dataset at DST: checksummed shards, visible only once complete. "
        f"SRC may be {KINDS}. An image folder's images are stored as the files encode them "
        "(decoded when read) unless --resize or --jpeg-quality is given.",
        "chute convert photos/ photos.chute --resize 224x224 --workers 4",
    )
    convert.add_argument("src", metavar="SRC", help=f"what to convert: {KINDS}")
    convert.add_argument("dst", metavar="DST", help="the directory (or URL) of the chute dataset to write")
    convert.add_argument(
        "--workers", type=int, default=0, metavar="N", help="worker processes reading and decoding samples"
    )
    convert.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this machine; ray: parallel Ray tasks (the cluster at RAY_ADDRESS, or a local one)",
    )
    convert.add_argument(
        "--shard-size", default="256MB", metavar="SIZE", help="target bytes per shard (64MB, 1GiB, ...)"
    )
    convert.add_argument(
        "--resume", action="store_true", help="keep the shards a killed or failed run finished, and go on"
    )
    convert.add_argument("--overwrite", action="store_true", help="replace an existing dataset at DST")
    convert.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="raise: stop at the first sample that fails; skip: leave it out (counted in the manifest)",
    )
    convert.add_argument(
        "--resize",
        type=_size,
        default=None,
        metavar="HxW",
        help=_RESIZE + ", stored as pixels; none: store the files' encoded bytes, decoded when read",
    )
    convert.add_argument(
        "--jpeg-quality",
        type=int,
        default=None,
        metavar="Q",
        help="image folders: store the (resized) images re-encoded as JPEG at quality Q (1-100)",
    )
    convert.set_defaults(run=_convert)


def _bench_parser(commands: Any) -> None:
    bench = _command(
        commands,
        "bench",
        "measure the loader on your data: settings, ceiling, peers, a recommendation",
        "Measure chute's loader on PATH with each combination of worker counts and prefetch depths "
        "within a time budget, against the raw read rate of the same storage (and peers with "
        "--compare), and recommend a setting.",
        "chute bench photos.chute --batch-size 64 --workers 0,2,4 --seconds 20",
    )
    bench.add_argument("path", metavar="PATH", help=f"the data to load: {KINDS}")
    bench.add_argument("--batch-size", type=int, default=128, metavar="N", help="samples per batch")
    bench.add_argument(
        "--workers", type=_ints, default="0,1,2", metavar="LIST", help="worker counts to try, e.g. 0,2,4"
    )
    bench.add_argument(
        "--prefetch", type=_ints, default="2,8", metavar="LIST", help="prefetch depths to try, e.g. 2,8"
    )
    bench.add_argument(
        "--compare", type=_peers, default="", metavar="LIST", help="peers to measure too: torch,tf,keras"
    )
    bench.add_argument("--seconds", type=float, default=30.0, metavar="S", help="the whole run's time budget")
    bench.add_argument("--resize", type=_size, default=None, metavar="HxW", help=_RESIZE)
    bench.add_argument(
        "--plot", default=None, metavar="FILE", help="write throughput and stage breakdown to this PNG"
    )
    bench.add_argument(
        "--shuffle-quality", action="store_true", help="report each shuffle mode's quality instead"
    )
    bench.set_defaults(run=_bench)


def _dataset_parsers(commands: Any) -> None:
    inspect = _command(
        commands,
        "inspect",
        "show a dataset's spec, rows, shards and a few samples",
        "Show a chute dataset's fields, class names, rows, shards and sizes, and its first samples "
        "(no checksum is computed: that is chute verify).",
        "chute inspect photos.chute --samples 5",
    )
    inspect.add_argument("path", metavar="PATH", help="a chute dataset (a directory or URL)")
    inspect.add_argument("--samples", type=int, default=3, metavar="N", help="how many samples to show")
    inspect.set_defaults(run=_inspect)

    verify = _command(
        commands,
        "verify",
        "recompute every checksum; exit 1 naming a bad shard",
        "Recompute every shard's SHA-256 and check it against the manifest; exit 1 naming the first "
        "bad shard.",
        "chute verify photos.chute",
    )
    verify.add_argument("path", metavar="PATH", help="a chute dataset (a directory or URL)")
    verify.set_defaults(run=_verify)


def _parser() -> argparse.ArgumentParser:
    from chute import __version__

    parser = argparse.ArgumentParser(
        prog="chute",
        formatter_class=_Help,
        description="Fast training-data loading: convert data to chute's format, inspect, verify, bench.",
        epilog="Exit status: 0 success, 1 a chute error (the message says what to do), 2 a usage "
        "error, 130 interrupted. See chute COMMAND --help.",
    )
    parser.add_argument("--version", action="version", version=f"chute {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _demo_parser(commands)
    _convert_parser(commands)
    _bench_parser(commands)
    _dataset_parsers(commands)
    return parser


def _flags(parser: argparse.ArgumentParser) -> dict[str, Flag]:
    """Every library keyword the parser has a flag for, as that flag."""
    out = {}
    for command in _subparsers(parser):
        for action in command._actions:
            for option in action.option_strings:
                keyword = KEYWORDS.get(option)
                if keyword is not None:
                    out[keyword] = Flag(option, action.nargs == 0, str(action.metavar or "VALUE"))
    return out


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [command for action in actions for command in action.choices.values()]


def _say(text: str, parser: argparse.ArgumentParser) -> None:
    print(f"chute: {printable(as_flags(text, _flags(parser)))}", file=sys.stderr)


def main(argv: Optional[list[str]] = None) -> int:
    """Run one command; its exit status (see the module's docstring)."""
    parser = _parser()
    args = parser.parse_args(argv)  # a usage error exits 2 here
    try:
        code: int = args.run(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
    except BrokenPipeError:  # as Python's docs advise: no traceback, no second error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return CLOSED_PIPE
    except KeyboardInterrupt:
        advice = (
            " Run the same command with --resume to keep the shards it finished."
            if args.run is _convert
            else ""
        )
        print(f"chute: interrupted.{advice}", file=sys.stderr)
        return INTERRUPTED
    except ChuteError as error:
        _say(str(error), parser)
        return FAILED
    except OSError as error:  # the system refused a path (permissions, a full disk): no traceback
        _say(f"{type(error).__name__}: {error}", parser)
        return FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())

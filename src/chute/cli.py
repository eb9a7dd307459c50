"""The ``chute`` command line."""

from __future__ import annotations

import argparse
import sys
from typing import Optional

from .errors import ChuteError

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    result = run_demo(epochs=args.epochs, seed=args.seed)
    print(f"final validation accuracy: {result.val_accuracy:.3f}")
    print(f"fit: {args.epochs} epochs in {result.fit_seconds:.1f} s")
    print(f"loader throughput, iterated directly: {result.loader_samples_per_s:,.0f} samples/s")
    if result.val_accuracy < 0.9:
        print("validation accuracy is below 0.9: something is wrong", file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chute", description="Fast training-data loading.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train a small Keras model on built-in digits through chute")
    demo.add_argument("--epochs", type=int, default=15)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except ChuteError as error:
        print(f"chute: {error}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())

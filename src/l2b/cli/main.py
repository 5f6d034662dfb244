"""The `l2b` command line. Each sub-command lives in its own module with `add_parser` and `run`;
arguments become plain values or a TrainConfig before any library code sees them."""

from __future__ import annotations

import argparse
import signal
import sys

from ..training.trainer import TrainingDiverged
from . import evaluate, predict, relabel, report, train

COMMANDS = {"train": train, "relabel": relabel, "report": report, "evaluate": evaluate, "predict": predict}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="l2b", description="Learning to Bootstrap: robust training on noisy labels.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        # Validation errors name the file, key and value; a traceback would only hide that.
        print(f"l2b {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (OSError, TrainingDiverged) as err:
        # A full disk, an unwritable directory, a diverged run: the message says what to do.
        print(f"l2b {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        # 128 + the signal, as a shell reports it: 130 for Ctrl-C, 143 for SIGTERM.
        signum = getattr(err, "signum", signal.SIGINT)
        what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
        print(f"l2b {args.command}: {what}", file=sys.stderr)
        return 128 + signum

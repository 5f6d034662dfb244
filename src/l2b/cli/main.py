"""The `l2b` command line. Each sub-command lives in its own module with `add_parser` and `run`;
arguments become plain values or a TrainConfig before any library code sees them.

Startup: every command builds the whole parser, so no command module imports torch, numpy or
the training code at import time; each `run` imports what it needs. `l2b --help`, `l2b train
--help` and argument errors then answer without importing torch (about a second); see
:mod:`l2b.cli.train` for where its choice lists and defaults come from.
"""

from __future__ import annotations

import argparse
import signal
import sys

from .. import __version__
from . import evaluate, predict, pretrain, relabel, report, train

COMMANDS = {
    "train": train,
    "pretrain": pretrain,
    "relabel": relabel,
    "report": report,
    "evaluate": evaluate,
    "predict": predict,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="l2b", description="Learning to Bootstrap: robust training on noisy labels.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
    except Exception as err:
        # A full disk, an unwritable directory, a diverged run: the message says what to do.
        if not isinstance(err, OSError) and not _diverged(err):
            raise
        print(f"l2b {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        # 128 + the signal, as a shell reports it: 130 for Ctrl-C, 143 for SIGTERM.
        signum = getattr(err, "signum", signal.SIGINT)
        what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
        print(f"l2b {args.command}: {what}", file=sys.stderr)
        return 128 + signum


def _diverged(err: Exception) -> bool:
    """Whether `err` is a TrainingDiverged; only a loaded trainer module can have raised one, so a
    command that never trained imports no torch to find out."""
    trainer = sys.modules.get("l2b.training.trainer")
    return trainer is not None and isinstance(err, trainer.TrainingDiverged)

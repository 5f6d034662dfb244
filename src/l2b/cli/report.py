"""`l2b report`: figures and a one-page Markdown report comparing finished runs."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="compare finished runs: figures and report.md",
        description="Write PNG figures (accuracy per epoch; for runs whose true labels are known, weight "
        "histograms, label-issue precision-recall curves and the noise transition matrix; for runs on image "
        "files, a gallery of the most suspect training images), per-class label-issue counts and a one-page "
        "report.md comparing the given runs; for runs on masks, Dice per epoch, Dice at the selected checkpoint, "
        "the mask-quality ranking and overlays of the most suspect masks. The output directory must be new, "
        "empty or hold an earlier report; anything else needs --force.",
    )
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="run directories written by `l2b train`")
    p.add_argument("--out", type=Path, default=Path("report"), help="output directory (default: ./report)")
    p.add_argument(
        "--force",
        action="store_true",
        help="write into --out even when it holds files that no earlier `l2b report` wrote (the report's "
        "own files are overwritten, the others left alone)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="label-issue threshold on the probability of the given label (default: 0.5); for runs on masks, "
        "on a mask's Dice against the prediction (default: 0.8)",
    )


def run(args: argparse.Namespace) -> int:
    from ..reports.plots import make_report  # matplotlib is loaded only for this command

    path = make_report(args.run_dirs, args.out, threshold=args.threshold, overwrite=args.force)
    print(f"wrote {path} and its figures in {path.parent}")
    return 0

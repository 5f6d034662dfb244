"""`l2b relabel`: a corrected label file from a finished run.

Examples flagged as label issues (see :func:`l2b.reports.label_issues`) take the suggested label,
the others keep the label they were trained on. The file lists the run's noisy training examples
(`index` = position in the data set's training split); the clean meta examples are not in it.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from ..reports import LABEL_ISSUES, corrected_labels, label_issues, load_per_example, noise_mask, write_table

DEFAULT_NAME = "relabelled.csv"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "relabel",
        help="write corrected labels for a finished run",
        description="Write a corrected label file (CSV: index,label) for a finished run: examples flagged as "
        "label issues (probability of the given label under the meta-selected model below "
        "--threshold, and another class predicted) take the predicted label, the others keep the "
        "given one. Without --out, writes RUN_DIR/relabelled.csv and RUN_DIR/label_issues.csv (at this "
        "--threshold); with --out, nothing in RUN_DIR is written (it may be read-only).",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory written by `l2b train`")
    p.add_argument("--out", type=Path, default=None, help=f"output CSV (default: RUN_DIR/{DEFAULT_NAME})")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="flag a label when the model gives it less than this probability (default: 0.5)",
    )


def run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.threshold <= 1.0:
        raise ValueError(f"--threshold={args.threshold} must lie in [0, 1]")
    pe = load_per_example(args.run_dir)
    out = args.out if args.out is not None else args.run_dir / DEFAULT_NAME
    if not out.parent.is_dir():
        raise FileNotFoundError(f"directory {out.parent} (of --out {out}) not found")
    fixed = corrected_labels(pe, threshold=args.threshold)
    if args.out is None:  # the run directory is the output; --out elsewhere leaves it untouched
        write_table(label_issues(pe, threshold=args.threshold), args.run_dir / LABEL_ISSUES)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "label"])
        w.writerows(zip(fixed["index"].tolist(), fixed["label"].tolist()))
    changed = fixed["changed"]
    n, k = len(changed), int(changed.sum())
    print(f"changed {k} of {n} labels (threshold {args.threshold:g}); wrote {out}")
    noisy = noise_mask(pe)
    if noisy is not None:  # true labels known (synthetic noise): score the changes
        order = np.argsort(np.asarray(pe["index"]), kind="stable")
        clean = np.asarray(pe["clean_label"]).astype(np.int64)[order]
        right = int((changed & (fixed["label"] == clean)).sum())
        before = int((fixed["given_label"] != clean).sum())
        after = int((fixed["label"] != clean).sum())
        print(
            f"true labels known: {right} of the {k} changes are right, {k - right} wrong; "
            f"wrong labels {before} -> {after} of {n}"
        )
    return 0

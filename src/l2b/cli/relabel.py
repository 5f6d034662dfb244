"""`l2b relabel`: a corrected label list from a finished run, and on request a corrected copy of
the folder tree.

Examples flagged as label issues (see :func:`l2b.reports.label_issues`) take the suggested class,
the others keep the class they were trained on. The list covers the run's training examples
(``index`` = position in the run's training pool, as in label_issues.csv); for image files the
checked (trusted) images of the meta set follow, with their checked class as both ``given_label``
and ``label`` and ``checked`` True, so that the list and ``--copy-to`` hold every labelled image
of the run. For image files it carries each file's ``path`` and is itself a valid ``--data csv``
list (columns ``path`` and ``label``); classes are written by name.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
from pathlib import Path

DEFAULT_NAME = "relabelled.csv"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "relabel",
        help="write corrected labels for a finished run",
        description="Write a corrected label list (CSV: index, path for image files, given_label, label, changed; "
        "classes by name) for a finished run: examples flagged as label issues (probability of the given "
        "label under the selected model below --threshold, and another class predicted) take the predicted "
        "class, the others keep the given one. For image files the list is a valid `--data csv` list. "
        "Without --out, writes RUN_DIR/relabelled.csv and RUN_DIR/label_issues.csv (at this --threshold); "
        "with --out, nothing in RUN_DIR is written (it may be read-only). --copy-to DIR also writes a copy "
        "of the training images sorted into DIR/<corrected class>/ (your files are never moved).",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory written by `l2b train`")
    p.add_argument("--out", type=Path, default=None, help=f"output CSV (default: RUN_DIR/{DEFAULT_NAME})")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="flag a label when the model gives it less than this probability (default: 0.5); for a mask run, "
        "flag a mask whose Dice against the prediction is below it (default: 0.8), and --out is a folder that "
        "receives the corrected masks (default: RUN_DIR/relabelled)",
    )
    p.add_argument(
        "--copy-to",
        type=Path,
        default=None,
        metavar="DIR",
        help="copy every training image into DIR/<corrected class>/ and every checked (trusted) image into "
        "DIR/<checked class>/ (DIR must not exist or be empty; image files only); the original files are left "
        "where they are",
    )


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..reports import (
        LABEL_ISSUES,
        corrected_labels,
        label_issues,
        load_per_example,
        noise_mask,
        run_names,
        write_table,
    )
    from ..rundir import read_files
    from .masks import is_mask_run, relabel
    from .outputs import refuse_foreign_file, refuse_run_file

    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise ValueError(f"--threshold={args.threshold} must lie in [0, 1]")
    if is_mask_run(args.run_dir):
        return relabel(args)
    if args.threshold is None:
        args.threshold = 0.5
    pe = load_per_example(args.run_dir)
    out = args.out if args.out is not None else args.run_dir / DEFAULT_NAME
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give the path of the CSV file to write")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"directory {out.parent} (of --out {out}) not found")
    if args.out is not None:
        refuse_run_file(out, args.run_dir, option="--out")
        refuse_foreign_file(out, option="--out")
    names, paths = run_names(args.run_dir)
    if args.copy_to is not None:
        if paths is None:
            raise ValueError(f"--copy-to: the run in {args.run_dir} was not trained on image files (no files.csv)")
        _check_copy_target(args.copy_to)
    fixed = corrected_labels(pe, threshold=args.threshold)
    if args.out is None:  # the run directory is the output; --out elsewhere leaves it untouched
        table = label_issues(pe, threshold=args.threshold, class_names=names, paths=paths)
        write_table(table, args.run_dir / LABEL_ISSUES)
    shown = (lambda k: names[int(k)]) if names is not None else (lambda k: str(int(k)))
    # (index, given, label, changed, checked): the training examples, then (image files) the checked
    # meta and selection images by file with their checked class (files.csv's given_label).
    rows = [
        (int(i), shown(g), shown(y), bool(c), False)
        for i, g, y, c in zip(fixed["index"], fixed["given_label"], fixed["label"], fixed["changed"])
    ]
    if paths is not None:
        checked = read_files(args.run_dir, roles=("meta", "selection"), column="given_label")
        rows += [(i, checked[i], checked[i], False, True) for i in sorted(checked)]
    n_checked = sum(row[4] for row in rows)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        if paths is None:
            w.writerow(["index", "given_label", "label", "changed"])
            w.writerows((i, given, label, str(changed)) for i, given, label, changed, _ in rows)
        else:
            w.writerow(["index", "path", "given_label", "label", "changed", "checked"])
            w.writerows((i, paths[i], given, label, str(changed), str(c)) for i, given, label, changed, c in rows)
    changed = fixed["changed"]
    n, k = len(changed), int(changed.sum())
    also = f", then the {n_checked} checked images with their checked class" if n_checked else ""
    print(f"changed {k} of {n} labels (threshold {args.threshold:g}); wrote {out}{also}")
    if args.copy_to is not None:
        copied = _copy_tree(args.copy_to, [paths[row[0]] for row in rows], [row[2] for row in rows])
        print(
            f"copied {copied} images into {args.copy_to}/<class>/ ({n_checked} of them checked, under their "
            "checked class; the originals are untouched)"
        )
    noisy = noise_mask(pe)
    if noisy is not None:  # true labels known (simulated noise or a benchmark): score the changes
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


def _check_copy_target(target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"--copy-to {target} exists and is not an empty folder; choose a new folder")


def _copy_tree(target: Path, files: list[str], classes: list[str]) -> int:
    """Copy `files` into target/<class>/; two files of one name get their folder's name prefixed
    (then a number), so that none overwrites another."""
    target.mkdir(parents=True, exist_ok=True)
    taken: set[Path] = set()
    for path, cls in zip(files, classes):
        folder = target / cls
        folder.mkdir(exist_ok=True)
        name = os.path.basename(path)
        dest = folder / name
        if dest in taken:
            dest = folder / f"{Path(path).parent.name}_{name}"
        n = 1
        while dest in taken:
            dest = folder / f"{Path(path).stem}_{n}{Path(path).suffix}"
            n += 1
        taken.add(dest)
        shutil.copy2(path, dest)
    return len(taken)

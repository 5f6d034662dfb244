"""Checks on the files a command is asked to write."""

from __future__ import annotations

from pathlib import Path

from .. import rundir

#: The files of a run directory that a command's --out may never replace.
RUN_FILES = (
    rundir.CONFIG,
    rundir.METRICS,
    rundir.CHECKPOINT,
    rundir.SUMMARY,
    rundir.PER_EXAMPLE,
    rundir.MODEL,
    rundir.MODEL_SAFETENSORS,
    rundir.DATA_INFO,
    rundir.FILES,
    rundir.SKIPPED_FILES,
    rundir.LOCK,
)


def refuse_run_file(out: Path, run_dir: Path, *, option: str) -> None:
    """ValueError when `out` is one of the files that make `run_dir` a run (writing it would
    break the run); the CSV outputs a command writes itself may be replaced."""
    target = out.resolve()
    for name in RUN_FILES:
        if target == (run_dir / name).resolve():
            raise ValueError(
                f"{option} {out} is the run's own {name}; writing it would break the run in {run_dir}: "
                "choose another file"
            )


def refuse_foreign_file(out: Path, *, option: str) -> None:
    """ValueError when `out` exists and is not a table that l2b wrote (every CSV l2b writes starts
    with an ``index,`` header), so that a user's own file (an image, a CSV of theirs) is never
    written over; an earlier output of the command may be replaced."""
    if not out.is_file():
        return
    try:
        with open(out, "rb") as f:
            head = f.read(len(b"index,"))
    except OSError:
        return  # the write itself will say what is wrong
    if head and head != b"index,":  # an empty file holds nothing to lose
        raise ValueError(
            f"{option} {out} exists and is not a table that l2b wrote (it does not start with l2b's 'index,' "
            "header); writing it would replace your file: choose another file, or remove it first"
        )

"""The run directory: its file names, atomic writes, the checkpoint and the recorded config.

Layout of a run directory written by ``l2b train`` (:func:`l2b.training.run_experiment`)::

    config.yaml        the resolved config, the package and torch versions
    metrics.jsonl      one JSON record per completed epoch
    checkpoint.pt      everything needed to resume (written atomically after every epoch and on Ctrl-C;
                       removed once the run has finished)
    summary.json       the final figures
    label_issues.csv   the training examples ranked by label quality, suspected label issues flagged
                       (masks: one row per image, the given mask's Dice against the prediction)
                       (see l2b.reports.issues)
    per_example.npz    per training example: index, clean / given label, last-epoch and mean alpha and
                       beta, pseudo-label, class probabilities of the selected model; the meta indices
                       and the noise transition matrix
    model.pt           the state dict of the epoch selected on the clean meta set
    model.safetensors  the same weights in the safetensors format (for Hugging Face / timm tools)
    data.json          what the model was trained on: class names (in label order), the input shape,
                       whether the true training labels are known (``truth_known``), where the meta,
                       selection and test sets came from, and the input preprocessing
    files.csv          for data read from image files: one line per example of the training pool,
                       ``index,path,given_label,role`` (role: train, meta or selection, index
                       as in per_example.npz and label_issues.csv; then the test set's files,
                       role test, index = position in the test set; given_label as a class
                       name, the checked one for meta and selection; for masks, the mask file)
    skipped_files.csv  the image files left out as undecodable (split, path, reason), with
                       ``--skip-bad-files`` when there were any
    run.lock           held (flock) by the process that owns the run, with its pid, host and start
                       time; removed when it ends (a killed run leaves it, and it no longer blocks)
    tensorboard/       TensorBoard scalars, with ``--tensorboard``

Every module that reads or writes a run directory takes the names from here. This module imports
nothing above it in l2b (only :mod:`l2b.configs`' YAML reader and :mod:`l2b.untrusted`'s safe
torch loader), so that the reports, which only read run directories, never import the training
code; the recorded config becomes a ``TrainConfig`` in :func:`l2b.training.config.read_run_config`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

from .configs import load_yaml_file

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "DATA_INFO",
    "ENCODER",
    "FILES",
    "LABEL_ISSUES",
    "LOCK",
    "METRICS",
    "MODEL",
    "MODEL_SAFETENSORS",
    "PER_EXAMPLE",
    "RUN_OUTPUTS",
    "SKIPPED_FILES",
    "SUMMARY",
    "TENSORBOARD",
    "RunDirectoryLocked",
    "append_metrics",
    "atomic_write_bytes",
    "check_free_space",
    "load_checkpoint",
    "lock_holder",
    "lock_run_dir",
    "prepare_run_dir",
    "read_data_info",
    "read_files",
    "read_test_files",
    "read_run_doc",
    "refuse_existing_run",
    "resume_command",
    "save_checkpoint",
    "write_data_info",
    "write_files",
    "write_metrics",
    "write_run_config",
    "write_skipped_files",
    "write_summary",
]

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
LABEL_ISSUES = "label_issues.csv"
"""File name of the label-issue table in a run directory (see :func:`l2b.reports.label_issues`)."""
PER_EXAMPLE = "per_example.npz"
"""File name of the per-example record in a run directory: training indices, given (and, when
known, true) labels, last-epoch weights and pseudo-labels (see :func:`l2b.reports.load_per_example`)."""
MODEL = "model.pt"
MODEL_SAFETENSORS = "model.safetensors"
SKIPPED_FILES = "skipped_files.csv"
DATA_INFO = "data.json"
FILES = "files.csv"
LOCK = "run.lock"
TENSORBOARD = "tensorboard"
ENCODER = "encoder.safetensors"
"""The pre-trained body's weights in an ``l2b pretrain`` run directory (``--init-weights`` takes it)."""

#: Files an l2b run (``l2b train`` or ``l2b pretrain``) writes into its directory; a folder holding
#: any of them that l2b did not write (a user's own config.yaml or model.pt, say) is refused as
#: the directory of a new run.
RUN_OUTPUTS = (
    CONFIG,
    METRICS,
    SUMMARY,
    PER_EXAMPLE,
    MODEL,
    MODEL_SAFETENSORS,
    DATA_INFO,
    FILES,
    LABEL_ISSUES,
    SKIPPED_FILES,
    ENCODER,
)


def refuse_existing_run(out: Path) -> None:
    """Refuse `out` as the directory of a new run when it holds a run, finished or checkpointed
    (train's or pretrain's), or files that a run writes and l2b did not write; a run that l2b
    started and that stopped before its first checkpoint may be replaced.

    Raises
    ------
    FileExistsError
        Naming the directory and the files found.
    """
    finished = [name for name in (SUMMARY, ENCODER) if (out / name).exists()]
    if finished:
        raise FileExistsError(
            f"run directory {out} already holds a finished run ({', '.join(finished)}); choose another --out"
        )
    if (out / CHECKPOINT).exists():
        raise FileExistsError(
            f"run directory {out} already holds an interrupted run ({CHECKPOINT}); resume it with --resume or choose "
            "another --out"
        )
    present = [name for name in RUN_OUTPUTS if (out / name).exists()]
    if present and not _aborted_run(out):
        raise FileExistsError(
            f"--out {out} holds files that a run writes and l2b did not write ({', '.join(present)}); they would "
            "be overwritten: choose another --out (a new folder)"
        )


def _aborted_run(out: Path) -> bool:
    """Whether `out` holds a run that l2b started and that stopped before its first checkpoint
    (its config.yaml is l2b's: a ``config`` and a ``run`` mapping), which a new run may replace."""
    try:
        doc = read_run_doc(out)
    except (OSError, ValueError):
        return False
    return isinstance(doc.get("run"), dict)


def resume_command(out: str | os.PathLike) -> str:
    """The command that continues the run in `out`, launched as this process was: under torchrun
    (``WORLD_SIZE`` set) the torchrun form with this job's process counts."""
    if "WORLD_SIZE" not in os.environ:
        return f"l2b train --resume {out}"
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    nodes = max(1, world // max(local, 1))
    if nodes == 1:
        return f"torchrun --standalone --nproc-per-node {local} -m l2b train --resume {out}"
    return (
        f"torchrun --nnodes {nodes} --nproc-per-node {local} <the rendezvous options of the first launch> "
        f"-m l2b train --resume {out}"
    )


def atomic_write_bytes(path: Path, write: Callable[[Any], None]) -> None:
    """Write through `write(file)` to a temporary file beside `path`, then rename over it: a
    crash leaves either the old file or the new one, never a torn one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def prepare_run_dir(out: Path) -> None:
    """Create the run directory and prove it writable, before any training starts."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a folder: choose a new folder for the run")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".l2b-write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise OSError(err.errno, f"cannot write to the run directory {out}: {err.strerror or err}") from None


def check_free_space(out: Path, model: torch.nn.Module, *, num_examples: int) -> int:
    """Refuse to start when the disk of `out` cannot hold two checkpoints (the old one stays
    until the new one is complete) plus the final outputs; return the bytes still needed.

    A checkpoint already in `out` (a resumed run) is one of the two: its size counts as already
    on the disk, and as the size of the checkpoints to come when it exceeds the estimate. So a
    run resumed with the free space it left has the space it started with.
    """
    state_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    # model, momentum, best state; per-example statistics; model.pt and per_example.npz at the end.
    checkpoint = 3 * state_bytes + 64 * num_examples + (1 << 20)
    try:
        existing = (out / CHECKPOINT).stat().st_size
    except FileNotFoundError:
        existing = 0
    checkpoint = max(checkpoint, existing)
    need = 2 * checkpoint + state_bytes + 64 * num_examples - existing
    free = shutil.disk_usage(out).free
    if free < need:
        kept = f" besides the {existing / 2**20:.1f} MiB checkpoint it replaces" if existing else ""
        raise OSError(
            errno.ENOSPC,
            f"only {free / 2**20:.1f} MiB free on the disk of {out}; this run needs about "
            f"{need / 2**20:.1f} MiB more{kept} (two checkpoints while one replaces the other, and the "
            "outputs): free some space and start it again" + (f" with `{resume_command(out)}`" if existing else ""),
        )
    return need


# -- owning the run directory -----------------------------------------------------------------


class RunDirectoryLocked(FileExistsError):
    """Another live process owns the run directory (holds its lock)."""


@contextlib.contextmanager
def lock_run_dir(out: Path) -> Iterator[None]:
    """Own the run directory `out` (which must exist) for the duration of the block.

    Takes an exclusive ``flock`` on ``out/run.lock`` and writes this process's pid, host and start
    time into it. The kernel drops the lock when the process ends, however it ends (SIGKILL and
    power loss included), so a lock file left by a dead run never blocks the next one. The file is
    removed on exit while still locked.

    Raises
    ------
    RunDirectoryLocked
        When another process holds the lock; the message names it (pid, host, start time).
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): the directory is not guarded against a second run
        yield
        return
    path = out / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise OSError(err.errno, f"cannot write to the run directory {out}: {err.strerror or err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            os.close(fd)
            raise RunDirectoryLocked(_locked_message(out, holder)) from None
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            fd = -1  # a file system without locks: the run goes unguarded, as without flock
            break
        try:  # the previous holder removes the file as it lets go: hold the one at the path now
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    if fd < 0:
        yield
        return
    try:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def lock_holder(run_dir: str | os.PathLike) -> str | None:
    """Who owns the run directory now: ``"process P on host H (started S)"`` while a live process
    holds its ``run.lock`` (``l2b train`` still running), else None (no lock file, a lock left by
    a dead run, or no flock on this system). Tests with a non-blocking flock, released at once;
    creates and changes nothing."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): runs are not guarded, so none is known to be live
        return None
    try:
        fd = os.open(Path(run_dir) / LOCK, os.O_RDONLY)
    except OSError:  # no lock file: the run ended (it removes the file) or never started
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        except OSError:  # a file system without locks
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _holder(holder: str) -> str:
    try:
        h = json.loads(holder)
        return f"process {h['pid']} on host {h['host']} (started {h['started']})"
    except (ValueError, KeyError, TypeError):
        return "another process (which has not yet recorded its pid)"


def _locked_message(out: Path, holder: str) -> str:
    return (
        f"run directory {out} is in use by {_holder(holder)}, which holds {out / LOCK}; wait for that run to end "
        "or stop it, then try again, or choose another --out"
    )


# -- the recorded config ----------------------------------------------------------------------


def write_run_config(out: Path, config: dict[str, Any], run_info: dict[str, Any]) -> None:
    """config.yaml: the resolved config (``TrainConfig.to_dict()``) under ``config``, versions and
    device under ``run``."""
    (out / CONFIG).write_text(yaml.safe_dump({"config": config, "run": run_info}, sort_keys=False))


def read_run_doc(run_dir: str | Path) -> dict[str, Any]:
    """The parsed config.yaml of a run directory (a mapping with a ``config`` mapping)."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not an l2b run directory")
    doc = load_yaml_file(path)  # builds no objects: a python/* tag is refused
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise ValueError(f"{path} has no 'config' mapping")
    return doc


# -- metrics and summary ----------------------------------------------------------------------


def append_metrics(out: Path, record: dict[str, Any]) -> None:
    with open(out / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")


def write_metrics(out: Path, records: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl with exactly these records (on resume: the epochs the checkpoint knows)."""
    (out / METRICS).write_text("".join(json.dumps(r) + "\n" for r in records))


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")


def write_skipped_files(out: Path, rows: Iterable[tuple[str, str, str]]) -> Path:
    """skipped_files.csv: one line per image file left out as undecodable (split, path, reason)."""
    import csv

    path = out / SKIPPED_FILES
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["split", "path", "reason"])
        w.writerows(rows)
    return path


# -- what the model was trained on ------------------------------------------------------------


def write_data_info(out: Path, info: dict[str, Any]) -> None:
    """data.json: class names, input shape, whether the truth is known, the sets' sources."""
    (out / DATA_INFO).write_text(json.dumps(info, indent=2) + "\n")


def read_data_info(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's data.json as a dict, or None for a run written before l2b recorded it.

    Keys: ``task`` (:mod:`l2b.tasks`; runs written before it was recorded are classification),
    ``class_names`` (list of str, in label order), ``num_classes``, ``example_shape``,
    ``truth_known`` (bool: whether the true training labels are known, so that figures against
    them exist), ``meta`` / ``selection`` / ``test`` (where each set came from, or None), and
    ``preprocessing`` (``scale``, ``mean``, ``std``; streamed images also ``image_size``)."""
    path = Path(run_dir) / DATA_INFO
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} could not be read as JSON ({err})") from None
    if not isinstance(info, dict) or not isinstance(info.get("class_names"), list):
        raise ValueError(f"{path} has no 'class_names' list; it was not written by l2b")
    info.setdefault("task", "classification")
    return info


def write_files(out: Path, rows: Iterable[tuple[int, str, str, str]]) -> Path:
    """files.csv: ``index,path,given_label,role`` for every example of the training pool."""
    import csv

    path = out / FILES
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "path", "given_label", "role"])
        w.writerows(rows)
    return path


def _file_rows(run_dir: str | Path) -> list[dict[str, str]] | None:
    import csv

    path = Path(run_dir) / FILES
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"index", "path", "given_label", "role"} <= set(rows[0]):
        raise ValueError(f"{path} is not an l2b files.csv (columns index,path,given_label,role)")
    return rows


def read_files(
    run_dir: str | Path, *, roles: tuple[str, ...] | None = ("train", "meta", "selection"), column: str = "path"
) -> dict | None:
    """index -> absolute path of every example of the run's training pool (from files.csv), or
    None when the run's data were not image files (or it predates files.csv). ``roles=None``:
    every row, the test set's included, as {(role, index): path}. ``column="given_label"``: that
    column instead (a mask run's mask files)."""
    rows = _file_rows(run_dir)
    if rows is None:
        return None
    try:
        if roles is None:
            return {(r["role"], int(r["index"])): r[column] for r in rows}
        return {int(r["index"]): r[column] for r in rows if r["role"] in roles}
    except (TypeError, ValueError):
        raise ValueError(f"{Path(run_dir) / FILES}: an index is not a number") from None


def read_test_files(run_dir: str | Path) -> tuple[list[str], list[str]] | None:
    """(paths, class names) of the run's test set in its order (files.csv rows of role ``test``),
    or None when the run recorded no test files."""
    rows = _file_rows(run_dir)
    test = [r for r in rows or () if r["role"] == "test"]
    if not test:
        return None
    test.sort(key=lambda r: int(r["index"]))
    return [r["path"] for r in test], [r["given_label"] for r in test]


# -- the checkpoint ---------------------------------------------------------------------------


def save_checkpoint(out: Path, payload: dict[str, Any], *, resume: str | None = None) -> None:
    """Write checkpoint.pt atomically; a failure leaves the previous checkpoint as it was and says
    to continue with `resume` (default: :func:`resume_command`, the ``l2b train`` one)."""
    path = out / CHECKPOINT
    try:
        atomic_write_bytes(path, lambda f: torch.save(payload, f))
    except OSError as err:
        raise OSError(
            err.errno,
            f"could not write the checkpoint {path} ({err.strerror or err}); "
            "the previous checkpoint, if any, is unchanged: free some space and continue with "
            f"`{resume or resume_command(out)}`",
        ) from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint without executing code from it (weights_only). A truncated or corrupt
    file is a ValueError that says so and what to do."""
    from .untrusted import load_untrusted_torch

    return load_untrusted_torch(
        path,
        what="checkpoint",
        if_corrupt="resume from another copy of the run directory, or start the run again without --resume",
    )

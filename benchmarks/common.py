"""What every benchmark script records the same way: where it ran, its command line, its JSON and
JSON-lines results, its Markdown tables and its matplotlib figures.

The scripts are not a package: those in ``benchmarks/`` import this module as ``common`` (Python
puts a script's folder on the path), those in ``benchmarks/studies/`` put ``benchmarks/`` on the
path first.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import shlex
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"


# --------------------------------------------------------------------------------------------
# where and with what a result was measured
# --------------------------------------------------------------------------------------------


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages (None where the system has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def git_state() -> dict[str, Any]:
    """``git_commit`` (the checked-out commit) and ``git_dirty`` (tracked files changed since), or
    None for both outside a git checkout or without git."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True, timeout=20
        ).stdout.strip()

    try:
        return {"git_commit": git("rev-parse", "HEAD"), "git_dirty": bool(git("status", "--porcelain", "-uno"))}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


def now() -> str:
    """The local date and time, ISO 8601 to the second, with the UTC offset."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def environment(device: Any = None) -> dict[str, Any]:
    """The machine, the versions and the time of a measurement, as stored in every result file.

    Keys: ``date``, ``l2b``, ``git_commit``, ``git_dirty``, ``python``, ``torch``, ``numpy``,
    ``platform`` (``platform.platform()``), ``machine`` (the architecture), ``processor``,
    ``cpu_name``, ``cpu_count``, ``torch_num_threads`` (read now: set the threads first),
    ``loadavg_at_start``; with a `device`: ``device``, and on CUDA ``gpu`` and ``cuda``.
    """
    import numpy as np
    import torch

    import l2b

    env = {
        "date": now(),
        "l2b": l2b.__version__,
        **git_state(),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_name": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        "loadavg_at_start": loadavg(),
    }
    if device is not None:
        env["device"] = str(device)
        if torch.device(device).type == "cuda":
            env["gpu"] = torch.cuda.get_device_name(device)
            env["cuda"] = torch.version.cuda
    return env


def machine_label(env: dict[str, Any]) -> str:
    """The GPU (with its CUDA version), or the CPU with the torch thread count."""
    if env.get("gpu"):
        return f"{env['gpu']} (CUDA {env.get('cuda')})"
    n = env.get("torch_num_threads")
    cpu = env.get("cpu_name") or env.get("platform")
    return cpu if n is None else f"{cpu}, {n} thread{'s' if n != 1 else ''}"


def machine_line(env: dict[str, Any]) -> str:
    """One Markdown line on where and with what a result was measured (tolerates the older
    records, which lack some of the keys)."""
    where = f"{env['gpu']} (CUDA {env.get('cuda')})" if env.get("gpu") else env.get("cpu_name") or env.get("platform")
    n = env.get("torch_num_threads")
    threads = "" if n is None else f", {n} torch thread{'s' if n != 1 else ''}"
    parts = [f"Machine: {where}, {env.get('cpu_count')} CPUs{threads}", f"torch {env.get('torch')}"]
    parts += [f"{k} {env[k]}" for k in ("l2b", "numpy") if env.get(k)]
    if env.get("git_commit"):
        parts.append(f"commit {env['git_commit'][:10]}" + (" with uncommitted changes" if env.get("git_dirty") else ""))
    if env.get("loadavg_at_start"):
        parts.append(f"load average at start {env['loadavg_at_start'][0]:.1f}")
    return "; ".join([*parts, str(env.get("date"))]) + ".  "


def command(script: str | Path, argv: Sequence[str]) -> str:
    """``python <script, relative to the repository> <argv>``, shell-quoted: how to rerun it."""
    path = Path(script).resolve()
    with contextlib.suppress(ValueError):
        path = path.relative_to(REPO)
    return shlex.join(["python", str(path), *map(str, argv)])


def elapsed_log() -> Callable[[str], None]:
    """A ``log(message)`` that prints each message after the seconds since this call."""
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:7.0f}s] {message}", flush=True)

    return log


class EpochClock:
    """A run's ``log``: the wall time at the end of each epoch (its ``epoch`` lines)."""

    def __init__(self) -> None:
        self.start, self.marks = time.perf_counter(), []

    def __call__(self, line: str) -> None:
        if line.lstrip().startswith("epoch"):
            self.marks.append(time.perf_counter())

    def epochs(self) -> list[float]:
        """Seconds of each epoch (the first counted from the run's start: it holds the set-up)."""
        edges = [self.start, *self.marks]
        return [b - a for a, b in zip(edges, edges[1:])]


def out_prefix(given: str | Path | None, name: str, quick: bool) -> Path:
    """Where a script writes <prefix>.json / .md: `given`, else benchmarks/results/<name>, except for
    a ``--quick`` smoke test, which goes to the temporary folder so that the recorded results stay."""
    import tempfile

    if given is not None:
        prefix = Path(given)
    else:
        prefix = Path(tempfile.gettempdir()) / f"{name}-quick" if quick else RESULTS / name
    prefix.parent.mkdir(parents=True, exist_ok=True)
    return prefix


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def write_json(path: Path, data: Any, *, indent: int = 2) -> None:
    """`data` as indented JSON (and a final newline), its folder made if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=indent) + "\n")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file (none when it does not exist)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Add `row` as one line to a JSON-lines file: a run that stops keeps every finished row."""
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table's lines: the header, the rule, one line per row of cells."""
    return [
        "| " + " | ".join(map(str, header)) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(map(str, row)) + " |" for row in rows),
    ]


def write_lines(path: Path, lines: Iterable[str]) -> None:
    """Text lines (a Markdown report) with a final newline, the folder made if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


@contextlib.contextmanager
def figure(path: Path, *, dpi: int, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """``(fig, axes)`` of ``plt.subplots(**subplots)`` on matplotlib's file-only backend, saved to
    `path` at `dpi` when the block ends (lay it out inside the block) and closed either way."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(**subplots)
    try:
        yield fig, axes
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)


def proc_status_mib(field: str) -> float | None:
    """VmRSS / VmHWM of this process from /proc/self/status (Linux), MiB; None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the process's peak resident size (VmHWM, ru_maxrss) to its current size (Linux >= 4.0),
    so that a peak read afterwards belongs to what ran since, not to an earlier run of the process."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False

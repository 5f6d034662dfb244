"""Training speed of one process against N data-parallel processes (torchrun, gloo on CPU).

    python benchmarks/distributed_speed.py                      # the recorded run
    python benchmarks/distributed_speed.py --epochs 2 --reps 1  # smoke test

For each --model, `l2b train` runs on the embedded digits data (same config, same global batch)
as one plain process with --threads 1 and as --procs processes under
``python -m torch.distributed.run --standalone`` (one thread each, so both use the same number of
cores in total when procs = cores), interleaved rep by rep so that load on this shared machine
hits both alike. Reported per run: ``train_seconds`` from the run's summary (the training steps
only: no interpreter start, data loading or evaluation) and the wall time of the whole command.
Writes --out (JSON) and the same path with .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common


def run_once(model: str, procs: int, args: argparse.Namespace, out: Path) -> dict[str, float]:
    train = [
        "-m",
        "l2b",
        "train",
        "--model",
        model,
        "--method",
        args.method,
        "--epochs",
        str(args.epochs),
        "--warmup-epochs",
        "1",
        "--batch-size",
        str(args.batch_size),
        "--quiet",
        "--out",
        str(out),
    ]
    if procs == 1:
        cmd = [sys.executable, *train, "--threads", "1"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs), *train]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return {"train_seconds": summary["train_seconds"], "wall_seconds": wall, "test_accuracy": summary["test_accuracy"]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["mlp", "small_cnn"])
    p.add_argument("--method", default="l2b")
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out", type=Path, default=common.RESULTS / "distributed_speed.json")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    env = common.environment()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            runs: dict[int, list[dict[str, float]]] = {1: [], args.procs: []}
            for rep in range(args.reps):
                for procs in (1, args.procs):
                    runs[procs].append(run_once(model, procs, args, Path(tmp) / f"{model}-{procs}-{rep}"))
                    print(model, procs, runs[procs][-1], flush=True)
            one, many = (statistics.median(r["train_seconds"] for r in runs[n]) for n in (1, args.procs))
            rows.append(
                {
                    "model": model,
                    "procs": args.procs,
                    "train_seconds_1": one,
                    f"train_seconds_{args.procs}": many,
                    "speedup": one / many,
                    "wall_seconds_1": statistics.median(r["wall_seconds"] for r in runs[1]),
                    f"wall_seconds_{args.procs}": statistics.median(r["wall_seconds"] for r in runs[args.procs]),
                    "runs": {str(k): v for k, v in runs.items()},
                }
            )
    record = {
        "command": common.command(__file__, argv),
        "environment": env,
        "method": args.method,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "reps": args.reps,
        "rows": rows,
    }
    common.write_json(args.out, record)
    n = args.procs
    lines = [
        f"# Training speed, 1 vs {n} processes (digits, {args.method}, {args.epochs} epochs, global batch "
        f"{args.batch_size})",
        "",
        f"Command: `{record['command']}`  ",
        common.machine_line(record["environment"]),
        "",
        *common.table(
            ["model", "train s, 1 process", f"train s, {n} processes", "speed-up", "wall s, 1", f"wall s, {n}"],
            (
                [
                    r["model"],
                    *(f"{r[k]:.2f}" for k in ("train_seconds_1", f"train_seconds_{n}")),
                    f"{r['speedup']:.2f}x",
                ]
                + [f"{r[k]:.1f}" for k in ("wall_seconds_1", f"wall_seconds_{n}")]
                for r in rows
            ),
        ),
        "",
        f"Medians of {args.reps} interleaved repetitions; train s = the summary's train_seconds (steps "
        "only); wall s = the whole command, interpreter and process-group start included.",
    ]
    common.write_lines(args.out.with_suffix(".md"), lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""What one run of each method costs on digits, measured side by side in one process.

    python benchmarks/method_cost.py                 # ce, l2b, dividemix, dividemix-l2b; 2 repetitions

Every method runs the default digits protocol (``l2b train``'s defaults: 40 epochs, MLP 256) on
one torch thread, one after the other, ``--repeats`` times in turn. Reported per method: the CPU
seconds of the process (less sensitive to other jobs than wall time) and the wall seconds, each
the best of the repetitions, and their ratios to l2b. The equal-cost DivideMix grid
(``benchmarks/grids/digits-equal-time.yaml``) takes its epoch budgets from these ratios.
Writes ``benchmarks/results/method_cost.json`` and ``.md`` with the machine and torch version.
"""

from __future__ import annotations

import argparse
import sys
import time

import common
import torch

from l2b.training import TrainConfig, run_experiment


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["ce", "l2b", "dividemix", "dividemix-l2b"])
    p.add_argument("--repeats", type=int, default=2)
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    env = common.environment()
    runs: dict[str, list[dict[str, float]]] = {}
    for _ in range(args.repeats):
        for method in args.methods:
            cfg = TrainConfig(method=method, device="cpu", seed=0)
            wall, cpu = time.perf_counter(), time.process_time()
            summary = run_experiment(cfg, progress=False, log=None)
            runs.setdefault(method, []).append(
                {
                    "cpu": time.process_time() - cpu,
                    "wall": time.perf_counter() - wall,
                    "test_accuracy_at_best_meta": summary["test_accuracy_at_best_meta"],
                }
            )
    best = {m: {k: min(r[k] for r in v) for k in ("cpu", "wall")} for m, v in runs.items()}
    ref = best.get("l2b", next(iter(best.values())))
    doc = {
        "command": common.command(__file__, argv),
        "environment": env,
        "repeats": args.repeats,
        "best": best,
        "runs": runs,
    }
    common.write_json(common.RESULTS / "method_cost.json", doc)
    lines = [
        "# Cost of one digits run per method",
        "",
        f"Command: `{doc['command']}`  ",
        common.machine_line(env),
        f"One torch thread, default digits protocol (40 epochs, MLP 256), the methods one after the other, best of "
        f"{args.repeats}.",
        "",
        *common.table(
            ["method", "CPU seconds", "× l2b", "wall seconds", "× l2b"],
            (
                [m, *(f"{x:.2f}" for x in (b["cpu"], b["cpu"] / ref["cpu"], b["wall"], b["wall"] / ref["wall"]))]
                for m, b in best.items()
            ),
        ),
    ]
    common.write_lines(common.RESULTS / "method_cost.md", lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
